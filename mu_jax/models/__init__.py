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
from mu_jax.models import backends
from mu_jax.models import cnn
from mu_jax.models import resnet

# Each factory takes (config.model, num_classes, compute dtype, layers), the
# last two resolved for the backend (mu_jax/models/backends.py). Only the
# CNN has CPU-tuned layers; the ResNets use flax's layers on every backend.
_FACTORIES = {
    'cnn': lambda c, n, dtype, layers: cnn.CNN(
        num_classes=n, width=c.get('width', 32), dtype=dtype, layers=layers),
    'resnet8': lambda c, n, dtype, layers: resnet.ResNet8(
        num_classes=n, max_pool=c.get('max_pool', False), dtype=dtype),
    'resnet20': lambda c, n, dtype, layers: resnet.ResNet20(
        num_classes=n, max_pool=c.get('max_pool', False), dtype=dtype),
    'resnet18': lambda c, n, dtype, layers: resnet.ResNet18(
        num_classes=n, max_pool=c.get('max_pool', False), dtype=dtype),
}
# Resolved config.model.dtype -> the layers' computation dtype. 'bfloat16'
# is mixed precision: bfloat16 activations and matrix products, float32
# parameters (the master weights the optimizer updates), logits and
# features. 'auto' (backends.resolve_dtype) is bfloat16 on GPUs and TPUs,
# float32 elsewhere.
COMPUTE_DTYPES = {'float32': None, 'bfloat16': jnp.bfloat16}

NAMES = tuple(_FACTORIES)


def create(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """Builds the model named by `config.name` with `num_classes` outputs.

  `config.dtype` ('float32', the default, 'bfloat16' or 'auto') is the
  computation dtype (see `COMPUTE_DTYPES`); `config.layers` ('auto', the
  default, 'cpu_tuned' or 'standard') the layer implementations. 'auto'
  values are resolved here, for `jax.default_backend()`
  (mu_jax/models/backends.py).
  """
  if config.name not in _FACTORIES:
    raise errors.ConfigError(
        f'unknown model {config.name!r}; choose one of {", ".join(NAMES)} '
        '(--config.model.name=...)')
  dtype_setting = config.get('dtype', 'float32')
  dtype_name = backends.resolve_dtype(dtype_setting)
  layers = backends.resolve_layers(config.get('layers', 'auto'))
  if dtype_setting == 'bfloat16' and jax.default_backend() == 'cpu':
    # XLA's CPU backend has no fast bfloat16 convolutions.
    logging.warning('model.dtype=bfloat16 on CPU is slower than float32; '
                    'mixed precision pays on GPUs and TPUs')
  logging.info('model %s: %s computation%s (backend %s)', config.name,
               dtype_name, f', {layers} layers' if config.name == 'cnn' else '',
               jax.default_backend())
  return _FACTORIES[config.name](config, num_classes,
                                 COMPUTE_DTYPES[dtype_name], layers)


# The smallest image side (pixels) each model takes, and why. The CNN's two
# 2x2 max-pools floor a side below 4 to nothing, and its dense layer then has
# no input; the ResNets pad their strided convolutions and pool globally, so
# any side works.
_MIN_SIDE = {'cnn': (4, 'its two 2x2 max-pools')}


def check_image_shape(config: ml_collections.ConfigDict,
                      image_shape: tuple[int, ...], source: str) -> None:
  """Refuses images too small for the model, before anything is trained.

  Args:
    config: `config.model`.
    image_shape: one image's shape, (height, width, channels).
    source: names the data in the message (e.g. the file).

  Raises:
    errors.ConfigError: a side is below the model's minimum.
  """
  need, why = _MIN_SIDE.get(config.name, (1, ''))
  height, width = image_shape[:2]
  if min(height, width) < need:
    raise errors.ConfigError(
        f'{source} holds {height}x{width} images, but model {config.name!r} '
        f'needs at least {need}x{need} ({why}); use larger images or a '
        'ResNet (--config.model.name=resnet8)')


def recipe(config: ml_collections.ConfigDict) -> dict:
  """The model settings trained weights depend on (checkpoint recipes, keys).

  `dtype` is recorded resolved ('auto' becomes what this backend computes
  in), so a CPU run and a GPU run of the same config never share a
  checkpoint or a suite cell. The default float32 dtype is left out, so
  checkpoints and suite cells made before `model.dtype` existed still match.
  `layers` is left out: both implementations have the same parameters and
  values (mu_jax/models/backends.py), so their checkpoints are
  interchangeable.
  """
  settings = config.to_dict()
  settings.pop('layers', None)
  dtype = backends.resolve_dtype(settings.pop('dtype', 'float32'))
  if dtype != 'float32':
    settings['dtype'] = dtype
  return settings


def tag(config: ml_collections.ConfigDict) -> str:
  """The model's part of checkpoint folder names: 'cnn', 'resnet18_bf16'.

  By the resolved dtype: `dtype='auto'` gives 'resnet18_bf16' on a GPU or
  TPU and 'resnet18' on a CPU.
  """
  dtype = backends.resolve_dtype(config.get('dtype', 'float32'))
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
