"""Models: output shapes, features, parameter counts, BatchNorm modes,
mixed precision."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
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
    # 11,173,962 parameters for 10 classes, as torchvision's CIFAR variant.
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

  def test_unknown_dtype_names_the_choices(self):
    with self.assertRaisesRegex(ValueError, 'bfloat16'):
      models.create(ml_collections.ConfigDict(
          {'name': 'cnn', 'dtype': 'float16'}), 10)


class MixedPrecisionTest(parameterized.TestCase):

  def _pair(self, name):
    make = lambda dtype: models.create(ml_collections.ConfigDict(
        {'name': name, 'width': 8, 'dtype': dtype}), 10)
    return make('float32'), make('bfloat16')

  @parameterized.parameters('cnn', 'resnet8')
  def test_float32_parameters_and_outputs_bfloat16_inside(self, name):
    full, mixed = self._pair(name)
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 1))
    variables = mixed.init(jax.random.key(0), x)
    # The same parameters as the float32 model: master weights in float32.
    self.assertEqual(jax.tree.map(lambda p: (p.shape, p.dtype), variables),
                     jax.tree.map(lambda p: (p.shape, p.dtype),
                                  full.init(jax.random.key(0), x)))
    logits, features = mixed.apply(variables, x)
    self.assertEqual((logits.dtype, features.dtype),
                     (jnp.float32, jnp.float32))
    dtypes = set()
    def record(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if context.method_name == '__call__' and hasattr(out, 'dtype'):
        dtypes.add(str(out.dtype))
      return out
    with nn.intercept_methods(record):
      mixed.apply(variables, x)
    self.assertIn('bfloat16', dtypes)  # The layers compute in bfloat16.
    want, _ = full.apply(variables, x)
    np.testing.assert_allclose(logits, want, rtol=0.1, atol=0.1)

  def test_mixed_precision_gradients_and_training(self):
    x = jax.random.normal(jax.random.key(1), (32, 16, 16, 1))
    y = jnp.arange(32) % 10
    full, mixed = self._pair('cnn')
    params = full.init(jax.random.key(0), x)['params']

    def loss_fn(model):
      return lambda p: optax.softmax_cross_entropy_with_integer_labels(
          model.apply({'params': p}, x)[0], y).mean()

    # Float32 gradients that point where the float32 model's do.
    ours = jax.grad(loss_fn(mixed))(params)
    theirs = jax.grad(loss_fn(full))(params)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
      self.assertEqual(a.dtype, jnp.float32)
      a, b = np.ravel(a), np.ravel(b)
      self.assertGreater(a @ b / np.linalg.norm(a) / np.linalg.norm(b), 0.99)

    # SGD on the float32 master weights memorises the batch.
    tx = optax.sgd(0.1, momentum=0.9)

    @jax.jit
    def step(p, opt_state):
      loss, grads = jax.value_and_grad(loss_fn(mixed))(p)
      updates, opt_state = tx.update(grads, opt_state)
      return optax.apply_updates(p, updates), opt_state, loss

    opt_state, losses = tx.init(params), []
    for _ in range(20):
      params, opt_state, loss = step(params, opt_state)
      losses.append(float(loss))
    self.assertTrue(all(p.dtype == jnp.float32
                        for p in jax.tree.leaves(params)))
    self.assertLess(losses[-1], 0.7 * losses[0])

  def test_checkpoint_recipe_and_folder_name(self):
    config = ml_collections.ConfigDict(
        {'name': 'cnn', 'width': 32, 'dtype': 'float32'})
    # float32 is left out: checkpoints made before the option still match.
    self.assertEqual(models.recipe(config), {'name': 'cnn', 'width': 32})
    self.assertEqual(models.tag(config), 'cnn')
    config.dtype = 'bfloat16'
    self.assertEqual(models.recipe(config)['dtype'], 'bfloat16')
    self.assertEqual(models.tag(config), 'cnn_bf16')


if __name__ == '__main__':
  absltest.main()
