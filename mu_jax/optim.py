"""Optimizers and learning-rate schedules with PyTorch's semantics.

`torch.optim.SGD(lr, momentum, weight_decay)` and `torch.optim.Adam(...,
weight_decay)` add `weight_decay * param` to the gradient *before* momentum or
the Adam moments (L2, not AdamW); `optax.add_decayed_weights` placed first in
the chain does exactly that (`torch.optim.SGD` / `torch.optim.Adam` docs).
"""

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mu_jax import errors

SCHEDULES = ('constant', 'cosine', 'multistep')
OPTIMIZERS = ('sgd', 'adam')


def make_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int,
                  epochs: int) -> optax.Schedule:
  """Learning rate per step.

  Args:
    config: `lr`, `schedule` ('constant', 'cosine' or 'multistep'),
      `milestones` (epochs, for multistep), `gamma` (multistep factor),
      `warmup_epochs` (linear warm-up from 0).
    steps_per_epoch: optimizer steps in one epoch.
    epochs: length of the run.
  """
  kind = config.get('schedule', 'constant')
  total = max(1, steps_per_epoch * epochs)
  warmup = int(config.get('warmup_epochs', 0) * steps_per_epoch)
  if kind == 'constant':
    main = optax.constant_schedule(config.lr)
  elif kind == 'cosine':
    main = optax.cosine_decay_schedule(config.lr, max(1, total - warmup))
  elif kind == 'multistep':
    # Milestones count from the start of training, like torch's MultiStepLR.
    boundaries = {int(m * steps_per_epoch) - warmup: config.get('gamma', 0.1)
                  for m in config.get('milestones', ())}
    main = optax.piecewise_constant_schedule(config.lr, boundaries)
  else:
    raise errors.ConfigError(f'unknown lr schedule {kind!r}; choose one of '
                             f'{", ".join(SCHEDULES)}')
  if not warmup:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, config.lr, warmup), main], [warmup])


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int,
                   epochs: int) -> optax.GradientTransformation:
  """SGD (momentum, optional Nesterov) or Adam, with L2 weight decay.

  Args:
    config: `name` ('sgd' or 'adam'), `lr` and the schedule fields of
      `make_schedule`, `momentum`, `weight_decay`, optional `nesterov`.
    steps_per_epoch: optimizer steps in one epoch.
    epochs: length of the run.
  """
  schedule = make_schedule(config, steps_per_epoch, epochs)
  name = config.get('name', 'sgd').lower()
  if name == 'sgd':
    momentum = config.get('momentum', 0.0) or None
    opt = optax.sgd(schedule, momentum=momentum,
                    nesterov=config.get('nesterov', False))
  elif name == 'adam':
    opt = optax.adam(schedule)
  else:
    raise errors.ConfigError(f'unknown optimizer {name!r}; choose one of '
                             f'{", ".join(OPTIMIZERS)}')
  weight_decay = config.get('weight_decay', 0.0)
  if weight_decay:
    return optax.chain(optax.add_decayed_weights(weight_decay), opt)
  return opt


class LrScaleState(NamedTuple):
  """The state of `lr_scale`: the factor, a float32 scalar."""
  scale: jax.Array


def lr_scale() -> optax.GradientTransformation:
  """Multiplies the final updates by a factor held in the optimizer state.

  Placed last in a chain of SGD (momentum included, PyTorch's semantics) or
  Adam, it is exactly a learning-rate change: both make the update `-lr *
  direction` with a direction that does not depend on lr. Because the
  factor is state, not a constant of the program, runs that differ only in
  their learning rate (the guard rails' attempts) share one compiled step;
  `set_lr_scale` sets it. It starts at 1.0, which leaves every update
  bit-identical to the chain without it.
  """

  def init(params):
    del params
    return LrScaleState(jnp.ones((), jnp.float32))

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: u * state.scale.astype(u.dtype),
                        updates), state

  return optax.GradientTransformation(init, update)


def set_lr_scale(opt_state, scale: float):
  """`opt_state` with every `lr_scale` factor in it set to `scale`."""
  return jax.tree.map(
      lambda s: (LrScaleState(jnp.full_like(s.scale, scale))
                 if isinstance(s, LrScaleState) else s),
      opt_state, is_leaf=lambda s: isinstance(s, LrScaleState))


def per_part(transforms: Mapping[str, optax.GradientTransformation]
             ) -> optax.GradientTransformation:
  """One optimizer per top-level part of the parameters.

  For models of several networks trained in turns (a GAN's generator and
  discriminator): the state is {part: that optimizer's state}, and `update`
  steps every part. A method that updates one part at a time uses
  `step_part` with the same transforms.

  Args:
    transforms: part name -> its optimizer; the parameters are a dict with
      exactly these keys.
  """

  def init(params):
    return {k: tx.init(params[k]) for k, tx in transforms.items()}

  def update(grads, state, params=None):
    out = {k: tx.update(grads[k], state[k],
                        None if params is None else params[k])
           for k, tx in transforms.items()}
    return {k: u for k, (u, _) in out.items()}, {k: s for k, (_, s) in
                                                  out.items()}

  return optax.GradientTransformation(init, update)


def step_part(tx: optax.GradientTransformation, grads, opt_state, params):
  """One step of one part's optimizer: (new params, new optimizer state)."""
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state
