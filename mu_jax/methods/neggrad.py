"""NegGrad / gradient ascent (GA): raise the loss on the forget set.

Canonical (`variant='canonical'`): plain gradient ascent, i.e. minimise
-CE on forget batches with the configured optimizer (SalUn's `unlearn/GA.py`:
SGD, momentum 0.9, weight decay 5e-4).

Capstone (`variant='capstone'`): the original project's `mu/mu_basic.py`:
forget set only, loss -0.1 * CE, and its own optimizer, SGD(lr=0.01,
momentum=0.9, weight_decay=5e-4) hard-coded, so `--lr` and
`config.method.optim` are ignored (a log line says so). Like the original,
which built a new optimizer every epoch, the momentum restarts at each epoch.
The batch size is `--batch_size` (the original's default is 256).

NegGrad+ (retain descent plus forget ascent) is `neggrad_plus.py`.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from mu_jax import losses
from mu_jax.methods import base

VARIANTS = ('canonical', 'capstone')
# The original project's hard-coded NegGrad optimizer and loss factor.
CAPSTONE_LR = 0.01
CAPSTONE_MOMENTUM = 0.9
CAPSTONE_WEIGHT_DECAY = 5e-4
CAPSTONE_LOSS_SCALE = 0.1


def _ascent_loss(logits: jax.Array, labels: jax.Array,
                 scale: float) -> jax.Array:
  """-scale * CE(logits, labels): minimising it is gradient ascent on CE."""
  return -scale * losses.cross_entropy(logits, labels)


def _capstone_optimizer() -> optax.GradientTransformation:
  # torch SGD adds weight decay to the gradient before momentum.
  return optax.chain(optax.add_decayed_weights(CAPSTONE_WEIGHT_DECAY),
                     optax.sgd(CAPSTONE_LR, momentum=CAPSTONE_MOMENTUM))


def _capstone_prepare(rng, state):
  del rng
  return state.with_optimizer(_capstone_optimizer()), ()


# What the rest of mu_jax knows of the method (`base.Card`).
CARD = base.Card(label='GA', aliases=('ga',), order=2)


def make(config: ml_collections.ConfigDict, ctx: base.Context) -> base.Method:
  """Returns NegGrad; `config.variant` picks canonical or capstone."""
  variant = base.check_choice('neggrad', 'variant',
                              config.get('variant', 'canonical'), VARIANTS)
  capstone = variant == 'capstone'
  steps = ctx.steps_per_epoch['forget']
  scale = CAPSTONE_LOSS_SCALE if capstone else 1.0
  if capstone:
    logging.warning(
        'neggrad capstone variant: the original project hard-codes SGD lr '
        '%g, momentum %g, weight decay %g and loss -%g * CE; --lr (%g) and '
        'config.method.optim are ignored', CAPSTONE_LR, CAPSTONE_MOMENTUM,
        CAPSTONE_WEIGHT_DECAY, CAPSTONE_LOSS_SCALE, config.optim.lr)

  def update(state, method_state, batches, rng):
    del rng  # Deterministic given the batch.
    forget = batches['forget']
    if capstone:
      # The original re-created its optimizer every epoch: restart momentum.
      restart = state.step % max(1, steps) == 0
      fresh = state.tx.init(state.params)
      state = state.replace(opt_state=jax.tree.map(
          lambda f, c: jnp.where(restart, f, c), fresh, state.opt_state))

    def loss_fn(params):
      (logits, _), model_state = state.apply(params, forget['image'],
                                             train=True)
      return _ascent_loss(logits, forget['label'], scale), (logits,
                                                            model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    accuracy = (logits.argmax(-1) == forget['label']).mean()
    return (state.apply_gradients(grads, model_state), method_state,
            {'loss': loss, 'forget_ce': -loss / scale, 'accuracy': accuracy})

  return base.single_phase(
      update, ('forget',), steps,
      prepare=_capstone_prepare if capstone else base.no_prepare,
      augment=config.get('augment', False))
