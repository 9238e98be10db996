"""Self-supervised help for unlearning (the original project's idea).

* `SimCLRModel`: a classifier backbone from `mu_jax.models` plus a projection
  head, pretrained with NT-Xent on two SimCLR views (`simclr_method`), once
  per recipe and then reused (`pretrain`).
* `make_term`: the term that Bad Teaching and SCRUB add with weight
  `loss_weight` during unlearning: `simple` (similarity of the student's
  projection to the frozen SimCLR embedding, weighted by the forget fraction)
  or `original` (NT-Xent on two views with the positive pair negated for forget
  samples). kklusd/Unlearning's `mu/mu_utils.py`.

The student projects its penultimate features with a frozen copy of the SimCLR
head, as the original did; gradients flow into the student's backbone unless
`ssl_no_grad` reproduces the original's `torch.no_grad()` (where the term
changed the printed loss only).

The settings are `config.ssl`, made and commented in configs/default.py
(`ssl_section`).
"""

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mu_jax import augment
from mu_jax import classifiers
from mu_jax import host_batches
from mu_jax import losses
from mu_jax import models
from mu_jax import optim
from mu_jax import state as state_lib
from mu_jax.methods import base

PyTree = Any


class ProjectionHead(nn.Module):
  """Dense(hidden) - ReLU - Dense(out_dim), SimCLR's MLP head."""
  hidden: int
  out_dim: int = 128

  @nn.compact
  def __call__(self, features):
    hidden = nn.relu(nn.Dense(self.hidden, name='hidden')(features))
    return nn.Dense(self.out_dim, name='out')(hidden)


class SimCLRModel(nn.Module):
  """A classifier's backbone with a projection head; returns (z, features)."""
  backbone: nn.Module
  out_dim: int = 128

  @nn.compact
  def __call__(self, x, train: bool = False):
    _, features = self.backbone(x, train)
    head = ProjectionHead(hidden=features.shape[-1], out_dim=self.out_dim,
                          name='head')
    return head(features), features


def _two_views(rng, images, mean, std):
  """Two SimCLR views of normalised images, normalised again."""
  mean = jnp.asarray(mean, images.dtype)
  std = jnp.asarray(std, images.dtype)
  raw = jnp.clip(images * std + mean, 0.0, 1.0)
  rng1, rng2 = jax.random.split(rng)
  return ((augment.simclr_view(rng1, raw) - mean) / std,
          (augment.simclr_view(rng2, raw) - mean) / std)


def simclr_method(config: ml_collections.ConfigDict, ctx: base.Context,
                  mean, std) -> base.Method:
  """SimCLR pretraining of a `SimCLRModel` on split 'retain' (all data)."""

  def update(state, method_state, batches, rng):
    view1, view2 = _two_views(rng, batches['retain']['image'], mean, std)
    n = view1.shape[0]

    def loss_fn(params):
      # One pass over both views: BatchNorm sees the 2B batch, as in SimCLR.
      (z, _), model_state = state.apply(
          params, jnp.concatenate([view1, view2]), train=True)
      return losses.nt_xent(z[:n], z[n:], config.temperature), model_state

    (loss, model_state), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    return (state.apply_gradients(grads, model_state), method_state,
            {'loss': loss})

  return base.single_phase(update, ('retain',), ctx.steps_per_epoch['retain'])


class Term(NamedTuple):
  """A self-supervised unlearning term.

  Attributes:
    init: `() -> PyTree`, the frozen arrays (SimCLR encoder, head) to keep
      in the method's `method_state['ssl']`.
    loss: `(state, params, frozen, images, features, is_forget, rng,
      model_state) -> (loss, model_state)`; `features` are the student's
      penultimate features of `images` (already computed by the method).
  """
  init: Callable[[], PyTree]
  loss: Callable[..., tuple[jax.Array, PyTree]]


def make_term(method_config: ml_collections.ConfigDict,
              ctx: base.Context) -> Term | None:
  """The term selected by `supervised_mode`, or None if `loss_weight` is 0."""
  if not method_config.loss_weight:
    return None
  if ctx.simclr is None:
    raise ValueError('the self-supervised term needs a SimCLR model; the '
                     'pipeline provides one when loss_weight > 0')
  simclr_apply, simclr_variables, temperature = ctx.simclr
  mode = method_config.supervised_mode
  no_grad = method_config.get('ssl_no_grad', False)

  def init():
    # Real copies: method_state is donated along with the state.
    frozen = jax.tree.map(jnp.copy, simclr_variables)
    return {'simclr': frozen, 'head': frozen['params']['head']}

  def project(frozen, features):
    return ProjectionHead(hidden=features.shape[-1],
                          out_dim=_out_dim(frozen)).apply(
        {'params': frozen['head']}, features)

  def simple(state, params, frozen, images, features, is_forget, rng,
             model_state):
    del state, params, rng
    reference, _ = simclr_apply(frozen['simclr'], images, train=False)
    loss = losses.simple_similarity_loss(
        project(frozen, features), jax.lax.stop_gradient(reference),
        is_forget)
    return loss, model_state

  def original(state, params, frozen, images, features, is_forget, rng,
               model_state):
    mean, std = ctx.mean, ctx.std
    _, view2 = _two_views(rng, images, mean, std)
    (_, features2), model_state = state.apply(params, view2, train=True,
                                              model_state=model_state)
    loss = losses.contrastive_unlearning_loss(
        project(frozen, features), project(frozen, features2), is_forget,
        temperature)
    return loss, model_state

  fn = {'simple': simple, 'original': original}[mode]

  def loss(*args):
    value, model_state = fn(*args)
    return (jax.lax.stop_gradient(value) if no_grad else value), model_state

  return Term(init, loss)


def _out_dim(frozen) -> int:
  return frozen['head']['out']['bias'].shape[0]


def pretrain(exp) -> tuple[Any, dict[str, Any]]:
  """The SimCLR encoder (classifier backbone + projection head) on all data.

  Trained once per recipe into its own checkpoint folder (`config.ssl`),
  then reused, like the original model.

  Args:
    exp: the `experiment.Experiment`.

  Returns:
    (state, info): see `checkpoint.train_or_reuse`.
  """
  config, dataset = exp.config, exp.dataset
  ssl = config.ssl
  model = SimCLRModel(exp.model, ssl.out_dim)
  steps = len(dataset.train_labels) // ssl.batch_size
  tx = optim.make_optimizer(ssl.optim, steps, ssl.epochs)
  template = state_lib.create(model, tx, exp.image_shape,
                              jax.random.key(config.seed))
  recipe = {'dataset_fingerprint': dataset.fingerprint(),
            'model': models.recipe(config.model), 'ssl': ssl.to_dict(),
            'seed': config.seed}
  name = f'{dataset.name}_{models.tag(config.model)}_simclr_s{config.seed}'
  data = {'retain': host_batches.split_data(dataset.train_images,
                                            dataset.train_labels)}
  method = simclr_method(
      ssl, exp.context(data, {'retain': ssl.batch_size}, ssl.epochs),
      dataset.mean, dataset.std)
  return classifiers.train_or_reuse(exp, 'simclr', name, recipe, method,
                                    template, data, ssl.epochs,
                                    ssl.batch_size, augment=False)
