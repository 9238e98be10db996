"""Linear CKA by hand, and the layers and features the suite's plots use."""

import jax
import numpy as np
import optax
from absl.testing import absltest

from mu_jax import representations
from mu_jax import state as state_lib
from mu_jax.models import cnn
from mu_jax.models import resnet
from tests import test_util


def _feature_space_cka(x, y):
  """||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), Kornblith et al. (3)."""
  x = x - x.mean(0)
  y = y - y.mean(0)
  return (np.linalg.norm(y.T @ x)**2 /
          (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


class LinearCkaTest(absltest.TestCase):

  def test_invariances_and_the_feature_space_formula(self):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    self.assertAlmostEqual(representations.linear_cka(x, x), 1.0)
    self.assertAlmostEqual(
        representations.linear_cka(x, 3.0 * x @ rotation + 7.0), 1.0)
    y = rng.normal(size=(50, 9))
    self.assertAlmostEqual(representations.linear_cka(x, y),
                           _feature_space_cka(x, y))
    self.assertLess(representations.linear_cka(x, y), 0.5)

  def test_by_hand_on_three_samples(self):
    # Centred x = [-1, 0, 1]; y = x^2 centres to [1/3, -2/3, 1/3], which is
    # orthogonal to x: CKA 0. y = 2x: CKA 1.
    x = np.array([[0.0], [1.0], [2.0]])
    self.assertAlmostEqual(representations.linear_cka(x, x**2 - 2 * x), 0.0)
    self.assertAlmostEqual(representations.linear_cka(x, 2 * x), 1.0)

  def test_spatial_activations_are_flattened(self):
    x = np.random.default_rng(1).normal(size=(10, 2, 2, 3))
    self.assertAlmostEqual(representations.linear_cka(x, x), 1.0)


class ModelLayersTest(absltest.TestCase):

  def _state(self, model, seed=0):
    return state_lib.create(model, optax.sgd(0.1), (8, 8, 1),
                            jax.random.key(seed))

  def test_cnn_layers_features_and_matrix(self):
    model = cnn.CNN(num_classes=4, width=4)
    a, b = self._state(model, 0), self._state(model, 1)
    images = test_util.tiny_images(20)
    names, matrix = representations.cka_matrix(a, a, images, mean=(0.5,),
                                               std=(0.25,))
    self.assertEqual(names, ['Conv_0', 'Conv_1', 'Dense_0', 'Dense_1',
                             'features'])
    np.testing.assert_allclose(np.diag(matrix), 1.0, rtol=1e-6)
    _, other = representations.cka_matrix(a, b, images, mean=(0.5,),
                                          std=(0.25,))
    self.assertEqual(other.shape, (5, 5))
    self.assertTrue(np.all((other >= 0) & (other <= 1 + 1e-9)))
    features = representations.features(a, images, mean=(0.5,), std=(0.25,),
                                        batch_size=8)
    self.assertEqual(features.shape, (20, 16))

  def test_resnet_layers_in_call_order_without_batchnorm(self):
    state = self._state(resnet.ResNet8(num_classes=4))
    acts = representations.layer_activations(
        state, test_util.tiny_images(4), mean=(0.5,), std=(0.25,))
    self.assertEqual(list(acts), ['Conv_0', 'BasicBlock_0', 'BasicBlock_1',
                                  'BasicBlock_2', 'Dense_0', 'features'])
    self.assertEqual(acts['BasicBlock_2'].shape, (4, 2, 2, 64))


if __name__ == '__main__':
  absltest.main()
