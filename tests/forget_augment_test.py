"""Forget-set augmentation: simple augmentations, the ARPL loss and
generator, the feature-level OpenGAN, the GAN models, and
`python main.py --data_augment ...`."""

import json
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from configs import default
from mu_jax import augmentation
from mu_jax import errors
from mu_jax import experiment
from mu_jax import models
from mu_jax import parallel
from mu_jax import unlearning
from mu_jax.augmentation import arpl
from mu_jax.augmentation import opengan
from mu_jax.augmentation import simple
from mu_jax.models import gan
from tests import test_util

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_arpl_config(**overrides):
  config = default.arpl_section()
  config.update({'epochs': 1, 'batch_size': 16, 'width': 4,
                 'feature_dim': 8, 'nz': 8, **overrides})
  return config


class ModelsTest(parameterized.TestCase):

  @parameterized.parameters(((28, 28, 1),), ((32, 32, 3),))
  def test_image_gan_shapes(self, shape):
    rng = jax.random.key(0)
    generator = gan.ImageGenerator(shape, width=8)
    z = jnp.zeros((3, 10))
    g_vars = generator.init(rng, z)
    images = generator.apply(g_vars, z)
    self.assertEqual(images.shape, (3, *shape))
    self.assertTrue(bool(jnp.all((images >= 0) & (images <= 1))))
    discriminator = gan.ImageDiscriminator(width=8)
    d_vars = discriminator.init(rng, images)
    self.assertEqual(discriminator.apply(d_vars, images).shape, (3,))
    net = gan.ArplNet(width=4, feature_dim=16)
    self.assertEqual(net.apply(net.init(rng, images), images).shape, (3, 16))

  def test_feature_gan_shapes(self):
    rng = jax.random.key(0)
    generator = gan.FeatureGenerator(feature_dim=32, hidden=(16, 8))
    z = jnp.ones((5, 12))
    features = generator.apply(generator.init(rng, z), z)
    self.assertEqual(features.shape, (5, 32))
    discriminator = gan.FeatureDiscriminator(hidden=(16, 8))
    scores = discriminator.apply(discriminator.init(rng, features), features)
    self.assertEqual(scores.shape, (5,))


