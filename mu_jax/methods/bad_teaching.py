"""Bad Teaching: distil from a competent and an incompetent teacher.

Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep
Networks using an Incompetent Teacher", AAAI 2023
(`vikram2000b/bad-teaching-unlearning`). The student starts as the original
model and matches, by KL divergence, a randomly initialised ("incompetent")
teacher on forget samples and the original ("competent") model on retain
samples (`losses.bad_teaching_kl`; `vikram2000b/bad-teaching-unlearning:
unlearn.py::UnlearnerLoss`).

Variants (`config.variant`):
  canonical: every step takes a batch of forget samples and one of retain
    samples; an epoch covers the forget set and a random `retain_fraction` of
    the retain set (the reference uses 30 %), Adam.
  capstone: kklusd/Unlearning's version: shuffled batches of the whole train
    set (forget samples flagged), so all of the retain set every epoch, SGD
    with momentum 0.9 and weight decay 5e-4 (configs/bad_teaching.py:capstone).

`loss_weight` > 0 adds the original project's self-supervised term
(`mu_jax.self_supervised`, `supervised_mode` simple or original) to the loss:
loss = KL + loss_weight * term.

`--data_augment opengan` (`ctx.feature_augment`; kklusd/Unlearning's
`mu/bad_teaching.py`): each forget
sample's competent-teacher feature is replaced by the most similar generated
feature g, and the incompetent teacher's classifier head on g is a second
bad target: loss = (KL(target) + KL(target2)) / 2, with target2 the usual
target except softmax(head_u(g) / T) for forget samples.
"""


import jax
import jax.numpy as jnp
import ml_collections

from mu_jax import losses
from mu_jax import self_supervised
from mu_jax.methods import base

# Takes `loss_weight` (the pipeline checks this before pretraining SimCLR).
SELF_SUPERVISED = True
# Uses `ctx.feature_augment` (--data_augment opengan).
FEATURE_AUGMENT = True
_VARIANTS = ('canonical', 'capstone')


# fold_in stream of the OpenGAN noise, apart from the self-supervised term's.
_HOOK_STREAM = 7


def _steps_per_epoch(config: ml_collections.ConfigDict,
                    ctx: base.Context) -> int:
  """Updates per epoch: one pass over forget, or over the retain fraction."""
  if config.get('variant', 'canonical') == 'capstone':
    return ctx.steps_per_epoch['mixed']
  retain_steps = base.ceil_steps(
      config.retain_fraction * ctx.steps_per_epoch['retain'])
  return max(1, ctx.steps_per_epoch['forget'], retain_steps)


# What the rest of mu_jax knows of the method (`base.Card`).
CARD = base.Card(label='Bad Teaching',
                 aliases=('badteaching', 'bad_teacher'), order=4,
                 knob=('temperature', (1.0, 2.0, 4.0)))


