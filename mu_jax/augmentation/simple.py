"""`--data_augment simple`: extra forget samples by random image changes.

The original (`mu/mu_data.py::simple_aug`) applied SimCLR-style transforms to
forget item i, and for i >= len(forget) used `len % i`, a bug; here item
i % len(forget) is used, so any `augment_num` cycles through the forget set.
Every operation is a pure, jit-able function of the images and an rng key.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mu_jax import augment
from mu_jax import parallel


@functools.partial(parallel.compile_function,
                   static_argnames=('crop_padding', 'flip'))
def augment_images(rng: jax.Array, images: jax.Array, *, crop_padding: int,
                   flip: bool, jitter: float, noise_std: float) -> jax.Array:
  """uint8 [B, H, W, C] -> augmented uint8 [B, H, W, C]."""
  crop_rng, flip_rng, jitter_rng, noise_rng = jax.random.split(rng, 4)
  x = augment.random_crop(crop_rng, images, crop_padding)
  if flip:
    x = augment.random_flip(flip_rng, x)
  x = x.astype(jnp.float32) / 255.0
  x = augment.color_jitter(jitter_rng, x, brightness=jitter, contrast=jitter,
                           saturation=jitter, hue=jitter / 4)
  x = x + noise_std * jax.random.normal(noise_rng, x.shape)
  return jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def source_indices(num_forget: int, augment_num: int) -> np.ndarray:
  """Forget items augmented: 0, 1, ..., cycling when augment_num > size."""
  if num_forget < 1:
    raise ValueError('cannot augment an empty forget set')
  return np.arange(augment_num) % num_forget


def generate(config: ml_collections.ConfigDict, rng: jax.Array,
             images: np.ndarray, labels: np.ndarray, augment_num: int):
  """`augment_num` augmented copies of forget images, with their labels.

  Args:
    config: config.augmentation.simple (configs/default.py).
    rng: key for the random changes.
    images: uint8 [N, H, W, C] forget images.
    labels: [N] their labels.
    augment_num: how many extra samples.

  Returns:
    (uint8 [augment_num, H, W, C], labels [augment_num]).
  """
  index = source_indices(len(images), augment_num)
  out = []
  for start in range(0, augment_num, config.batch_size):
    chunk = index[start:start + config.batch_size]
    out.append(np.asarray(augment_images(
        jax.random.fold_in(rng, start), jnp.asarray(images[chunk]),
        crop_padding=int(config.crop_padding), flip=bool(config.flip),
        jitter=float(config.jitter), noise_std=float(config.noise_std))))
  if not out:
    return images[:0], labels[:0]
  return np.concatenate(out), np.asarray(labels)[index]
