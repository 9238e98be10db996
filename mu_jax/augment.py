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
  """uint8 [B, H, W, C] -> float32, (x / 255 - mean) / std per channel.

  Float images are already in their model's own preprocessing (the library
  face, mu_jax/api.py, takes them so) and pass through as float32.
  """
  if jnp.issubdtype(images.dtype, jnp.floating):
    return images.astype(jnp.float32)
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


# SimCLR views (Chen et al., 2020), as the original project's SimCLR used them:
# RandomResizedCrop -> HFlip -> ColorJitter(0.8, 0.8, 0.8, 0.2) with p=0.8 ->
# RandomGrayscale(0.2) -> GaussianBlur(3, sigma in [0.1, 2]). All operate on
# float images in [0, 1], [B, H, W, C] with C = 1 or 3, and keep that range.


def _per_image_uniform(rng, batch, low, high):
  return jax.random.uniform(rng, (batch,), minval=low, maxval=high)


def random_resized_crop(rng: jax.Array, images: jax.Array,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> jax.Array:
  """Crops a random area fraction and aspect ratio, resized back (bilinear).

  Like torchvision's RandomResizedCrop, without its rejection loop: the area
  and log-ratio are drawn once and the box is clipped to the image.
  """
  batch, height, width, channels = images.shape
  area_rng, ratio_rng, y_rng, x_rng = jax.random.split(rng, 4)
  area = _per_image_uniform(area_rng, batch, *scale) * height * width
  log_ratio = _per_image_uniform(ratio_rng, batch, jnp.log(ratio[0]),
                                 jnp.log(ratio[1]))
  aspect = jnp.exp(log_ratio)
  crop_w = jnp.clip(jnp.sqrt(area * aspect), 1.0, width)
  crop_h = jnp.clip(jnp.sqrt(area / aspect), 1.0, height)
  y0 = jax.random.uniform(y_rng, (batch,)) * (height - crop_h)
  x0 = jax.random.uniform(x_rng, (batch,)) * (width - crop_w)
  scale_yx = jnp.stack([height / crop_h, width / crop_w], -1)
  translate_yx = -jnp.stack([y0, x0], -1) * scale_yx

  def resize(image, s, t):
    return jax.image.scale_and_translate(
        image, (height, width, channels), (0, 1), s, t, 'linear',
        antialias=False)

  return jnp.clip(jax.vmap(resize)(images, scale_yx, translate_yx), 0.0, 1.0)


def _grayscale(images: jax.Array) -> jax.Array:
  if images.shape[-1] == 1:
    return images
  weights = jnp.asarray([0.299, 0.587, 0.114], images.dtype)
  return jnp.sum(images * weights, -1, keepdims=True)


def color_jitter(rng: jax.Array, images: jax.Array, brightness=0.8,
                 contrast=0.8, saturation=0.8, hue=0.2) -> jax.Array:
  """Random brightness, contrast, saturation and hue, in that fixed order.

  Factors are drawn per image from [1 - s, 1 + s] (hue: a rotation by
  [-hue, hue] turns of the chroma plane in YIQ space, a close and
  differentiable stand-in for HSV hue shifts). Saturation and hue leave
  grayscale images unchanged, as in torchvision.
  """
  batch = images.shape[0]
  rngs = jax.random.split(rng, 4)
  shape = (batch, 1, 1, 1)
  factor = lambda r, s: _per_image_uniform(r, batch, 1 - s, 1 + s).reshape(
      shape)
  x = images * factor(rngs[0], brightness)
  mean = jnp.mean(_grayscale(x), axis=(1, 2, 3), keepdims=True)
  x = jnp.clip((x - mean) * factor(rngs[1], contrast) + mean, 0.0, 1.0)
  if images.shape[-1] == 3:
    gray = _grayscale(x)
    x = jnp.clip((x - gray) * factor(rngs[2], saturation) + gray, 0.0, 1.0)
    to_yiq = jnp.asarray([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                          [0.211, -0.523, 0.312]], x.dtype)
    yiq = x @ to_yiq.T
    angle = _per_image_uniform(rngs[3], batch, -hue, hue).reshape(
        (batch, 1, 1)) * 2 * jnp.pi
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    i = yiq[..., 1] * cos - yiq[..., 2] * sin
    q = yiq[..., 1] * sin + yiq[..., 2] * cos
    yiq = jnp.stack([yiq[..., 0], i, q], -1)
    x = yiq @ jnp.linalg.inv(to_yiq).T
  return jnp.clip(x, 0.0, 1.0)


def _per_image_coin(rng, images, p):
  return jax.random.bernoulli(rng, p, (images.shape[0], 1, 1, 1))


def random_grayscale(rng: jax.Array, images: jax.Array, p=0.2) -> jax.Array:
  """Replaces an image by its luma (kept in C channels) with probability p."""
  gray = jnp.broadcast_to(_grayscale(images), images.shape)
  return jnp.where(_per_image_coin(rng, images, p), gray, images)


def gaussian_blur(rng: jax.Array, images: jax.Array, kernel_size=3,
                  sigma=(0.1, 2.0)) -> jax.Array:
  """Separable Gaussian blur with a per-image sigma, reflect padding."""
  batch = images.shape[0]
  s = _per_image_uniform(rng, batch, *sigma)
  offsets = jnp.arange(kernel_size) - kernel_size // 2
  kernel = jnp.exp(-0.5 * (offsets[None, :] / s[:, None])**2)
  kernel = kernel / kernel.sum(-1, keepdims=True)  # [B, k]
  pad = kernel_size // 2

  def blur(image, k):
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode='reflect')
    rows = sum(k[j] * padded[j:j + image.shape[0], :, :]
               for j in range(kernel_size))
    return sum(k[j] * rows[:, j:j + image.shape[1], :]
               for j in range(kernel_size))

  return jax.vmap(blur)(images, kernel)


def simclr_view(rng: jax.Array, images: jax.Array) -> jax.Array:
  """One SimCLR view of float images in [0, 1] (the composition above)."""
  crop, flip, jitter_coin, jitter, gray, blur = jax.random.split(rng, 6)
  x = random_resized_crop(crop, images)
  x = random_flip(flip, x)
  x = jnp.where(_per_image_coin(jitter_coin, x, 0.8),
                color_jitter(jitter, x), x)
  x = random_grayscale(gray, x)
  kernel = max(3, int(0.1 * images.shape[1]) // 2 * 2 + 1)
  return gaussian_blur(blur, x, kernel_size=kernel)
