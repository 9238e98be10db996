"""SCRUB: a student that stays close to its teacher on retain data only.

Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023
(`meghdadk/SCRUB: thirdparty/repdistiller/helper/loops.py::train_distill`).
The student starts as the original model; the teacher is a frozen copy of it.

Variants (`config.variant`; the capstone is kklusd/Unlearning's `mu/Scrub.py`):
  canonical: min-max. In each of the first `msteps` epochs a max phase passes
    over the forget set minimising -distill_kl(student, teacher); then every
    epoch a min phase over the retain set minimises
    gamma * CE + alpha * distill_kl. Both phases share one optimizer, whose
    learning rate is multiplied by `lr_decay_rate` at each epoch of
    `lr_decay_epochs` (the reference's `adjust_learning_rate`).
  capstone: kklusd/Unlearning's one-loss version on shuffled batches of the
    whole train set: 0.5 * (|R|/B * KL_R - |F|/B * KL_F), no CE, no phases
    (configs/scrub.py:capstone). Batches with no or one forget sample are
    handled (the original crashed on one).

`loss_weight` > 0 adds the original project's self-supervised term
(`mu_jax.self_supervised`) with weight `loss_weight` to every update (the
max phase's samples are all forget samples, the min phase's all retain).

Numerics: the max phase ignores a forget KL below `KL_NOISE_FLOOR`, where
its gradient is float-rounding noise (`_above_noise`).

`--data_augment opengan` (`ctx.feature_augment`; kklusd/Unlearning's
`OpenGAN/openGan_utils.py::feature_generate`): each forget
sample's teacher feature is replaced by the most similar generated feature g,
and the teacher's classifier head on g is a second teacher for that sample:
its forget KL becomes (KL(teacher) + KL(head(g))) / 2, in the max phase and
in capstone's forget rows. Retain terms are unchanged (the original added
the same retain KL twice, which only rescales them).
"""


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mu_jax import losses
from mu_jax import self_supervised
from mu_jax.methods import base

# Takes `loss_weight` (the pipeline checks this before pretraining SimCLR).
SELF_SUPERVISED = True
# Uses `ctx.feature_augment` (--data_augment opengan).
FEATURE_AUGMENT = True
# fold_in stream of the OpenGAN noise, apart from the self-supervised term's.
_HOOK_STREAM = 7
_VARIANTS = ('canonical', 'capstone')


# Below this KL (nats) the student is the teacher up to float rounding.
KL_NOISE_FLOOR = 1e-6


def _above_noise(kl: jax.Array) -> jax.Array:
  """`kl`, or 0 (with zero gradient) while it is float-rounding noise.

  The first max phase starts with the student equal to its teacher, where
  the KL is 0 and its gradient is pure rounding noise: Adam would scale that
  noise to a full-size step in a direction that differs with the CPU and the
  device count (the reference's ResNets escape it because BatchNorm makes
  the train-mode student differ from the eval-mode teacher). So the max
  phase makes no update until the min phase, or real data, has moved the
  student measurably away from the teacher.
  """
  return jnp.where(kl > KL_NOISE_FLOOR, kl, 0.0)


def _lr_decay(plan, epochs: int, decay_epochs, rate: float) -> optax.Schedule:
  """Multiplier rate**k after the k-th epoch of `decay_epochs` has passed.

  Epochs have different lengths (max phases only in the first `msteps`), so
  the boundaries are counted in steps from the plan.
  """
  starts = np.cumsum([0] + [sum(n for _, n in plan(e)) for e in range(epochs)])
  boundaries = {}
  for epoch in sorted(int(e) for e in decay_epochs):
    if 0 < epoch < epochs:
      step = int(starts[epoch])
      boundaries[step] = boundaries.get(step, 1.0) * rate
  return optax.piecewise_constant_schedule(1.0, boundaries)


# The guard rails' knob: the min phase's weights, so that a larger step
# strengthens the max phase and leaves the repair as it was.
BALANCE = base.Balance(('alpha', 'gamma'), base.repair_weight)


# What the rest of mu_jax knows of the method (`base.Card`).
CARD = base.Card(label='SCRUB', order=5, knob=('msteps', (1, 2, 4)))


