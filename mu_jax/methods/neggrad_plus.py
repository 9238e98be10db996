"""NegGrad+: descend on the retain set while ascending on the forget set.

SCRUB's baseline (`meghdadk/SCRUB: thirdparty/repdistiller/helper/loops.py::
train_negrad`): every step takes a retain batch and a forget batch and
minimises alpha * CE(retain) - (1 - alpha) * CE(forget). SCRUB iterates the
retain loader and cycles the forget one; here an epoch is one pass over the
forget set (each step still sees a fresh retain batch), which keeps the run
time a small fraction of retraining.
"""

import jax
import ml_collections

from mu_jax import losses
from mu_jax.methods import base


def _forget_term(logits_f: jax.Array, labels_f: jax.Array,
                 alpha: float) -> jax.Array:
  """-(1 - alpha) * CE(forget): the ascent half of the loss."""
  return -(1.0 - alpha) * losses.cross_entropy(logits_f, labels_f)


def _retain_term(logits_r: jax.Array, labels_r: jax.Array,
                 alpha: float) -> jax.Array:
  """alpha * CE(retain); the loss is `_retain_term + _forget_term`."""
  return alpha * losses.cross_entropy(logits_r, labels_r)


def _tilt_alpha(alpha: float, strength: float) -> float:
  """The forget term's weight 1 - alpha times the strength, in [0, 1]."""
  return min(1.0, max(0.0, 1.0 - (1.0 - alpha) * strength))


# The guard rails' knob: the weight of the ascent term. Its softmax
# saturates on a confident model (forget CE 0.003), where a larger step
# alone barely moves it.
BALANCE = base.Balance(('alpha',), _tilt_alpha)


# What the rest of mu_jax knows of the method (`base.Card`).
CARD = base.Card(label='NegGrad+', aliases=('neggrad+',), order=3,
                 knob=('alpha', (0.6, 0.8, 0.95)))


def make(config: ml_collections.ConfigDict, ctx: base.Context) -> base.Method:
  """Returns NegGrad+; `config.alpha` weights the retain term."""
  alpha = base.check_range('neggrad_plus', 'alpha',
                           float(config.get('alpha', 0.95)), low=0, high=1,
                           example=0.95)

  def forget_term(state, params, method_state, batches, rng):
    del method_state, rng  # Deterministic given the batch.
    forget = batches['forget']
    (logits, _), model_state = state.apply(params, forget['image'],
                                           train=True)
    return _forget_term(logits, forget['label'], alpha), (
        {'forget_ce': losses.cross_entropy(logits, forget['label']),
         'forget_accuracy': (logits.argmax(-1) == forget['label']).mean()},
        model_state)

  def retain_term(state, params, method_state, batches, rng):
    del method_state, rng
    retain = batches['retain']
    (logits, _), model_state = state.apply(params, retain['image'],
                                           train=True)
    return _retain_term(logits, retain['label'], alpha), (
        {'retain_accuracy': (logits.argmax(-1) == retain['label']).mean()},
        model_state)

  def prepare(rng, state):
    del rng
    return state, base.init_gradient_sum({}, state.params)

  # The two gradients as two programs on CPUs (`base.summed_gradients`):
  # alpha * CE(retain) - (1 - alpha) * CE(forget), forget pass first.
  return base.single_phase(
      base.summed_gradients((forget_term, retain_term)), ('forget', 'retain'),
      ctx.steps_per_epoch['forget'], prepare=prepare,
      augment=config.get('augment', False))