def make(config: ml_collections.ConfigDict, ctx: base.Context) -> base.Method:
  """Returns Bad Teaching in `config.variant` (canonical or capstone)."""
  variant = base.check_choice('bad_teaching', 'variant',
                              config.get('variant', 'canonical'), _VARIANTS)
  temperature = base.check_range(
      'bad_teaching', 'temperature', float(config.get('temperature', 1.0)),
      low=0, low_open=True, example=1.0)
  fraction = config.get('retain_fraction', 0.3)
  if variant == 'canonical':
    base.check_range('bad_teaching', 'retain_fraction', fraction, low=0,
                     low_open=True, high=1, example=0.3)

  term = self_supervised.make_term(config, ctx)  # None if loss_weight is 0.
  hook = ctx.feature_augment  # None unless --data_augment opengan.

  def prepare(rng, state):
    params, model_state = ctx.init_variables(rng)  # Fresh arrays, no alias.
    method_state = {
        'competent': base.frozen_copy(state.params, state.model_state),
        'incompetent': {'params': params, 'model_state': model_state}}
    if term is not None:
      method_state['ssl'] = term.init()
    if hook is not None:
      method_state['opengan'] = hook.init()
    return state, method_state

  def generated_targets(method_state, competent_features, incompetent,
                        num_forget, rng):
    """The incompetent head on generated substitutes of forget features.

    Rows past `num_forget` (retain samples of a canonical batch, which keep
    the competent target) reuse `incompetent` instead of paying for K
    generated candidates; None means every row may be a forget sample.
    """
    rows = competent_features[:num_forget]
    generated = hook.logits(method_state['opengan'],
                            method_state['incompetent']['params'], rows, rng)
    return jnp.concatenate([generated, incompetent[len(rows):]])

  def frozen(state, method_state, images):
    """Both teachers' logits (and the competent one's features, for the
    OpenGAN hook)."""
    competent, features = base.teacher_outputs(
        state, method_state['competent'], images)
    incompetent, _ = base.teacher_outputs(state, method_state['incompetent'],
                                          images)
    outputs = {'competent': competent, 'incompetent': incompetent}
    if hook is not None:
      outputs['competent_features'] = features
    return outputs

  def step(state, method_state, images, targets, is_forget, rng,
           num_forget=None):
    competent, incompetent = targets['competent'], targets['incompetent']
    generated = None
    if hook is not None:
      generated = generated_targets(method_state,
                                    targets['competent_features'],
                                    incompetent, num_forget,
                                    jax.random.fold_in(rng, _HOOK_STREAM))

    def loss_fn(params):
      (logits, features), model_state = state.apply(params, images,
                                                    train=True)
      loss = losses.bad_teaching_kl(logits, competent, incompetent, is_forget,
                                    temperature)
      extra = {}
      if generated is not None:
        second = losses.bad_teaching_kl(logits, competent, generated,
                                        is_forget, temperature)
        loss, extra = 0.5 * (loss + second), {'generated_kl': second}
      if term is not None:
        ssl, model_state = term.loss(state, params, method_state['ssl'],
                                     images, features, is_forget, rng,
                                     model_state)
        loss, extra = loss + config.loss_weight * ssl, {**extra, 'ssl': ssl}
      return loss, (logits, model_state, extra)

    (loss, (logits, model_state, extra)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    metrics = {
        **extra,
        'loss': loss,
        # How far forget predictions are from the bad teacher's, and retain
        # predictions from the original model's (both should be small).
        'forget_kl': losses.weighted_mean(losses.kl_per_example(
            logits, incompetent, temperature), is_forget),
        'retain_kl': losses.weighted_mean(losses.kl_per_example(
            logits, competent, temperature), 1.0 - is_forget)}
    return state.apply_gradients(grads, model_state), metrics

  def canonical_update(state, method_state, batches, rng):
    forget, retain = batches['forget'], batches['retain']
    # One forward pass over both, so BatchNorm sees a mixed batch as in the
    # reference's shuffled concatenation.
    images = jnp.concatenate([forget['image'], retain['image']])
    targets = jax.tree.map(
        lambda f, r: jnp.concatenate([f, r]),
        base.frozen_outputs(frozen, state, method_state, forget),
        base.frozen_outputs(frozen, state, method_state, retain))
    is_forget = jnp.concatenate([jnp.ones(forget['label'].shape, jnp.float32),
                                 jnp.zeros(retain['label'].shape,
                                           jnp.float32)])
    state, metrics = step(state, method_state, images, targets, is_forget,
                          rng, num_forget=forget['label'].shape[0])
    return state, method_state, metrics

  def capstone_update(state, method_state, batches, rng):
    batch = batches['mixed']
    state, metrics = step(state, method_state, batch['image'],
                          base.frozen_outputs(frozen, state, method_state,
                                              batch),
                          batch['is_forget'].astype(jnp.float32), rng)
    return state, method_state, metrics

  if variant == 'capstone':
    update, splits = capstone_update, ('mixed',)
  else:
    update, splits = canonical_update, ('forget', 'retain')
  return base.single_phase(update, splits, _steps_per_epoch(config, ctx),
                           prepare=prepare,
                           augment=config.get('augment', False), frozen=frozen)
