"""The training state: parameters, mutable model state, optimizer state.

A plain pytree (Flax `struct.PyTreeNode`); the model's `apply` function and the
optax transformation are static fields, so Orbax restores into a target built
by `create` and jit treats them as constants.
"""

from typing import Any, Callable

import flax.linen as nn
from flax import struct
import jax
import jax.numpy as jnp
import optax

PyTree = Any


class TrainState(struct.PyTreeNode):
  """Model parameters and state plus one optimizer.

  Attributes:
    step: number of optimizer updates applied.
    params: the 'params' collection.
    model_state: every other variable collection, e.g. {'batch_stats': ...};
      `{}` for models without mutable state.
    opt_state: state of `tx`.
    apply_fn: the Flax module's `apply`.
    tx: the optax transformation.
  """
  step: jax.Array
  params: PyTree
  model_state: PyTree
  opt_state: PyTree
  apply_fn: Callable[..., Any] = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  def apply(self, params, images, *, train: bool, model_state=None):
    """Runs the model; returns `((logits, features), new_model_state)`.

    Args:
      params: parameters to use (usually `self.params`; differentiated ones
        inside a loss function).
      images: float32 [batch, height, width, channels], already normalised.
      train: BatchNorm uses batch statistics and updates running ones if True.
      model_state: overrides `self.model_state`, to thread BatchNorm statistics
        through several forward passes in one step.
    """
    model_state = self.model_state if model_state is None else model_state
    variables = {'params': params, **model_state}
    if train and model_state:
      outputs, new_state = self.apply_fn(
          variables, images, train=True, mutable=list(model_state))
      return outputs, dict(new_state)
    return self.apply_fn(variables, images, train=train), model_state

  def apply_gradients(self, grads, model_state=None) -> 'TrainState':
    """One optimizer update; a given `model_state` replaces the mutable one."""
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(
        step=self.step + 1,
        params=optax.apply_updates(self.params, updates),
        model_state=self.model_state if model_state is None else model_state,
        opt_state=opt_state)

  def with_optimizer(self, tx: optax.GradientTransformation) -> 'TrainState':
    """The same weights with a fresh optimizer (new method, new schedule)."""
    return self.replace(step=jnp.zeros((), jnp.int32), tx=tx,
                        opt_state=tx.init(self.params))


def create(model: nn.Module, tx: optax.GradientTransformation,
           image_shape: tuple[int, ...], rng: jax.Array) -> TrainState:
  """Initialises `model` for images of `image_shape` ([H, W, C])."""
  variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32))
  variables = dict(variables)
  params = variables.pop('params')
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    model_state=variables, opt_state=tx.init(params),
                    apply_fn=model.apply, tx=tx)
