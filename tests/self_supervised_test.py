"""Self-supervised pieces: NT-Xent and the two unlearning terms by hand,
SimCLR augmentations, and the gradient effect of `loss_weight`."""

import jax
import jax.test_util  # pylint: disable=unused-import  (check_grads)
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl.testing import absltest
from absl.testing import parameterized

from mu_jax import augment
from mu_jax import losses
from mu_jax import models
from mu_jax import self_supervised
from mu_jax.methods import base


def _np_contrastive(z1, z2, tau, is_forget=None):
  """Reference NT-Xent over 2B anchors, positives negated for forget rows."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n = len(z1)
  sim = z @ z.T / tau
  flags = np.zeros(n) if is_forget is None else np.asarray(is_forget)
  flags = np.concatenate([flags, flags])
  total = 0.0
  for i in range(2 * n):
    p = (i + n) % (2 * n)
    pos = sim[i, p] * (1 - 2 * flags[i])
    others = [sim[i, k] for k in range(2 * n) if k not in (i, p)]
    logits = np.array([pos] + others)
    total += -(pos - np.log(np.sum(np.exp(logits))))
  return total / (2 * n)


class LossesTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.z1 = rng.normal(size=(5, 7)).astype(np.float32)
    self.z2 = rng.normal(size=(5, 7)).astype(np.float32)

  @parameterized.parameters(0.07, 0.5, 1.0)
  def test_nt_xent_matches_numpy_and_optax(self, tau):
    got = jax.jit(losses.nt_xent, static_argnums=2)(self.z1, self.z2, tau)
    np.testing.assert_allclose(got, _np_contrastive(self.z1, self.z2, tau),
                               rtol=1e-4)
    labels = jnp.concatenate([jnp.arange(5), jnp.arange(5)])
    ref = optax.losses.ntxent(jnp.concatenate([self.z1, self.z2]), labels,
                              temperature=tau)
    np.testing.assert_allclose(got, ref, rtol=1e-4)

  def test_nt_xent_hand_value(self):
    # B = 1: the only other row is the positive, so the loss is 0.
    z = jnp.array([[1.0, 0.0]])
    self.assertAlmostEqual(float(losses.nt_xent(z, -z)), 0.0, places=6)
    # B = 2 orthogonal pairs, identical views, tau = 1: each anchor has
    # positive similarity 1 and two negatives of similarity 0:
    # -log(e / (e + 2)).
    z = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(losses.nt_xent(z, z, 1.0),
                               -np.log(np.e / (np.e + 2)), rtol=1e-6)

  def test_contrastive_unlearning_loss(self):
    flags = np.array([0, 1, 0, 1, 1], np.float32)
    got = losses.contrastive_unlearning_loss(self.z1, self.z2, flags, 0.5)
    np.testing.assert_allclose(
        got, _np_contrastive(self.z1, self.z2, 0.5, flags), rtol=1e-4)
    # With no forget sample it is plain NT-Xent.
    np.testing.assert_allclose(
        losses.contrastive_unlearning_loss(self.z1, self.z2, np.zeros(5), 0.5),
        losses.nt_xent(self.z1, self.z2, 0.5), rtol=1e-6)

  def test_simple_similarity_loss_by_hand(self):
    student = jnp.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    reference = jnp.array([[1.0, 0.0], [1.0, 0.0], [4.0, 3.0]])
    s = np.array([1.0, 0.0, 24 / 25])  # Cosine similarities.
    for flags in ([1, 1, 1], [0, 0, 0], [1, 0, 1]):
      y = np.array(flags, np.float64)
      w = 1 / (1 + np.exp(1 - 2 * y.mean()))
      expected = (1 - w) * np.mean(y * s) + w * np.mean((y - 1) * s)
      got = losses.simple_similarity_loss(student, reference,
                                          jnp.asarray(y, jnp.float32))
      np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)

  def test_gradients(self):
    flags = jnp.array([0.0, 1.0, 0.0, 1.0, 1.0])
    jax.test_util.check_grads(
        lambda a, b: losses.contrastive_unlearning_loss(a, b, flags, 0.5),
        (self.z1, self.z2), order=1, modes=['rev'], atol=1e-2, rtol=1e-2)
    jax.test_util.check_grads(
        lambda a, b: losses.simple_similarity_loss(a, b, flags),
        (self.z1, self.z2), order=1, modes=['rev'], atol=1e-2, rtol=1e-2)


class AugmentTest(parameterized.TestCase):

  @parameterized.parameters((1,), (3,))
  def test_views_keep_shape_range_and_are_keyed(self, channels):
    x = jax.random.uniform(jax.random.key(0), (4, 16, 16, channels))
    fns = (augment.random_resized_crop, augment.color_jitter,
           augment.random_grayscale, augment.gaussian_blur,
           augment.simclr_view)
    for fn in fns:
      a = jax.jit(fn)(jax.random.key(1), x)
      self.assertEqual(a.shape, x.shape)
      self.assertGreaterEqual(float(a.min()), 0.0)
      self.assertLessEqual(float(a.max()), 1.0)
      np.testing.assert_array_equal(a, jax.jit(fn)(jax.random.key(1), x))
    self.assertFalse(np.allclose(augment.simclr_view(jax.random.key(1), x),
                                 augment.simclr_view(jax.random.key(2), x)))

  def test_blur_keeps_constants_and_grayscale_is_luma(self):
    c = jnp.full((2, 8, 8, 3), 0.3)
    np.testing.assert_allclose(augment.gaussian_blur(jax.random.key(0), c),
                               c, atol=1e-6)
    x = jax.random.uniform(jax.random.key(0), (2, 4, 4, 3))
    gray = augment.random_grayscale(jax.random.key(0), x, p=1.0)
    luma = x @ jnp.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(gray[..., 0], luma, rtol=1e-6)


class TermTest(parameterized.TestCase):
  """`loss_weight` changes the student's gradient; `ssl_no_grad` does not."""

  def _setup(self, mode, no_grad):
    backbone = models.create(ml_collections.ConfigDict(
        {'name': 'cnn', 'width': 4}), 4)
    simclr = self_supervised.SimCLRModel(backbone, out_dim=8)
    x = jax.random.normal(jax.random.key(0), (6, 8, 8, 1))
    simclr_vars = simclr.init(jax.random.key(1), x)
    student = backbone.init(jax.random.key(2), x)
    ctx = base.Context(num_classes=4, epochs=1, steps_per_epoch={},
                       batch_size={}, init_variables=None, iterate=None,
                       simclr=(simclr.apply, simclr_vars, 0.5))
    config = ml_collections.ConfigDict({'loss_weight': 0.5,
                                        'supervised_mode': mode,
                                        'ssl_no_grad': no_grad})
    term = self_supervised.make_term(config, ctx)

    class _State:
      def apply(self, params, images, *, train, model_state=None):
        del train
        return backbone.apply({'params': params}, images), model_state or {}

    return backbone, student, term, x, _State()

  @parameterized.product(mode=('simple', 'original'), no_grad=(False, True))
  def test_gradient_effect(self, mode, no_grad):
    backbone, student, term, x, state = self._setup(mode, no_grad)
    frozen = term.init()
    flags = jnp.array([1.0, 0.0, 1.0, 0.0, 0.0, 0.0])

    def loss(params, weight):
      logits, features = backbone.apply({'params': params}, x)
      base_loss = losses.cross_entropy(logits, jnp.zeros(6, jnp.int32))
      extra, _ = term.loss(state, params, frozen, x, features, flags,
                           jax.random.key(3), {})
      return base_loss + weight * extra

    plain = jax.grad(loss)(student['params'], 0.0)
    mixed = jax.grad(loss)(student['params'], 0.5)
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree.leaves(plain), jax.tree.leaves(mixed)))
    if no_grad:
      self.assertEqual(diff, 0.0)
    else:
      self.assertGreater(diff, 1e-6)

  def test_zero_weight_is_no_term(self):
    config = ml_collections.ConfigDict({'loss_weight': 0.0})
    self.assertIsNone(self_supervised.make_term(config, None))


if __name__ == '__main__':
  absltest.main()
