"""The losses against numpy references, hand-computed values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized
from jax import test_util

from mu_jax import losses

# KL(p || uniform) for p = (.75, .25): .75 log 1.5 + .25 log .5, by hand.
_KL_75_25 = 0.75 * np.log(1.5) + 0.25 * np.log(0.5)


def _softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _kl_rows(p, q):
  """KL(p_i || q_i) per row, float64, with 0 log 0 = 0."""
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  ratio = np.where(p > 0, p / q, 1.0)
  return np.sum(p * np.log(ratio), -1)


def _logits(seed, batch=6, classes=5, scale=2.0):
  return np.random.default_rng(seed).normal(
      0, scale, (batch, classes)).astype(np.float32)


class CrossEntropyTest(absltest.TestCase):

  def test_value(self):
    np.testing.assert_allclose(
        jax.jit(losses.cross_entropy)(jnp.zeros((1, 4)), jnp.array([2])),
        np.log(4.0), rtol=1e-6)


class WeightedMeanTest(absltest.TestCase):

  def test_plain_and_weighted(self):
    values = jnp.array([1.0, 2.0, 6.0])
    fn = jax.jit(losses.weighted_mean)
    np.testing.assert_allclose(fn(values, None), 3.0)
    np.testing.assert_allclose(fn(values, jnp.array([1.0, 0.0, 1.0])), 3.5)
    np.testing.assert_allclose(fn(values, jnp.array([0.5, 0.5, 0.0])), 1.5)

  def test_all_zero_weights_give_zero_with_finite_gradient(self):
    grad = jax.grad(losses.weighted_mean)(jnp.array([1.0, 2.0]),
                                          jnp.zeros(2))
    self.assertEqual(float(losses.weighted_mean(jnp.array([1.0, 2.0]),
                                                jnp.zeros(2))), 0.0)
    np.testing.assert_array_equal(grad, [0.0, 0.0])


class DistillKLTest(parameterized.TestCase):

  def test_by_hand(self):
    student = jnp.zeros((1, 2))
    teacher = jnp.log(jnp.array([[0.75, 0.25]]))
    np.testing.assert_allclose(losses.distill_kl(student, teacher), _KL_75_25,
                               rtol=1e-5)
    # T = 2: the teacher becomes (sqrt .75, sqrt .25) normalised, times 4.
    p = np.sqrt([0.75, 0.25]) / np.sqrt([0.75, 0.25]).sum()
    np.testing.assert_allclose(losses.distill_kl(student, teacher, 2.0),
                               4 * _kl_rows(p, [0.5, 0.5]), rtol=1e-5)

  @parameterized.parameters(1.0, 0.5, 4.0)
  def test_matches_numpy(self, temperature):
    s, t = _logits(0), _logits(1)
    expected = np.mean(_kl_rows(_softmax(t / temperature),
                                _softmax(s / temperature))) * temperature ** 2
    got = jax.jit(losses.distill_kl, static_argnums=2)(s, t, temperature)
    np.testing.assert_allclose(got, expected, rtol=1e-5)

  def test_per_example_and_weights(self):
    s, t = _logits(2), _logits(3)
    per = _kl_rows(_softmax(t / 3.0), _softmax(s / 3.0))
    np.testing.assert_allclose(losses.kl_per_example(s, t, 3.0), per,
                               rtol=1e-5)
    mask = np.array([1, 0, 0, 1, 1, 0], np.float32)
    np.testing.assert_allclose(
        losses.distill_kl(s, t, 3.0, weights=mask),
        9.0 * per[mask > 0].mean(), rtol=1e-5)
    np.testing.assert_allclose(
        losses.distill_kl(s, t, 3.0, weights=np.zeros(6, np.float32)), 0.0)

  def test_zero_at_teacher_and_nonnegative(self):
    t = _logits(4)
    np.testing.assert_allclose(losses.distill_kl(t, t, 2.0), 0.0, atol=1e-6)
    self.assertGreater(float(losses.distill_kl(_logits(5), t, 2.0)), 0.0)

  def test_extreme_logits_stay_finite(self):
    s = jnp.array([[1e4, -1e4, 0.0]])
    t = jnp.array([[-1e4, 1e4, 0.0]])
    value, grad = jax.value_and_grad(losses.distill_kl)(s, t)
    self.assertTrue(np.isfinite(value))
    self.assertTrue(np.all(np.isfinite(grad)))

  @parameterized.parameters(1.0, 2.5)
  def test_gradients(self, temperature):
    t = jnp.asarray(_logits(6, batch=3, classes=4))
    test_util.check_grads(
        lambda s: losses.distill_kl(s, t, temperature),
        (jnp.asarray(_logits(7, batch=3, classes=4)),), order=1,
        modes=('fwd', 'rev'), atol=1e-2, rtol=1e-2)


class SignedDistillKLTest(parameterized.TestCase):

  def _numpy(self, s, t, is_forget, temperature):
    kl = _kl_rows(_softmax(t / temperature), _softmax(s / temperature))
    forget, retain = is_forget > 0, is_forget == 0
    b = len(is_forget)
    # The capstone's form: |R|/B * mean_R - |F|/B * mean_F (empty terms 0).
    kl_r = kl[retain].mean() if retain.any() else 0.0
    kl_f = kl[forget].mean() if forget.any() else 0.0
    return (retain.sum() / b * kl_r - forget.sum() / b * kl_f) * temperature**2

  @parameterized.parameters(
      ([1, 0, 0, 1, 0, 0], 1.0),
      ([1, 0, 0, 1, 0, 0], 2.0),
      ([0, 0, 0, 0, 0, 0], 1.0),   # No forget sample.
      ([0, 0, 1, 0, 0, 0], 1.0),   # Exactly one (the original crashed).
      ([1, 1, 1, 1, 1, 1], 3.0))   # No retain sample.
  def test_matches_numpy(self, is_forget, temperature):
    s, t = _logits(8), _logits(9)
    is_forget = np.array(is_forget, np.float32)
    got = jax.jit(losses.signed_distill_kl, static_argnums=3)(
        s, t, is_forget, temperature)
    np.testing.assert_allclose(
        got, self._numpy(s, t, is_forget, temperature), rtol=1e-5,
        atol=1e-7)

  def test_limits(self):
    s, t = _logits(10), _logits(11)
    np.testing.assert_allclose(
        losses.signed_distill_kl(s, t, np.zeros(6, np.float32), 2.0),
        losses.distill_kl(s, t, 2.0), rtol=1e-6)
    np.testing.assert_allclose(
        losses.signed_distill_kl(s, t, np.ones(6, np.float32), 2.0),
        -losses.distill_kl(s, t, 2.0), rtol=1e-6)

  def test_gradients(self):
    t = jnp.asarray(_logits(12, batch=4, classes=3))
    is_forget = jnp.array([1.0, 0.0, 0.0, 1.0])
    test_util.check_grads(
        lambda s: losses.signed_distill_kl(s, t, is_forget, 2.0),
        (jnp.asarray(_logits(13, batch=4, classes=3)),), order=1,
        modes=('fwd', 'rev'), atol=1e-2, rtol=1e-2)


class BadTeachingKLTest(parameterized.TestCase):

  def _numpy(self, s, competent, incompetent, is_forget, temperature):
    f = np.asarray(is_forget, np.float64)[:, None]
    target = (f * _softmax(incompetent / temperature)
              + (1 - f) * _softmax(competent / temperature))
    return _kl_rows(target, _softmax(s / temperature))

  def test_by_hand(self):
    # Forget sample: uniform bad teacher = uniform student, KL 0. Retain
    # sample: competent (.75, .25) against the uniform student.
    got = losses.bad_teaching_kl(
        jnp.zeros((2, 2)), jnp.log(jnp.array([[0.9, 0.1], [0.75, 0.25]])),
        jnp.zeros((2, 2)), jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(got, _KL_75_25 / 2, rtol=1e-5)

  @parameterized.parameters(
      ([1, 0, 1, 0, 0, 0], 1.0),
      ([1, 0, 1, 0, 0, 0], 2.0),
      ([0, 0, 0, 0, 0, 0], 1.0),     # No forget sample.
      ([1, 1, 1, 1, 1, 1], 0.5),     # No retain sample.
      ([0.5, 0, 1, 0.25, 0, 1], 3.0))  # Fractional flags mix the targets.
  def test_matches_numpy(self, is_forget, temperature):
    s, c, u = _logits(14), _logits(15), _logits(16, scale=0.1)
    is_forget = np.array(is_forget, np.float32)
    got = jax.jit(losses.bad_teaching_kl, static_argnums=4)(
        s, c, u, is_forget, temperature)
    expected = self._numpy(s, c, u, is_forget, temperature).mean()
    np.testing.assert_allclose(got, expected, rtol=1e-5)

  def test_reference_mean_reduction_is_smaller_by_the_class_count(self):
    # F.kl_div's default 'mean' divides the summed KL by batch * classes.
    s, c, u = _logits(17), _logits(18), _logits(19)
    is_forget = np.array([1, 0, 0, 1, 0, 0], np.float32)
    f = is_forget[:, None]
    target = f * _softmax(u) + (1 - f) * _softmax(c)
    elementwise = target * (np.log(target) - np.log(_softmax(s)))
    np.testing.assert_allclose(
        losses.bad_teaching_kl(s, c, u, is_forget) / s.shape[1],
        elementwise.mean(), rtol=1e-5)

  def test_limits_and_weights(self):
    s, c, u = _logits(20), _logits(21), _logits(22)
    no_forget = np.zeros(6, np.float32)
    np.testing.assert_allclose(losses.bad_teaching_kl(s, c, u, no_forget),
                               losses.distill_kl(s, c), rtol=1e-6)
    np.testing.assert_allclose(
        losses.bad_teaching_kl(s, c, u, 1 - no_forget, 2.0),
        losses.distill_kl(s, u, 2.0) / 4.0, rtol=1e-5)  # No T**2 here.
    weights = np.array([0, 1, 1, 0, 0, 2], np.float32)
    is_forget = np.array([1, 1, 0, 0, 1, 0], np.float32)
    per = self._numpy(s, c, u, is_forget, 1.0)
    np.testing.assert_allclose(
        losses.bad_teaching_kl(s, c, u, is_forget, weights=weights),
        np.sum(weights * per) / weights.sum(), rtol=1e-5)

  def test_minimised_by_the_target(self):
    c, u = _logits(23), _logits(24)
    is_forget = np.array([1, 0, 0, 1, 0, 0], np.float32)
    # A student equal to the teacher it must imitate has zero loss.
    student = np.where(is_forget[:, None] > 0, u, c)
    np.testing.assert_allclose(
        losses.bad_teaching_kl(student, c, u, is_forget, 2.0), 0.0,
        atol=1e-6)

  @parameterized.parameters(1.0, 2.0)
  def test_gradients(self, temperature):
    c = jnp.asarray(_logits(25, batch=4, classes=3))
    u = jnp.asarray(_logits(26, batch=4, classes=3))
    is_forget = jnp.array([1.0, 0.0, 0.0, 1.0])
    test_util.check_grads(
        lambda s: losses.bad_teaching_kl(s, c, u, is_forget, temperature),
        (jnp.asarray(_logits(27, batch=4, classes=3)),), order=1,
        modes=('fwd', 'rev'), atol=1e-2, rtol=1e-2)


if __name__ == '__main__':
  absltest.main()
