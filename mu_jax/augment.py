"""Image preprocessing inside jitted steps: normalisation, random crop, flip.

Images travel from the host as uint8 [batch, H, W, C]; everything here is a
pure function of the images and an rng key, so it runs on the device as part of
the compiled step.
"""

from typing import Sequence

import jax
import jax.numpy as jnp


def normalize(images: jax.Array, mean: Sequence[float],
              std: Sequence[float]) -> jax.Array:
  """uint8 [B, H, W, C] -> float32, (x / 255 - mean) / std per channel."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def random_crop(rng: jax.Array, images: jax.Array, padding: int) -> jax.Array:
  """Zero-pads by `padding` and crops back at a random offset per image.

  Equivalent to torchvision's `RandomCrop(size, padding)` with zero fill.
  """
  if padding <= 0:
    return images
  batch, height, width, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding),
                            (0, 0)))
  offsets = jax.random.randint(rng, (batch, 2), 0, 2 * padding + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(
        image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))

  return jax.vmap(crop)(padded, offsets)


def random_flip(rng: jax.Array, images: jax.Array) -> jax.Array:
  """Flips each image left-right with probability 1/2."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


def preprocess(images: jax.Array, rng: jax.Array | None, *,
               mean: Sequence[float], std: Sequence[float],
               crop_padding: int = 0, flip: bool = False) -> jax.Array:
  """Training-time augmentation (when `rng` is given) then normalisation."""
  if rng is not None:
    crop_rng, flip_rng = jax.random.split(rng)
    images = random_crop(crop_rng, images, crop_padding)
    if flip:
      images = random_flip(flip_rng, images)
  return normalize(images, mean, std)
