"""Models: output shapes, features, parameter counts, BatchNorm modes."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from mu_jax import models


def _count(params):
  return sum(np.prod(p.shape) for p in jax.tree.leaves(params))


class ModelsTest(parameterized.TestCase):

  @parameterized.parameters(('cnn', 128), ('resnet8', 64), ('resnet20', 64))
  def test_logits_and_features(self, name, feature_dim):
    model = models.create(ml_collections.ConfigDict({'name': name}), 10)
    x = jnp.ones((2, 28, 28, 1))
    variables = model.init(jax.random.key(0), x)
    logits, features = model.apply(variables, x, train=False)
    self.assertEqual(logits.shape, (2, 10))
    self.assertEqual(features.shape, (2, feature_dim))

  def test_resnet18_matches_the_cifar_resnet18(self):
    # 11,173,962 parameters for 10 classes, as in PyTorch (ENV.md section 4).
    model = models.create(ml_collections.ConfigDict({'name': 'resnet18'}), 10)
    shapes = jax.eval_shape(model.init, jax.random.key(0),
                            jnp.ones((1, 32, 32, 3)))
    self.assertEqual(_count(shapes['params']), 11_173_962)
    logits, features = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False), shapes,
        jnp.ones((2, 32, 32, 3)))
    self.assertEqual((logits.shape, features.shape), ((2, 10), (2, 512)))

  def test_resnet18_max_pool_flag_halves_the_spatial_path(self):
    config = ml_collections.ConfigDict({'name': 'resnet18', 'max_pool': True})
    model = models.create(config, 10)
    x = jnp.ones((1, 32, 32, 3))
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    # Parameters are unchanged by a pooling layer.
    self.assertEqual(_count(shapes['params']), 11_173_962)
    stem = jax.eval_shape(
        lambda v: model.apply(v, x, train=False,
                              capture_intermediates=True,
                              mutable=['intermediates'])[1], shapes)
    block = stem['intermediates']['BasicBlock_0']['__call__'][0]
    self.assertEqual(block.shape, (1, 16, 16, 64))  # 32 -> 16 by the pool.

  def test_batchnorm_train_mode_updates_statistics(self):
    model = models.create(ml_collections.ConfigDict({'name': 'resnet8'}), 10)
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 1)) * 3 + 1
    variables = model.init(jax.random.key(0), x)
    _, new = model.apply(variables, x, train=True, mutable=['batch_stats'])
    before = jax.tree.leaves(variables['batch_stats'])
    after = jax.tree.leaves(new['batch_stats'])
    self.assertTrue(any(not np.allclose(a, b) for a, b in zip(before, after)))
    # Eval mode is deterministic and does not depend on the rest of the batch.
    single, _ = model.apply(variables, x[:1], train=False)
    batch, _ = model.apply(variables, x, train=False)
    np.testing.assert_allclose(single, batch[:1], rtol=1e-5, atol=1e-5)

  def test_unknown_model_names_the_choices(self):
    with self.assertRaisesRegex(ValueError, 'resnet18'):
      models.create(ml_collections.ConfigDict({'name': 'vgg'}), 10)


if __name__ == '__main__':
  absltest.main()