def make(config: ml_collections.ConfigDict, ctx: base.Context) -> base.Method:
  """Returns SCRUB in `config.variant` (canonical or capstone)."""
  variant = base.check_choice('scrub', 'variant',
                              config.get('variant', 'canonical'), _VARIANTS)
  temperature = base.check_range(
      'scrub', 'temperature', float(config.get('temperature', 1.0)), low=0,
      low_open=True, example=1.0)

  term = self_supervised.make_term(config, ctx)  # None if loss_weight is 0.
  hook = ctx.feature_augment  # None unless --data_augment opengan.

  def add_term(loss, metrics, state, params, method_state, images, features,
               is_forget, rng, model_state):
    """loss + loss_weight * the self-supervised term, if there is one."""
    if term is None:
      return loss, metrics, model_state
    ssl, model_state = term.loss(state, params, method_state['ssl'], images,
                                 features, is_forget, rng, model_state)
    return (loss + config.loss_weight * ssl, {**metrics, 'ssl': ssl},
            model_state)

  def prepare(rng, state):
    del rng
    decay_epochs = config.get('lr_decay_epochs', ())
    if variant == 'canonical' and any(0 < e < ctx.epochs
                                      for e in decay_epochs):
      # Scaling the final updates is exactly a learning-rate change for SGD
      # (momentum included) and Adam, as torch's param_group['lr'] edit.
      state = state.with_optimizer(optax.chain(
          state.tx, optax.scale_by_schedule(_lr_decay(
              plan, ctx.epochs, decay_epochs,
              config.get('lr_decay_rate', 0.1)))))
    method_state = {'teacher': base.frozen_copy(state.params,
                                                state.model_state)}
    if term is not None:
      method_state['ssl'] = term.init()
    if hook is not None:
      method_state['opengan'] = hook.init()
    return state, method_state

  def frozen(state, method_state, images):
    """The teacher's logits (and features, for the OpenGAN hook)."""
    logits, features = base.teacher_outputs(state, method_state['teacher'],
                                            images)
    outputs = {'teacher_logits': logits}
    if hook is not None:
      outputs['teacher_features'] = features
    return outputs

  def distill_update(split, loss_of):
    """An update on `batches[split]` minimising `loss_of`.

    `loss_of(logits, batch, teacher_logits, generated_logits) -> (loss,
    metrics)`; generated_logits are the teacher's head on OpenGAN features
    (forget and mixed splits with --data_augment opengan), else None. The
    self-supervised term is added when `loss_weight` > 0.
    """

    def update(state, method_state, batches, rng):
      batch = batches[split]
      images = batch['image']
      outputs = base.frozen_outputs(frozen, state, method_state, batch)
      teacher = outputs['teacher_logits']
      generated = None
      if hook is not None and split != 'retain':
        generated = hook.logits(method_state['opengan'],
                                method_state['teacher']['params'],
                                outputs['teacher_features'],
                                jax.random.fold_in(rng, _HOOK_STREAM))
      is_forget = batch.get('is_forget', jnp.full(
          batch['label'].shape, float(split == 'forget'), jnp.float32))

      def loss_fn(params):
        (logits, features), model_state = state.apply(params, images,
                                                      train=True)
        loss, metrics = loss_of(logits, batch, teacher, generated)
        loss, metrics, model_state = add_term(
            loss, metrics, state, params, method_state, images, features,
            is_forget.astype(jnp.float32), rng, model_state)
        return loss, (metrics, model_state)

      (_, (metrics, model_state)), grads = jax.value_and_grad(
          loss_fn, has_aux=True)(state.params)
      return state.apply_gradients(grads, model_state), method_state, metrics

    return update

  def max_loss(logits, batch, teacher, generated):
    del batch
    kl = losses.distill_kl(logits, teacher, temperature)
    pushed = _above_noise(kl)
    if generated is None:
      return -pushed, {'forget_kl': kl}
    generated_kl = losses.distill_kl(logits, generated, temperature)
    return -0.5 * (pushed + generated_kl), {'forget_kl': kl,
                                            'generated_kl': generated_kl}

  def min_loss(logits, batch, teacher, generated):
    del generated  # Retain samples only.
    ce = losses.cross_entropy(logits, batch['label'])
    kl = losses.distill_kl(logits, teacher, temperature)
    loss = config.get('gamma', 1.0) * ce + config.get('alpha', 0.5) * kl
    return loss, {'loss': loss, 'ce': ce, 'retain_kl': kl}

  def capstone_loss(logits, batch, teacher, generated):
    is_forget = batch['is_forget'].astype(jnp.float32)
    loss = 0.5 * losses.signed_distill_kl(logits, teacher, is_forget,
                                          temperature)
    kl = losses.kl_per_example(logits, teacher, temperature)
    metrics = {'forget_kl': losses.weighted_mean(kl, is_forget),
               'retain_kl': losses.weighted_mean(kl, 1.0 - is_forget)}
    if generated is not None:
      # Second teacher: head(g) on forget rows, the teacher on retain rows,
      # so the mean of the two signed KLs averages only the forget terms.
      second = jnp.where(is_forget[:, None] > 0, generated, teacher)
      loss = 0.5 * (loss + 0.5 * losses.signed_distill_kl(
          logits, second, is_forget, temperature))
      metrics['generated_kl'] = losses.weighted_mean(
          losses.kl_per_example(logits, generated, temperature), is_forget)
    return loss, {'loss': loss, **metrics}

  max_update = distill_update('forget', max_loss)
  min_update = distill_update('retain', min_loss)
  capstone_update = distill_update('mixed', capstone_loss)

  if variant == 'capstone':
    return base.single_phase(capstone_update, ('mixed',),
                             ctx.steps_per_epoch['mixed'], prepare=prepare,
                             augment=config.get('augment', False),
                             frozen=frozen)

  msteps = int(config.get('msteps', 1))
  fraction = base.check_range('scrub', 'retain_fraction',
                              config.get('retain_fraction', 1.0), low=0,
                              low_open=True, example=1.0)
  max_steps = max(1, ctx.steps_per_epoch['forget'])
  min_steps = max(1, base.ceil_steps(fraction * ctx.steps_per_epoch['retain']))

  def plan(epoch):
    return ([('max', max_steps)] if epoch < msteps else []) + [
        ('min', min_steps)]

  augment = config.get('augment', False)
  return base.Method(
      prepare=prepare,
      phases={'max': base.Phase(max_update, ('forget',), augment),
              'min': base.Phase(min_update, ('retain',), augment)},
      plan=plan, frozen=frozen)
