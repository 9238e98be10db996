"""Generators, discriminators and the ARPL classifier for forget-set
augmentation (kklusd/Unlearning's `OpenGAN/network.py` and ARPL's
`Generator32`).

* `ImageGenerator` / `ImageDiscriminator`: a small DCGAN for the dataset's
  image size and channels (28x28x1, 32x32x3, any H, W divisible by 4). The
  generator ends in a sigmoid: images in [0, 1].
* `ArplNet`: the classifier whose features the ARPL reciprocal points act on.
* `FeatureGenerator` / `FeatureDiscriminator`: OpenGAN's 1x1-convolution MLPs
  on penultimate features, written as dense layers (a 1x1 convolution on a
  1x1 map is a dense layer).

None of them uses BatchNorm, so they carry no mutable state; the generators
use LayerNorm where the originals used BatchNorm.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

# DCGAN initialisation, N(0, 0.02), as in the original GANs.
_INIT = nn.initializers.normal(0.02)


class ImageGenerator(nn.Module):
  """noise [B, nz] -> images [B, H, W, C] in [0, 1]."""
  image_shape: Sequence[int]  # (H, W, C), H and W divisible by 4.
  width: int = 64

  @nn.compact
  def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
    height, width, channels = self.image_shape
    h0, w0 = height // 4, width // 4
    x = nn.Dense(h0 * w0 * 2 * self.width, kernel_init=_INIT)(z)
    x = nn.relu(nn.LayerNorm()(x)).reshape((-1, h0, w0, 2 * self.width))
    x = nn.ConvTranspose(self.width, (4, 4), strides=(2, 2),
                         kernel_init=_INIT)(x)
    x = nn.relu(nn.LayerNorm()(x))
    x = nn.ConvTranspose(channels, (4, 4), strides=(2, 2),
                         kernel_init=_INIT)(x)
    return nn.sigmoid(x)


class ImageDiscriminator(nn.Module):
  """images [B, H, W, C] in [0, 1] -> real/fake logits [B]."""
  width: int = 64

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    x = nn.leaky_relu(nn.Conv(self.width, (4, 4), strides=(2, 2),
                              kernel_init=_INIT)(x), 0.2)
    x = nn.leaky_relu(nn.Conv(2 * self.width, (4, 4), strides=(2, 2),
                              kernel_init=_INIT)(x), 0.2)
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(1, kernel_init=_INIT)(x)[:, 0]


class ArplNet(nn.Module):
  """images [B, H, W, C] in [0, 1] -> features [B, feature_dim].

  The classifier head is the ARPL criterion's reciprocal points
  (mu_jax/augmentation/arpl.py), not a dense layer.
  """
  width: int = 32
  feature_dim: int = 128

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    x = nn.relu(nn.Conv(self.width, (3, 3))(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Conv(2 * self.width, (3, 3))(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    return nn.relu(nn.Dense(self.feature_dim)(x))


class FeatureGenerator(nn.Module):
  """noise [B, nz] -> features [B, feature_dim] (OpenGAN's G)."""
  feature_dim: int
  hidden: Sequence[int] = (512, 256, 128, 256)

  @nn.compact
  def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
    x = z
    for size in self.hidden:
      x = nn.relu(nn.LayerNorm()(nn.Dense(size, kernel_init=_INIT)(x)))
    return nn.Dense(self.feature_dim, kernel_init=_INIT)(x)


class FeatureDiscriminator(nn.Module):
  """features [B, feature_dim] -> real/fake logits [B] (OpenGAN's D)."""
  hidden: Sequence[int] = (512, 256, 128, 64)

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    for size in self.hidden:
      x = nn.leaky_relu(nn.Dense(size, kernel_init=_INIT)(x), 0.2)
    return nn.Dense(1, kernel_init=_INIT)(x)[:, 0]
