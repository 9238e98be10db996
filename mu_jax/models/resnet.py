"""CIFAR-style ResNets: 3x3 stride-1 stem, BasicBlocks, global average pool.

`ResNet18` matches the original project's `ResNetClassifier` (torchvision
resnet18 with its 7x7 stem replaced by a 3x3 stride-1 conv); the original also
kept torchvision's max-pool after the stem, which `max_pool=True` restores.
BatchNorm uses PyTorch's defaults (momentum 0.1 => Flax momentum 0.9, eps 1e-5).
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

_BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


class BasicBlock(nn.Module):
  """Two 3x3 convs with a residual; 1x1 projection when the shape changes."""
  filters: int
  strides: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(_BatchNorm, use_running_average=not train,
                             dtype=self.dtype)
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    y = conv(self.filters, (3, 3), (self.strides, self.strides))(x)
    y = nn.relu(norm()(y))
    y = conv(self.filters, (3, 3))(y)
    y = norm()(y)
    if x.shape != y.shape:
      x = conv(self.filters, (1, 1), (self.strides, self.strides))(x)
      x = norm()(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """ResNet of `stage_sizes` BasicBlocks at `widths`; gives logits, features.

  `dtype` is the computation dtype (None: float32); parameters and BatchNorm
  statistics stay float32, logits and features are returned in float32.
  """
  num_classes: int
  stage_sizes: Sequence[int]
  widths: Sequence[int]
  max_pool: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    x = nn.Conv(self.widths[0], (3, 3), use_bias=False, dtype=self.dtype)(x)
    x = nn.relu(_BatchNorm(use_running_average=not train,
                           dtype=self.dtype)(x))
    if self.max_pool:
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
      for block in range(blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(width, strides, self.dtype)(x, train)
    # The mean of many bfloat16 values loses precision: average in float32.
    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(features)
    return logits.astype(jnp.float32), features


ResNet18 = functools.partial(
    ResNet, stage_sizes=(2, 2, 2, 2), widths=(64, 128, 256, 512))
# He et al.'s CIFAR ResNet-20 layout, and a one-block-per-stage version of it
# that is fast enough for CPU experiments.
ResNet20 = functools.partial(
    ResNet, stage_sizes=(3, 3, 3), widths=(16, 32, 64))
ResNet8 = functools.partial(
    ResNet, stage_sizes=(1, 1, 1), widths=(16, 32, 64))
