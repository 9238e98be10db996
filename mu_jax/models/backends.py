"""Per-backend choices made when a model is built: layers and compute dtype.

Two settings of `config.model` depend on the machine the model runs on:

- `layers` ('auto' | 'cpu_tuned' | 'standard'): the CNN's convolution and
  2x2 max-pool. 'cpu_tuned' is mu_jax's `conv.Conv` (bias gradient as a
  matrix product) and `pooling.max_pool_2x2` (no `select_and_scatter`),
  measured faster on XLA's CPU backend only (docs/PERFORMANCE.md);
  'standard' is flax's `nn.Conv` and `nn.max_pool`, which GPU and TPU
  compilers know best. 'auto' takes 'cpu_tuned' on the CPU backend and
  'standard' on every other. Both give the same parameter names, shapes,
  initial values and forward values, so checkpoints load either way and
  the setting is not part of a checkpoint's recipe.
- `dtype` ('auto' | 'float32' | 'bfloat16'): 'auto' is mixed precision
  (bfloat16) on GPUs and TPUs, float32 elsewhere (XLA's CPU backend has no
  fast bfloat16 convolutions). It changes the trained weights, so the
  resolved value goes into checkpoint recipes and folder names
  (`models.recipe`, `models.tag`).

'auto' asks `jax.default_backend()`, which initialises JAX's backends: it
is only resolved where a model is created or its checkpoints are named,
after the host is set up (`parallel.configure_host`, multi-host
initialisation); explicit values never query the backend.
"""

import flax.linen as nn
import jax

from mu_jax import errors
from mu_jax.models import conv as conv_lib
from mu_jax.models import pooling

LAYERS = ('auto', 'cpu_tuned', 'standard')
DTYPES = ('auto', 'float32', 'bfloat16')
# jax.default_backend() of the accelerators mixed precision pays on.
ACCELERATORS = frozenset({'gpu', 'cuda', 'rocm', 'tpu'})


def _backend(backend: str | None) -> str:
  return (backend or jax.default_backend()).lower()


def _resolve(field: str, setting: str, choices: tuple[str, ...],
             backend: str | None, on_auto) -> str:
  """`config.model.<field>`'s value, 'auto' decided by `on_auto(backend)`.

  Raises:
    errors.ConfigError: a setting outside `choices`.
  """
  if setting not in choices:
    raise errors.ConfigError(
        f'unknown model {field} {setting!r}; choose one of '
        f'{", ".join(choices)} (--config.model.{field}=...)')
  return on_auto(_backend(backend)) if setting == 'auto' else setting


def resolve_layers(setting: str = 'auto', backend: str | None = None) -> str:
  """`config.model.layers` ('auto', 'cpu_tuned' or 'standard') -> 'cpu_tuned'
  or 'standard', for `backend` (None = `jax.default_backend()`)."""
  return _resolve('layers', setting, LAYERS, backend,
                  lambda b: 'cpu_tuned' if b == 'cpu' else 'standard')


def resolve_dtype(setting: str = 'float32', backend: str | None = None) -> str:
  """`config.model.dtype` ('auto', 'float32' or 'bfloat16') -> 'float32' or
  'bfloat16', for `backend` (None = `jax.default_backend()`)."""
  return _resolve('dtype', setting, DTYPES, backend,
                  lambda b: 'bfloat16' if b in ACCELERATORS else 'float32')


def conv(features: int, kernel_size: tuple[int, int], *, dtype,
         layers: str) -> nn.Module:
  """A 'SAME', stride-1 convolution with a bias, named `Conv` either way.

  Args:
    features: output channels.
    kernel_size: (height, width).
    dtype: computation dtype (None: float32).
    layers: 'cpu_tuned' (`conv.Conv`) or 'standard' (`nn.Conv`); resolved.
  """
  if layers == 'cpu_tuned':
    return conv_lib.Conv(features, kernel_size, dtype=dtype)
  return nn.Conv(features, kernel_size, strides=(1, 1), padding='SAME',
                 dtype=dtype)


def max_pool_2x2(x: jax.Array, layers: str) -> jax.Array:
  """2x2, stride-2, VALID max-pool: `pooling.max_pool_2x2` or `nn.max_pool`.

  Args:
    x: [batch, height, width, channels].
    layers: 'cpu_tuned' or 'standard'; resolved.
  """
  if layers == 'cpu_tuned':
    return pooling.max_pool_2x2(x)
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')
