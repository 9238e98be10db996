"""A convolution layer with a bias gradient that is fast on CPU.

Same parameters, names, initialisation and forward values as
`flax.linen.Conv` with 'SAME' padding and stride 1, so checkpoints load
either way. What differs is how the bias gradient is reduced.

The gradient of a per-channel bias is the upstream gradient summed over
batch, height and width. Autodiff emits that as a reduction over three of a
4-D array's four axes, which XLA's CPU backend runs as a tree of
`reduce-window` kernels: about 5 ms of a 43 ms CNN step for the first
layer's [128, 28, 28, 32] gradient (docs/PERFORMANCE.md). The same sum as a
vector-matrix product, ones @ g.reshape(-1, channels), runs in XLA's dot
kernel at memory speed. The result differs from the autodiff sum only in
float rounding (the order of the additions).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


@jax.custom_vjp
def add_channel_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
  """y + bias, broadcast over all but the last (channel) axis.

  Args:
    y: [..., channels].
    bias: [channels].

  Returns:
    y + bias, whose bias gradient is computed as a matrix product.
  """
  return y + bias


def _forward(y, bias):
  return y + bias, bias


def _backward(bias, g):
  rows = g.reshape(-1, g.shape[-1])
  ones = jnp.ones((rows.shape[0],), rows.dtype)
  # Accumulate in float32 even for bfloat16 activations.
  d_bias = jnp.dot(ones, rows, preferred_element_type=jnp.float32)
  return g, d_bias.astype(bias.dtype)


add_channel_bias.defvjp(_forward, _backward)


class Conv(nn.Module):
  """`nn.Conv(features, kernel_size)` with 'SAME' padding and stride 1.

  Named `Conv` so that flax names its instances Conv_0, Conv_1, ... as it
  names `nn.Conv`'s: parameter trees, and so checkpoints, are the same.

  Attributes:
    features: output channels.
    kernel_size: (height, width) of the window.
    dtype: computation dtype (None: that of the inputs and parameters, as in
      flax); parameters stay float32.
  """
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (*self.kernel_size, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    y = jax.lax.conv_general_dilated(
        x, kernel, window_strides=(1, 1), padding='SAME',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return add_channel_bias(y, bias)
