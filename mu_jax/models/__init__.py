"""Image classifiers by name; each returns `(logits, features)` from `__call__`.

`features` are the penultimate activations (the input of the classifier head),
used by MIA, t-SNE, OpenGAN and the self-supervised terms. `classifier_head`
applies only the head to given features (OpenGAN's generated features).
"""

import re

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mu_jax import errors
from mu_jax.models import cnn
from mu_jax.models import resnet

_FACTORIES = {
    'cnn': lambda c, n, dtype: cnn.CNN(
        num_classes=n, width=c.get('width', 32), dtype=dtype),
    'resnet8': lambda c, n, dtype: resnet.ResNet8(
        num_classes=n, max_pool=c.get('max_pool', False), dtype=dtype),
    'resnet20': lambda c, n, dtype: resnet.ResNet20(
        num_classes=n, max_pool=c.get('max_pool', False), dtype=dtype),
    'resnet18': lambda c, n, dtype: resnet.ResNet18(
        num_classes=n, max_pool=c.get('max_pool', False), dtype=dtype),
}
# config.model.dtype -> the layers' computation dtype. 'bfloat16' is mixed
# precision: bfloat16 activations and matrix products, float32 parameters
# (the master weights the optimizer updates), logits and features.
COMPUTE_DTYPES = {'float32': None, 'bfloat16': jnp.bfloat16}

NAMES = tuple(_FACTORIES)


def create(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """Builds the model named by `config.name` with `num_classes` outputs.

  `config.dtype` ('float32', the default, or 'bfloat16') is the computation
  dtype; see `COMPUTE_DTYPES`.
  """
  if config.name not in _FACTORIES:
    raise errors.ConfigError(
        f'unknown model {config.name!r}; choose one of {", ".join(NAMES)} '
        '(--config.model.name=...)')
  dtype_name = config.get('dtype', 'float32')
  if dtype_name not in COMPUTE_DTYPES:
    raise errors.ConfigError(
        f'unknown model dtype {dtype_name!r}; choose float32 or bfloat16 '
        '(--config.model.dtype=...)')
  if dtype_name == 'bfloat16' and jax.default_backend() == 'cpu':
    # XLA's CPU backend has no fast bfloat16 convolutions.
    logging.warning('model.dtype=bfloat16 on CPU is slower than float32; '
                    'mixed precision pays on GPUs and TPUs')
  return _FACTORIES[config.name](config, num_classes,
                                 COMPUTE_DTYPES[dtype_name])


def recipe(config: ml_collections.ConfigDict) -> dict:
  """The model settings trained weights depend on (checkpoint recipes, keys).

  The default float32 dtype is left out, so checkpoints and suite cells made
  before `model.dtype` existed still match.
  """
  settings = config.to_dict()
  if settings.get('dtype') == 'float32':
    del settings['dtype']
  return settings


def tag(config: ml_collections.ConfigDict) -> str:
  """The model's part of checkpoint folder names: 'cnn', 'resnet18_bf16'."""
  dtype = config.get('dtype', 'float32')
  return config.name + ('' if dtype == 'float32' else '_bf16')


def head_params(params) -> dict:
  """The classifier head's parameters, `{'kernel', 'bias'}`.

  Every model here ends in a top-level `nn.Dense` that maps the penultimate
  features to logits. Its modules are defined inline (`nn.compact`), so Flax
  names them in call order and the head is the top-level `Dense_k` with the
  largest k. Naming the head explicitly instead would rename parameters and
  orphan existing checkpoints.

  Args:
    params: a model's 'params' collection.

  Raises:
    ValueError: the parameters have no top-level Dense layer.
  """
  dense = [int(m.group(1)) for m in
           (re.fullmatch(r'Dense_(\d+)', str(k)) for k in params) if m]
  if not dense:
    raise ValueError('the model has no top-level Dense classifier head; '
                     'OpenGAN needs one (models in mu_jax/models/ have it)')
  return params[f'Dense_{max(dense)}']


def classifier_head(params, features: jax.Array) -> jax.Array:
  """Logits of the model's classifier head alone on `features`.

  Args:
    params: the model's 'params' collection.
    features: float [B, D], penultimate features (or generated ones).

  Returns:
    float [B, num_classes]; for a model's own features these are exactly the
    logits its `__call__` returns.
  """
  head = head_params(params)
  return features @ head['kernel'] + head['bias']
