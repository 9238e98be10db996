"""Models: output shapes, features, parameter counts, BatchNorm modes,
mixed precision, the per-backend choices (layers, 'auto' dtype)."""

from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl.testing import absltest
from absl.testing import parameterized

from mu_jax import models
from mu_jax.models import backends
from mu_jax.models import cnn


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


class BackendChoiceTest(parameterized.TestCase):
  """models.create decides layers and 'auto' dtype per backend."""

  @parameterized.parameters(
      ('cpu', 'cpu_tuned', 'float32'), ('gpu', 'standard', 'bfloat16'),
      ('cuda', 'standard', 'bfloat16'), ('rocm', 'standard', 'bfloat16'),
      ('tpu', 'standard', 'bfloat16'), ('METAL', 'standard', 'float32'))
  def test_auto_resolution(self, backend, layers, dtype):
    self.assertEqual(backends.resolve_layers('auto', backend), layers)
    self.assertEqual(backends.resolve_dtype('auto', backend), dtype)
    # Explicit settings win on every backend.
    for setting in ('cpu_tuned', 'standard'):
      self.assertEqual(backends.resolve_layers(setting, backend), setting)
    for setting in ('float32', 'bfloat16'):
      self.assertEqual(backends.resolve_dtype(setting, backend), setting)

  def test_this_machine_is_a_cpu(self):
    self.assertEqual(jax.default_backend(), 'cpu')
    self.assertEqual(backends.resolve_layers(), 'cpu_tuned')
    self.assertEqual(backends.resolve_dtype('auto'), 'float32')

  def test_unknown_settings_name_the_choices(self):
    with self.assertRaisesRegex(ValueError, 'cpu_tuned'):
      models.create(ml_collections.ConfigDict(
          {'name': 'cnn', 'layers': 'fast'}), 10)
    with self.assertRaisesRegex(ValueError, 'auto'):
      models.create(ml_collections.ConfigDict(
          {'name': 'cnn', 'dtype': 'half'}), 10)

  @parameterized.parameters(('cpu', 'cpu_tuned', None),
                            ('gpu', 'standard', jnp.bfloat16),
                            ('tpu', 'standard', jnp.bfloat16))
  def test_create_resolves_for_the_backend(self, backend, layers, dtype):
    config = ml_collections.ConfigDict(
        {'name': 'cnn', 'width': 4, 'dtype': 'auto', 'layers': 'auto'})
    with mock.patch.object(jax, 'default_backend', return_value=backend):
      model = models.create(config, 10)
      resnet = models.create(ml_collections.ConfigDict(
          {'name': 'resnet8', 'dtype': 'auto'}), 10)
    self.assertEqual((model.layers, model.dtype), (layers, dtype))
    self.assertEqual(resnet.dtype, dtype)

  def test_recipe_and_tag_record_the_resolved_dtype(self):
    config = ml_collections.ConfigDict(
        {'name': 'resnet18', 'max_pool': False, 'dtype': 'auto',
         'layers': 'auto'})
    with mock.patch.object(jax, 'default_backend', return_value='gpu'):
      gpu = (models.recipe(config), models.tag(config))
    with mock.patch.object(jax, 'default_backend', return_value='cpu'):
      cpu = (models.recipe(config), models.tag(config))
    self.assertEqual(gpu, ({'name': 'resnet18', 'max_pool': False,
                            'dtype': 'bfloat16'}, 'resnet18_bf16'))
    # float32 and the layers are left out: a CPU 'auto' run shares its
    # checkpoints with float32 runs made before 'auto' and 'layers' existed.
    self.assertEqual(cpu, ({'name': 'resnet18', 'max_pool': False},
                           'resnet18'))
    config.dtype, config.layers = 'float32', 'standard'
    self.assertEqual((models.recipe(config), models.tag(config)), cpu)
    # Explicit dtypes never ask the backend.
    with mock.patch.object(jax, 'default_backend',
                           side_effect=AssertionError('asked')):
      self.assertEqual(models.tag(config), 'resnet18')
      config.dtype = 'bfloat16'
      self.assertEqual(models.tag(config), 'resnet18_bf16')