class ArplLossTest(absltest.TestCase):

  def test_loss_by_hand(self):
    x = np.array([[1.0, 0.0], [0.5, 2.0]])
    points = np.array([[0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = np.array([1, 2])
    radius, temp, weight_pl = 0.3, 2.0, 0.1
    # logits_ik = ||x_i - p_k||^2 / 2 - <x_i, p_k>.
    logits = np.zeros((2, 3))
    for i in range(2):
      for k in range(3):
        logits[i, k] = (np.sum((x[i] - points[k])**2) / 2
                        - x[i] @ points[k])
    np.testing.assert_allclose(logits[0], [1.0, -0.5, 3.0])
    z = logits / temp
    ce = np.mean([np.log(np.sum(np.exp(z[i]))) - z[i, labels[i]]
                  for i in range(2)])
    dist = [np.mean((x[i] - points[labels[i]])**2) for i in range(2)]
    margin = np.mean([max(0.0, d - radius + 1.0) for d in dist])
    loss, got_logits = arpl.arpl_loss(
        jnp.asarray(x), jnp.asarray(labels), jnp.asarray(points),
        jnp.asarray(radius), temp, weight_pl)
    np.testing.assert_allclose(got_logits, logits, rtol=1e-5)
    np.testing.assert_allclose(loss, ce + weight_pl * margin, rtol=1e-5)

  def test_fake_loss_is_smallest_when_confusing(self):
    points = jnp.eye(3)
    uniform = jnp.zeros((4, 3))  # Equidistant from all points.
    confident = jnp.array([[5.0, 0.0, 0.0]] * 4)
    self.assertAlmostEqual(float(arpl.fake_loss(uniform, points)), 1 / 3,
                           places=5)
    # softmax(d_l2) ~ [0.02, 0.49, 0.49]: exp(-H) ~ 0.46 > 1/3.
    self.assertGreater(float(arpl.fake_loss(confident, points)), 0.4)


class SimpleAugmentTest(absltest.TestCase):

  def test_more_than_the_forget_set_cycles(self):
    np.testing.assert_array_equal(simple.source_indices(3, 7),
                                  [0, 1, 2, 0, 1, 2, 0])
    images = test_util.tiny_images(3, shape=(8, 8, 3))
    labels = np.array([4, 5, 6])
    config = default.simple_section()
    config.batch_size = 4  # Several jitted chunks.
    out, out_labels = simple.generate(config, jax.random.key(0), images,
                                      labels, 10)
    self.assertEqual(out.shape, (10, 8, 8, 3))
    self.assertEqual(out.dtype, np.uint8)
    np.testing.assert_array_equal(out_labels, [4, 5, 6, 4, 5, 6, 4, 5, 6, 4])
    self.assertFalse(np.array_equal(out[:3], images))  # Actually changed.

  def test_keyed_and_pure(self):
    images = jnp.asarray(test_util.tiny_images(4))
    kwargs = dict(crop_padding=1, flip=True, jitter=0.3, noise_std=0.05)
    a = simple.augment_images(jax.random.key(1), images, **kwargs)
    b = simple.augment_images(jax.random.key(1), images, **kwargs)
    c = simple.augment_images(jax.random.key(2), images, **kwargs)
    np.testing.assert_array_equal(a, b)
    self.assertFalse(np.array_equal(a, c))


class ArplTrainingTest(absltest.TestCase):

  def test_gan_steps_lower_the_discriminator_loss(self):
    config = _tiny_arpl_config(gan_lr=5e-3, width=8)
    shape = (8, 8, 1)
    # Toy distribution: bright images of class 0, dark ones of class 1.
    rng = np.random.default_rng(0)
    labels = np.arange(16) % 2
    images = np.where(labels[:, None, None, None] == 0, 220, 30) + rng.integers(
        0, 30, (16, *shape))
    images = jnp.asarray(images.astype(np.uint8))
    state = arpl.new_state(config, shape, 2, jax.random.key(0))
    step = jax.jit(arpl.method(config, shape, 1).phases['main'].update)
    batch = {'train': {'image': images.astype(jnp.float32) / 255.0,
                       'label': jnp.asarray(labels, jnp.int32)}}
    losses = []
    for i in range(40):
      state, _, metrics = step(state, (), batch, jax.random.key(i))
      losses.append(float(metrics['loss_D']))
    self.assertLess(np.mean(losses[-5:]), losses[0] - 0.1)

  def test_train_reuse_and_generate(self):
    config = _tiny_arpl_config()
    images = test_util.tiny_images(32, shape=(8, 8, 3))
    labels = test_util.tiny_labels(32, num_classes=3)
    with tempfile.TemporaryDirectory() as tmp:
      recipe = {'arpl': config.to_dict()}
      mesh = parallel.make_mesh(1)
      params, info = arpl.train_or_restore(config, images, labels, 3, 0,
                                           f'{tmp}/arpl', recipe, mesh)
      self.assertFalse(info['reused'])
      self.assertEqual(len(info['history']), 1)
      again, info = arpl.train_or_restore(config, images, labels, 3, 0,
                                          f'{tmp}/arpl', recipe, mesh)
      self.assertTrue(info['reused'])
      jax.tree.map(np.testing.assert_array_equal, params, again)
    fake, fake_labels = arpl.generate(config, params, (8, 8, 3), 3,
                                      jax.random.key(0), 5, chunk=2)
    self.assertEqual(fake.shape, (5, 8, 8, 3))
    self.assertEqual(fake.dtype, np.uint8)
    self.assertEqual(fake_labels.shape, (5,))
    self.assertTrue(np.all((fake_labels >= 0) & (fake_labels < 3)))


def _tiny_opengan_config(**overrides):
  config = default.opengan_section()
  config.update({'epochs': 2, 'batch_size': 16, 'nz': 8,
                 'hidden_g': (16, 16), 'hidden_d': (16, 8),
                 'num_candidates': 4, **overrides})
  return config


class OpenGanTest(parameterized.TestCase):

  def test_generator_and_discriminator_shapes(self):
    config = _tiny_opengan_config()
    params = opengan.init_params(config, 12, jax.random.key(0))
    hook = opengan.make_hook(config, params, 12)
    fake = gan.FeatureGenerator(12, hook.hidden).apply(
        {'params': params['G']}, jnp.ones((5, config.nz)))
    self.assertEqual(fake.shape, (5, 12))
    scores = gan.FeatureDiscriminator(tuple(config.hidden_d)).apply(
        {'params': params['D']}, fake)
    self.assertEqual(scores.shape, (5,))
    # Substitutes have the real features' shape.
    real = jnp.ones((3, 12))
    self.assertEqual(hook.substitute(hook.init(), real,
                                     jax.random.key(1)).shape, (3, 12))

  def test_gan_steps_lower_the_discriminator_loss(self):
    config = _tiny_opengan_config(lr_g=1e-3, lr_d=5e-3)
    # Toy distribution: features around (3, 3, ..., 3) with small noise,
    # far from what the freshly initialised generator produces (about 0).
    real = jnp.asarray(3.0 + 0.3 * np.random.default_rng(0).normal(
        size=(32, 8)), jnp.float32)
    state = opengan.new_state(config, 8, jax.random.key(0))
    step = jax.jit(opengan.method(config, 8, 1).phases['main'].update)
    batch = {'features': {'feature': real}}
    losses = []
    for i in range(30):
      state, _, metrics = step(state, (), batch, jax.random.key(i))
      losses.append(float(metrics['loss_D']))
    self.assertAlmostEqual(losses[0], 2 * np.log(2), delta=0.1)
    self.assertLess(np.mean(losses[-5:]), losses[0] - 0.3)

  def test_substitution_picks_the_most_similar_candidate(self):
    real = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    candidates = jnp.array([
        [[0.0, 1.0], [3.0, 0.2], [-1.0, 0.0]],  # Row 0: [3, .2] (cos .998).
        [[1.0, 1.0], [5.0, 0.0], [0.1, -4.0]],  # Row 1: [1, 1] (cos .707).
    ])
    np.testing.assert_array_equal(opengan.most_similar(real, candidates),
                                  candidates[[0, 1], [1, 0]])
    # It is one of the candidates that the hook generated, the best one.
    config = _tiny_opengan_config()
    params = opengan.init_params(config, 6, jax.random.key(0))
    hook = opengan.make_hook(config, params, 6)
    real = jax.random.normal(jax.random.key(3), (2, 6))
    picked = hook.substitute(hook.init(), real, jax.random.key(4))
    z = jax.random.normal(jax.random.key(4), (2 * 4, config.nz))
    fake = gan.FeatureGenerator(6, hook.hidden).apply(
        {'params': params['G']}, z).reshape(2, 4, 6)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    cosine = np.einsum('bd,bkd->bk', unit(np.asarray(real)),
                       unit(np.asarray(fake)))
    np.testing.assert_allclose(
        picked, np.asarray(fake)[np.arange(2), cosine.argmax(-1)], rtol=1e-5)

  @parameterized.parameters('cnn', 'resnet8')
  def test_classifier_head_alone_gives_the_models_logits(self, name):
    model = models.create(ml_collections.ConfigDict(
        {'name': name, 'width': 4}), 5)
    images = jnp.asarray(test_util.tiny_images(3, shape=(8, 8, 1)),
                         jnp.float32)
    variables = model.init(jax.random.key(0), images)
    logits, features = model.apply(variables, images)
    np.testing.assert_allclose(
        models.classifier_head(variables['params'], features), logits,
        rtol=1e-5, atol=1e-5)

  def test_train_reuse_and_refuse_another_recipe(self):
    config = _tiny_opengan_config()
    features = np.random.default_rng(0).normal(size=(20, 6)).astype(
        np.float32)
    with tempfile.TemporaryDirectory() as tmp:
      mesh = parallel.make_mesh(1)
      params, info = opengan.train_or_restore(config, features, 0,
                                              f'{tmp}/gan', {'a': 1}, mesh)
      self.assertFalse(info['reused'])
      self.assertLen(info['history'], 2)
      self.assertEqual(set(info['history'][0]), {'loss_D', 'loss_G'})
      again, info = opengan.train_or_restore(config, features, 0,
                                             f'{tmp}/gan', {'a': 1}, mesh)
      self.assertTrue(info['reused'])
      jax.tree.map(np.testing.assert_array_equal, params, again)
      with self.assertRaisesRegex(Exception, 'another recipe'):
        opengan.train_or_restore(config, features, 0, f'{tmp}/gan', {'a': 2},
                                 mesh)


class PipelineTest(absltest.TestCase):

  def test_extra_samples_join_forget_and_mixed(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = test_util.smoke_config(tmp)
      config.method.data_augment = 'simple'
      config.method.augment_num = 7
      dataset = experiment._load_data(config)
      exp = experiment.Experiment(config, dataset, mesh=None)
      forget = np.arange(3)
      data = {'forget': {'image': dataset.train_images[forget],
                         'label': dataset.train_labels[forget]},
              'mixed': {'image': dataset.train_images[:5],
                        'label': dataset.train_labels[:5],
                        'is_forget': np.array([1, 1, 1, 0, 0], np.float32)},
              'retain': {'image': dataset.train_images[3:5],
                         'label': dataset.train_labels[3:5]}}
      out = unlearning._with_extra_forget(exp, data)
      self.assertLen(out['forget']['label'], 10)
      self.assertLen(out['mixed']['label'], 12)
      np.testing.assert_array_equal(out['mixed']['is_forget'],
                                    [1, 1, 1, 0, 0] + [1] * 7)
      self.assertIs(out['retain'], data['retain'])

  def test_config_checks(self):
    config = test_util.smoke_config('/nonexistent')
    config.method.data_augment = 'opengan'  # With SalUn: refused.
    with self.assertRaisesRegex(errors.ConfigError,
                                'opengan works inside.*salun'):
      experiment.check_config(config)
    for name in ('scrub', 'bad_teaching'):
      config.method.name = name
      experiment.check_config(config)
    config.method.data_augment = 'aplr'
    experiment.check_config(config)
    self.assertEqual(config.method.data_augment, 'arpl')
    self.assertIn('arpl', augmentation.SAMPLE_AUGMENTS)


  def test_forget_batch_is_clamped_to_a_small_forget_set(self):
    one, four = parallel.make_mesh(1), parallel.make_mesh(4)
    self.assertEqual(unlearning.fit_forget_batch(256, 50, one), 50)
    self.assertEqual(unlearning.fit_forget_batch(256, 50, four), 48)
    self.assertEqual(unlearning.fit_forget_batch(32, 50, four), 32)
    # Fewer samples than devices: left to the driver's error.
    self.assertEqual(unlearning.fit_forget_batch(8, 3, four), 8)


class CommandLineTest(parameterized.TestCase):

  @parameterized.parameters(('simple', '100'), ('aplr', '60'))
  def test_main_runs(self, name, number):
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    env.pop('XLA_FLAGS', None)
    with tempfile.TemporaryDirectory() as tmp:
      result = subprocess.run(
          [sys.executable, 'main.py', '--config=configs/default.py:smoke',
           '--method', 'scrub', '--mode', 'random', '--lr', '0.005',
           '--epoches', '1', '--loss_weight', '0', '--data_augment', name,
           '--augment_num', number, f'--workdir={tmp}/run',
           f'--saved_data_path={tmp}/saved_data',
           f'--config.checkpoint_dir={tmp}/checkpoints'],
          cwd=_ROOT, capture_output=True, text=True, env=env, timeout=600)
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
      self.assertIn(f'51 + {number} samples', result.stderr)
      with open(f'{tmp}/run/report.json') as f:
        report = json.load(f)
      self.assertEqual(report['augmentation']['num_augmented'], int(number))
      self.assertEqual(report['augmentation']['augment_num'], int(number))

  def test_opengan_with_a_forget_set_smaller_than_the_batch(self):
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    env.pop('XLA_FLAGS', None)
    with tempfile.TemporaryDirectory() as tmp:
      # The smoke forget batch (32) is larger than 20 forget samples.
      result = subprocess.run(
          [sys.executable, 'main.py', '--config=configs/default.py:smoke',
           '--method', 'scrub', '--data_augment', 'opengan',
           '--forget_num', '20', f'--workdir={tmp}/run',
           f'--config.checkpoint_dir={tmp}/checkpoints',
           # The hook's metrics, not what the guard keeps, are tested.
           '--config.guard.enabled=False'],
          cwd=_ROOT, capture_output=True, text=True, env=env, timeout=600)
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
      self.assertIn('larger than the forget set (20 samples); using 20',
                    result.stderr)
      self.assertIn('train opengan', result.stderr)
      with open(f'{tmp}/run/report.json') as f:
        report = json.load(f)
      augment = report['augmentation']
      self.assertEqual(augment['method'], 'opengan')
      self.assertEqual(augment['num_augmented'], 0)
      self.assertFalse(augment['generator_reused'])
      self.assertGreater(augment['generator_seconds'], 0)
      self.assertIn('max/generated_kl', report['history']['unlearned'][0])


if __name__ == '__main__':
  absltest.main()
