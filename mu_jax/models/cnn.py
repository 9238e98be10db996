"""A small CNN (two conv + max-pool stages, one hidden dense layer).

Fast enough on a CPU to train on Fashion-MNIST in seconds; no BatchNorm, so it
has no mutable state.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mu_jax.models import conv
from mu_jax.models import pooling


class CNN(nn.Module):
  """conv3x3(w)-pool, conv3x3(2w)-pool, dense(4w), dense(classes).

  `dtype` is the computation dtype (None: float32); parameters stay float32
  and logits and features are returned in float32.
  """
  num_classes: int
  width: int = 32
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    del train  # No dropout or BatchNorm.
    # = nn.Conv, with a bias gradient that is faster on CPU
    # (mu_jax/models/conv.py).
    x = nn.relu(conv.Conv(self.width, (3, 3), dtype=self.dtype)(x))
    # = nn.max_pool(x, (2, 2), strides=(2, 2)), values and gradients, but
    # ~1.7x faster train steps on CPU (mu_jax/models/pooling.py).
    x = pooling.max_pool_2x2(x)
    x = nn.relu(conv.Conv(2 * self.width, (3, 3), dtype=self.dtype)(x))
    x = pooling.max_pool_2x2(x)
    x = x.reshape((x.shape[0], -1))
    features = nn.relu(nn.Dense(4 * self.width, dtype=self.dtype)(x))
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(features)
    return logits.astype(jnp.float32), features.astype(jnp.float32)