class LayersTest(parameterized.TestCase):
  """The CNN's CPU-tuned and standard layers are interchangeable."""

  def _models(self, dtype='float32', width=4):
    make = lambda layers: models.create(ml_collections.ConfigDict(
        {'name': 'cnn', 'width': width, 'dtype': dtype, 'layers': layers}),
                                        10)
    return make('cpu_tuned'), make('standard')

  def _outputs(self, model, params, x, y):
    """Jitted (eager runs op by op, slowly): logits, features, gradients."""
    def loss(p):
      logits, features = model.apply(p, x)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, y).mean(), (logits, features)
    grads, outputs = jax.jit(jax.grad(loss, has_aux=True))(params)
    return outputs, grads

  def test_each_uses_its_layers(self):
    tuned, standard = self._models()
    x = jnp.ones((2, 9, 9, 1))  # Odd sizes: the pools drop a row.
    params = jax.eval_shape(tuned.init, jax.random.key(0), x)
    def modules(model):
      seen = set()
      def record(next_fun, args, kwargs, context):
        seen.add(type(context.module).__module__)
        return next_fun(*args, **kwargs)
      with nn.intercept_methods(record):
        jax.make_jaxpr(model.apply)(params, x)
      return seen
    self.assertIn('mu_jax.models.conv', modules(tuned))
    self.assertNotIn('mu_jax.models.conv', modules(standard))
    jaxpr = lambda m: str(jax.make_jaxpr(jax.grad(
        lambda p: m.apply(p, x)[0].sum()))(params))
    self.assertIn('custom_vjp', jaxpr(tuned))
    self.assertNotIn('custom_vjp', jaxpr(standard))
    self.assertIn('select_and_scatter', jaxpr(standard))

  # Fashion-MNIST's shape, and odd sizes, where the pools drop a row.
  @parameterized.parameters(((4, 28, 28, 1),), ((2, 9, 11, 3),))
  def test_same_parameters_values_and_gradients(self, shape):
    tuned, standard = self._models()
    x = jax.random.normal(jax.random.key(1), shape)
    y = jnp.arange(shape[0]) % 10
    ours = tuned.init(jax.random.key(0), x)  # Eager: jit compiles slowly.
    theirs = standard.init(jax.random.key(0), x)
    # The same tree, shapes, dtypes and initial values: checkpoints of one
    # load into the other.
    self.assertEqual(jax.tree.structure(ours), jax.tree.structure(theirs))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
      self.assertEqual((a.shape, a.dtype), (b.shape, b.dtype))
      np.testing.assert_array_equal(a, b)
    (out_a, grads_a), (out_b, grads_b) = (
        self._outputs(m, ours, x, y) for m in (tuned, standard))
    for a, b in zip(out_a, out_b):  # Logits and features.
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

  def test_bfloat16_values_and_gradients_close(self):
    tuned, standard = self._models('bfloat16')
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    y = jnp.arange(4) % 10
    params = tuned.init(jax.random.key(0), x)
    (out_a, grads_a), (out_b, grads_b) = (
        self._outputs(m, params, x, y) for m in (tuned, standard))
    np.testing.assert_allclose(out_a[0], out_b[0], rtol=0.02, atol=0.02)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
      self.assertEqual((a.dtype, b.dtype), (jnp.float32, jnp.float32))
      a, b = np.ravel(a), np.ravel(b)
      self.assertGreater(a @ b / np.linalg.norm(a) / np.linalg.norm(b), 0.99)

  def test_direct_cnn_resolves_auto_itself(self):
    # cnn.CNN built without models.create: 'auto' is the CPU choice here.
    x = jnp.ones((1, 8, 8, 1))
    model = cnn.CNN(num_classes=3, width=4)
    self.assertEqual(model.layers, 'auto')
    params = jax.eval_shape(model.init, jax.random.key(0), x)
    tuned = cnn.CNN(num_classes=3, width=4, layers='cpu_tuned')
    self.assertEqual(str(jax.make_jaxpr(model.apply)(params, x)),
                     str(jax.make_jaxpr(tuned.apply)(params, x)))

if __name__ == '__main__':
  absltest.main()
