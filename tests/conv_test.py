"""mu_jax's Conv equals flax's nn.Conv; XLA's CPU convolution kernels."""

import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from mu_jax import parallel
from mu_jax.models import conv

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Pair(nn.Module):
  """Two 3x3 convolutions, built with `make` (nn.Conv or conv.Conv)."""
  make: type

  @nn.compact
  def __call__(self, x):
    return self.make(5, (3, 3))(nn.relu(self.make(4, (3, 3))(x)))


class AddChannelBiasTest(absltest.TestCase):

  def test_bias_gradient_by_hand(self):
    # g[b, h, w, c] = 1 + c + 10 * (b * 4 + h * 2 + w): each channel's sum
    # over the 8 positions is 8 * (1 + c) + 10 * (0 + 1 + ... + 7) = 288 + 8c.
    g = (1 + np.arange(3) + 10 * np.arange(8)[:, None]).reshape(2, 2, 2, 3)
    g = g.astype(np.float32)
    y = np.zeros_like(g)
    bias = np.array([1., 2., 3.], np.float32)
    out, vjp = jax.vjp(conv.add_channel_bias, y, bias)
    np.testing.assert_array_equal(out, np.broadcast_to(bias, y.shape))
    d_y, d_bias = vjp(g)
    np.testing.assert_array_equal(d_bias, [288., 296., 304.])
    np.testing.assert_array_equal(d_y, g)  # Passes through unchanged.

  def test_bfloat16_bias_gradient_is_accumulated_in_float32(self):
    g = jnp.full((64, 7, 7, 2), 0.1, jnp.bfloat16)
    _, vjp = jax.vjp(conv.add_channel_bias, jnp.zeros_like(g),
                     jnp.zeros((2,), jnp.bfloat16))
    _, d_bias = vjp(g)
    self.assertEqual(d_bias.dtype, jnp.bfloat16)
    # 3136 x bf16(0.1) = 3136 x 0.10009765625 = 313.906 in float32, rounded
    # once to bfloat16 (steps of 2 between 256 and 512): 314. Adding in
    # bfloat16 would stall near 32, where a step exceeds twice 0.1.
    np.testing.assert_array_equal(d_bias.astype(np.float32), [314., 314.])


class ConvTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.x = rng.normal(size=(6, 9, 7, 3)).astype(np.float32)
    self.ours, self.flax = _Pair(conv.Conv), _Pair(nn.Conv)
    self.params = self.ours.init(jax.random.key(1), self.x)

  def test_same_parameters_as_flax_conv(self):
    # Same names, shapes and initial values: checkpoints load either way.
    theirs = self.flax.init(jax.random.key(1), self.x)
    self.assertEqual(jax.tree.structure(self.params),
                     jax.tree.structure(theirs))
    for a, b in zip(jax.tree.leaves(self.params), jax.tree.leaves(theirs)):
      np.testing.assert_array_equal(a, b)

  def test_values_and_gradients_match_flax_conv(self):
    np.testing.assert_array_equal(self.ours.apply(self.params, self.x),
                                  self.flax.apply(self.params, self.x))
    loss = lambda model: lambda p: (model.apply(p, self.x) ** 2).sum()
    ours = jax.grad(loss(self.ours))(self.params)['params']
    theirs = jax.grad(loss(self.flax))(self.params)['params']
    for layer in ('Conv_0', 'Conv_1'):
      # Kernel gradients are computed identically; the bias gradient adds
      # the same numbers in another order.
      np.testing.assert_array_equal(ours[layer]['kernel'],
                                    theirs[layer]['kernel'])
      np.testing.assert_allclose(ours[layer]['bias'], theirs[layer]['bias'],
                                 rtol=1e-5)

  def test_bfloat16_compute_float32_parameters(self):
    model = _Pair(lambda *a: conv.Conv(*a, dtype=jnp.bfloat16))
    params = model.init(jax.random.key(1), self.x)
    self.assertTrue(all(p.dtype == jnp.float32
                        for p in jax.tree.leaves(params)))
    y = model.apply(params, self.x)
    self.assertEqual(y.dtype, jnp.bfloat16)
    np.testing.assert_allclose(y.astype(np.float32),
                               self.flax.apply(params, self.x),
                               rtol=0.05, atol=0.05)


def _compiled_text(cpu_convolutions: str, xla_flags: str = '') -> str:
  """HLO of a jitted convolution in a fresh process set up by configure_host."""
  script = textwrap.dedent(f"""
      import jax, jax.numpy as jnp
      from mu_jax import parallel
      parallel.configure_host(1, cache_dir='',
                              cpu_convolutions={cpu_convolutions!r})
      f = lambda x, w: jax.lax.conv_general_dilated(
          x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      print(jax.jit(f).lower(jnp.ones((8, 14, 14, 16)),
                             jnp.ones((3, 3, 16, 32))).compile().as_text())
      """)
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=xla_flags)
  proc = subprocess.run([sys.executable, '-c', script], cwd=_ROOT,
                        capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout


class CpuConvolutionsTest(absltest.TestCase):

  def test_eigen_takes_convolutions_off_ynnpack(self):
    self.assertIn('__ynn_fusion', _compiled_text('ynnpack'))
    self.assertNotIn('__ynn_fusion', _compiled_text('eigen'))

  def test_a_setting_in_xla_flags_wins(self):
    self.assertIn('__ynn_fusion', _compiled_text(
        'eigen', xla_flags=parallel.CPU_CONVOLUTION_FLAGS['eigen'].replace(
            'individual_dot', 'individual_dot,individual_convolution')))

  def test_auto_choice_per_model(self):
    self.assertEqual(parallel.cpu_convolutions_for('cnn'), 'eigen')
    for name in ('resnet8', 'resnet20', 'resnet18'):
      self.assertEqual(parallel.cpu_convolutions_for(name), 'ynnpack')

  def test_unknown_choice(self):
    with self.assertRaisesRegex(ValueError, 'eigen'):
      parallel.configure_host(0, cache_dir='', cpu_convolutions='mkl')


if __name__ == '__main__':
  absltest.main()
