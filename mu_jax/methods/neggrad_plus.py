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

from mu_jax import errors
from mu_jax import losses
from mu_jax.methods import base


def _neggrad_plus_loss(logits_r: jax.Array, labels_r: jax.Array,
                       logits_f: jax.Array, labels_f: jax.Array,
                       alpha: float) -> jax.Array:
  """alpha * CE(retain) - (1 - alpha) * CE(forget)."""
  return (alpha * losses.cross_entropy(logits_r, labels_r) -
          (1.0 - alpha) * losses.cross_entropy(logits_f, labels_f))


def make(config: ml_collections.ConfigDict, ctx: base.Context) -> base.Method:
  """Returns NegGrad+; `config.alpha` weights the retain term."""
  alpha = float(config.get('alpha', 0.95))
  if not 0.0 <= alpha <= 1.0:
    raise errors.ConfigError(
        f'neggrad_plus alpha {alpha} is not in [0, 1]; set '
        '--config.method.alpha to e.g. 0.95')

  def update(state, method_state, batches, rng):
    del rng  # Deterministic given the batches.
    forget, retain = batches['forget'], batches['retain']

    def loss_fn(params):
      (logits_f, _), model_state = state.apply(params, forget['image'],
                                               train=True)
      # Thread the BatchNorm statistics through both forward passes.
      (logits_r, _), model_state = state.apply(
          params, retain['image'], train=True, model_state=model_state)
      loss = _neggrad_plus_loss(logits_r, retain['label'], logits_f,
                                forget['label'], alpha)
      return loss, (logits_f, logits_r, model_state)

    (loss, (logits_f, logits_r, model_state)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    metrics = {
        'loss': loss,
        'forget_ce': losses.cross_entropy(logits_f, forget['label']),
        'forget_accuracy': (logits_f.argmax(-1) == forget['label']).mean(),
        'retain_accuracy': (logits_r.argmax(-1) == retain['label']).mean()}
    return (state.apply_gradients(grads, model_state), method_state, metrics)

  return base.single_phase(update, ('forget', 'retain'),
                           ctx.steps_per_epoch['forget'],
                           augment=config.get('augment', False))
