"""Random labels (RL): fine-tune on randomly relabelled forget samples.

The forget samples get labels drawn at random at every step (uniformly over
all classes, as SalUn's `unlearn/RL.py` does with `torch.randint`, or, with
`different_label`, uniformly over the classes other than the true one, as the
SalUn paper writes it) and the model is trained on them with cross-entropy,
together with the true labels of the retain set, which keeps the rest of what
it knows.

Two loops (`config.loop`):
  sequential: SalUn's CIFAR-10 loop. Every epoch, one pass over the forget set
    with random labels, then `retain_steps` steps over the retain set with
    true labels (0: `retain_fraction` of a pass, default one pass, so that
    the repair keeps its share of the epoch whatever the split's sizes);
    each batch is its own optimizer step.
  summed: SalUn's CIFAR-100 / TinyImageNet flavour as one loss: every step
    takes a forget batch and a retain batch and minimises
    CE(forget, random labels) + retain_weight * CE(retain, true labels); one
    pass over the forget set per epoch.

The default is the sequential loop: on the embedded dataset the summed loss
ends far from retrain (retain accuracy 50-78 %), since the random-label term
dominates and nothing heals its damage, whereas the retain pass that ends
every sequential epoch does (see configs/random_label.py).

SalUn (`salun.py`) is this method with a saliency mask on the updates; it
reuses `make` with its own `prepare` and `apply_gradients`.
"""

from typing import Any, Callable

import jax
import ml_collections

from mu_jax import errors
from mu_jax import losses
from mu_jax import state as state_lib
from mu_jax.methods import base

PyTree = Any
# (state, method_state, grads, model_state) -> the state after one update.
ApplyGradients = Callable[[state_lib.TrainState, PyTree, PyTree, PyTree],
                          state_lib.TrainState]
LOOPS = ('sequential', 'summed')


def _check_classes_to_differ(num_classes: int):
  """A label other than the true one needs a second class to draw."""
  if num_classes < 2:
    raise errors.ConfigError(
        f'different_label needs at least 2 classes, got {num_classes}: set '
        '--config.method.different_label=False')


def random_labels(rng: jax.Array, labels: jax.Array, num_classes: int, *,
                  different: bool = False) -> jax.Array:
  """Uniformly random class labels, one per entry of `labels`.

  Args:
    rng: PRNG key.
    labels: int [batch], the true labels (used only if `different`).
    num_classes: number of classes C.
    different: draw uniformly from the C - 1 classes other than the true one
      (needs C >= 2); otherwise uniformly from all C classes, so a label
      equals the true one with probability 1 / C.

  Returns:
    int [batch], same dtype as `labels`.
  """
  if different:
    _check_classes_to_differ(num_classes)
    # A non-zero shift modulo C is uniform over the other C - 1 classes.
    shift = jax.random.randint(rng, labels.shape, 1, num_classes,
                               labels.dtype)
    return (labels + shift) % num_classes
  return jax.random.randint(rng, labels.shape, 0, num_classes, labels.dtype)


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return (logits.argmax(-1) == labels).mean()


def _plain_apply(state, method_state, grads, model_state):
  del method_state  # Unmasked: every weight moves.
  return state.apply_gradients(grads, model_state)


# The guard rails' knob: the retain loss's weight (alpha), so that a larger
# step strengthens the random-label steps and leaves the repair as it was.
BALANCE = base.Balance(('retain_weight',), base.repair_weight)


# What the rest of mu_jax knows of the method (`base.Card`).
CARD = base.Card(label='RL', aliases=('rl',), order=1,
                 knob=('retain_steps', (0, 20)))


def make(config: ml_collections.ConfigDict, ctx: base.Context, *,
         prepare=base.no_prepare,
         apply_gradients: ApplyGradients = _plain_apply) -> base.Method:
  """Returns RL.

  Args:
    config: the method section (configs/random_label.py).
    ctx: the driver's static facts.
    prepare: the method's `prepare` (SalUn builds its mask here).
    apply_gradients: how a gradient becomes an update (SalUn masks it).
  """
  name = config.get('name', 'random_label')  # Or SalUn, which builds on it.
  loop = base.check_choice(name, 'loop', config.get('loop', 'sequential'),
                           LOOPS)
  different = bool(config.get('different_label', False))
  retain_weight = float(config.get('retain_weight', 1.0))
  num_classes = ctx.num_classes
  if different:
    _check_classes_to_differ(num_classes)

  def forward(state, params, images, model_state=None):
    (logits, _), model_state = state.apply(params, images, train=True,
                                           model_state=model_state)
    return logits, model_state

  def relabel(rng, forget):
    # Fresh labels at every step, as SalUn's `torch.randint` in its loop.
    return random_labels(rng, forget['label'], num_classes,
                         different=different)

  def forget_update(state, method_state, batches, rng):
    forget = batches['forget']
    targets = relabel(rng, forget)

    def loss_fn(params):
      logits, model_state = forward(state, params, forget['image'])
      return losses.cross_entropy(logits, targets), (logits, model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    state = apply_gradients(state, method_state, grads, model_state)
    # Accuracy on the *true* labels: how much of the forget set is still known.
    return state, method_state, {'loss': loss,
                                 'accuracy': _accuracy(logits, forget['label'])}

  def retain_update(state, method_state, batches, rng):
    del rng  # Deterministic given the batch.
    retain = batches['retain']

    def loss_fn(params):
      logits, model_state = forward(state, params, retain['image'])
      loss = retain_weight * losses.cross_entropy(logits, retain['label'])
      return loss, (logits, model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    state = apply_gradients(state, method_state, grads, model_state)
    return state, method_state, {'loss': loss,
                                 'accuracy': _accuracy(logits, retain['label'])}

  def forget_term(state, params, method_state, batches, rng):
    del method_state
    forget = batches['forget']
    logits, model_state = forward(state, params, forget['image'])
    loss = losses.cross_entropy(logits, relabel(rng, forget))
    return loss, ({'forget_accuracy': _accuracy(logits, forget['label'])},
                  model_state)

  def retain_term(state, params, method_state, batches, rng):
    del method_state, rng
    retain = batches['retain']
    logits, model_state = forward(state, params, retain['image'])
    loss = retain_weight * losses.cross_entropy(logits, retain['label'])
    return loss, ({'retain_accuracy': _accuracy(logits, retain['label'])},
                  model_state)

  def summed_prepare(rng, state):
    state, method_state = prepare(rng, state)
    return state, base.init_gradient_sum(dict(method_state or {}),
                                         state.params)

  forget_steps = ctx.steps_per_epoch['forget']
  if loop == 'summed':
    # CE(forget, random labels) + retain_weight * CE(retain, true labels),
    # each gradient its own program on CPUs (`base.summed_gradients`).
    return base.single_phase(
        base.summed_gradients((forget_term, retain_term), apply_gradients),
        ('forget', 'retain'), forget_steps, prepare=summed_prepare,
        augment=config.get('augment', False))
  fraction = base.check_range(name, 'retain_fraction',
                              config.get('retain_fraction', 1.0), low=0,
                              low_open=True, example=1.0)
  retain_steps = (config.get('retain_steps', 0) or max(
      1, base.ceil_steps(fraction * ctx.steps_per_epoch['retain'])))
  augment = config.get('augment', False)
  return base.Method(
      prepare=prepare,
      phases={'forget': base.Phase(forget_update, ('forget',), augment),
              'retain': base.Phase(retain_update, ('retain',), augment)},
      plan=lambda epoch: [('forget', forget_steps), ('retain', retain_steps)])
