"""A small CNN (two conv + max-pool stages, one hidden dense layer).

Fast enough on a CPU to train on Fashion-MNIST in seconds; no BatchNorm, so it
has no mutable state.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mu_jax.models import backends


class CNN(nn.Module):
  """conv3x3(w)-pool, conv3x3(2w)-pool, dense(4w), dense(classes).

  `dtype` is the computation dtype (None: float32); parameters stay float32
  and logits and features are returned in float32. `layers` picks the
  convolution and max-pool implementations (mu_jax/models/backends.py):
  'cpu_tuned', 'standard' or 'auto' (by `jax.default_backend()`); the
  parameters are the same either way.
  """
  num_classes: int
  width: int = 32
  dtype: Any = None
  layers: str = 'auto'

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    del train  # No dropout or BatchNorm.
    layers = backends.resolve_layers(self.layers)
    conv = lambda features: backends.conv(features, (3, 3), dtype=self.dtype,
                                          layers=layers)
    # On CPU ('cpu_tuned'): nn.Conv with a bias gradient that is faster
    # there (mu_jax/models/conv.py), and nn.max_pool(x, (2, 2), strides=(2,
    # 2)) with equal values and gradients but ~1.7x faster train steps
    # (mu_jax/models/pooling.py). Elsewhere flax's own layers.
    x = nn.relu(conv(self.width)(x))
    x = backends.max_pool_2x2(x, layers)
    x = nn.relu(conv(2 * self.width)(x))
    x = backends.max_pool_2x2(x, layers)
    x = x.reshape((x.shape[0], -1))
    features = nn.relu(nn.Dense(4 * self.width, dtype=self.dtype)(x))
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(features)
    return logits.astype(jnp.float32), features.astype(jnp.float32)
