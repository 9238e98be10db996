"""The driver: data parallelism, resume, divergence, checkpoints, crops."""

import os
import tempfile
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from configs import default
from mu_jax import augment
from mu_jax import checkpoint as checkpoint_lib
from mu_jax import host_batches
from mu_jax import losses
from mu_jax import models
from mu_jax import optim
from mu_jax import parallel
from mu_jax import state as state_lib
from mu_jax import step_programs
from mu_jax import teacher_outputs
from mu_jax import train
from mu_jax.methods import bad_teaching
from mu_jax.methods import base
from mu_jax.methods import finetune
from mu_jax.methods import neggrad_plus
from mu_jax.methods import retrain
from mu_jax.methods import scrub
from tests import test_util

_PREP = host_batches.Preprocessing(mean=(0.5,), std=(0.25,), crop_padding=1,
                                   flip=True)


def _setup(model_name='cnn', n=64, batch=16, lr=0.05, method=retrain,
           config=None, splits=('retain',)):
  """(method, state, data, batch): `method` made with `config` (default:
  augmented) on `splits` of `n` tiny images each."""
  model = models.create(ml_collections.ConfigDict(
      {'name': model_name, 'width': 4}), 4)
  data = {s: host_batches.split_data(test_util.tiny_images(n, seed=k),
                                     test_util.tiny_labels(n, seed=k))
          for k, s in enumerate(splits)}

  def init_variables(rng):
    variables = dict(model.init(rng, jnp.zeros((1, 8, 8, 1))))
    return variables.pop('params'), variables

  ctx = base.Context(num_classes=4, epochs=2,
                     steps_per_epoch={s: n // batch for s in data},
                     batch_size={s: batch for s in data},
                     init_variables=init_variables, iterate=None)
  made = method.make(ml_collections.ConfigDict(
      {'augment': True} if config is None else config), ctx)
  tx = optim.make_optimizer(ml_collections.ConfigDict(
      {'name': 'sgd', 'lr': lr, 'momentum': 0.9, 'weight_decay': 5e-4}),
                            n // batch, 2)
  state = state_lib.create(model, tx, (8, 8, 1), jax.random.key(0))
  return made, state, data, batch


def _run(made, state, data, batch, mesh, **kwargs):
  return train.run(made, state, data, epochs=2, batch_size={'retain': batch},
                   seed=3, prep=_PREP, mesh=mesh, **kwargs)


def _assert_trees_close(a, b, atol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol)


class TrainTest(parameterized.TestCase):

  def test_four_fake_devices_are_visible(self):
    self.assertEqual(jax.device_count(), 4)

  @parameterized.parameters(('cnn', 1e-5), ('resnet8', 1e-4))
  def test_one_device_equals_four_devices(self, model_name, atol):
    made, state, data, batch = _setup(model_name)
    one = _run(made, state, data, batch, parallel.make_mesh(1))
    four = _run(made, state, data, batch, parallel.make_mesh(4))
    self.assertLen(four.state.params['Dense_0']['kernel'].sharding.device_set,
                   4)
    _assert_trees_close(one.state.params, four.state.params, atol)
    _assert_trees_close(one.state.model_state, four.state.model_state, atol)
    np.testing.assert_allclose(one.history[-1]['loss'],
                               four.history[-1]['loss'], rtol=1e-4)

  def test_training_lowers_the_loss_and_keeps_the_input_state(self):
    made, state, data, batch = _setup(method=finetune, lr=0.1)
    before = jax.tree.map(np.asarray, state.params)
    result = train.run(made, state, data, epochs=8,
                       batch_size={'retain': batch}, seed=0, prep=_PREP._replace(
                           crop_padding=0, flip=False),
                       mesh=parallel.make_mesh(1))
    self.assertLess(result.history[-1]['loss'], result.history[0]['loss'])
    # The caller's state was copied, not donated.
    _assert_trees_close(state.params, before, 0.0)
    self.assertGreater(result.compile_seconds, 0.0)

  def test_killed_run_resumes_to_the_same_result(self):
    made, state, data, batch = _setup()
    mesh = parallel.make_mesh(2)
    with tempfile.TemporaryDirectory() as tmp:
      full = _run(made, state, data, batch, mesh,
                  checkpointer=checkpoint_lib.Checkpointer(f'{tmp}/a'))

      def kill_after_first_epoch(epoch, state, method_state):
        del state, method_state
        if epoch == 1:  # Epoch 0 is saved; die before epoch 1 is.
          raise KeyboardInterrupt

      with self.assertRaises(KeyboardInterrupt):
        _run(made, state, data, batch, mesh,
             checkpointer=checkpoint_lib.Checkpointer(f'{tmp}/b'),
             on_epoch_end=kill_after_first_epoch)
      epochs_run = []
      resumed = _run(made, state, data, batch, mesh,
                     checkpointer=checkpoint_lib.Checkpointer(f'{tmp}/b'),
                     on_epoch_end=lambda e, s, m: epochs_run.append(e))
    self.assertEqual(resumed.resumed_from_epoch, 1)
    self.assertEqual(epochs_run, [1])
    self.assertLen(resumed.history, 2)
    _assert_trees_close(full.state.params, resumed.state.params, 1e-6)

  def test_half_written_checkpoint_is_never_loaded(self):
    made, state, data, batch = _setup()
    with tempfile.TemporaryDirectory() as tmp:
      ckpt = checkpoint_lib.Checkpointer(tmp)
      _run(made, state, data, batch, parallel.make_mesh(1), checkpointer=ckpt)
      good = ckpt.latest_meta()
      # What a crash during Orbax's write leaves behind: a temporary folder.
      os.makedirs(f'{tmp}/999.orbax-checkpoint-tmp/state')
      with open(f'{tmp}/999.orbax-checkpoint-tmp/state/junk', 'w') as f:
        f.write('partial')
      reopened = checkpoint_lib.Checkpointer(tmp)
      self.assertEqual(reopened.latest_meta(), good)
      self.assertTrue(good['done'])

  def test_divergence_is_an_error_and_saves_nothing(self):
    made, state, data, batch = _setup(lr=1e30)
    with tempfile.TemporaryDirectory() as tmp:
      ckpt = checkpoint_lib.Checkpointer(tmp)
      with self.assertRaisesRegex(train.TrainingError, 'lower the learning'):
        _run(made, state, data, batch, parallel.make_mesh(1),
             checkpointer=ckpt)
      self.assertIsNone(ckpt.latest_meta())

  def test_every_steps_metrics_reach_the_log(self):
    made, state, data, batch = _setup()
    logged = []
    result = _run(made, state, data, batch, parallel.make_mesh(1),
                  log_metrics=lambda step, values: logged.append(
                      (step, dict(values))))
    steps = 2 * (64 // batch)
    self.assertEqual([s for s, _ in logged], list(range(1, steps + 1)))
    self.assertEqual(set(logged[0][1]), {'loss', 'accuracy'})
    # The epoch means of the history are the means of the logged values.
    first_epoch = [v['loss'] for s, v in logged[:steps // 2]]
    self.assertAlmostEqual(result.history[0]['loss'], np.mean(first_epoch),
                           places=5)

  def test_batch_larger_than_split(self):
    made, state, data, _ = _setup(n=64, batch=16)
    with self.assertRaisesRegex(train.TrainingError, 'larger than the retain'):
      _run(made, state, data, 128, parallel.make_mesh(1))

  def test_batch_not_divisible_by_devices(self):
    made, state, data, _ = _setup(n=64, batch=16)
    with self.assertRaisesRegex(ValueError, 'multiple of 4'):
      _run(made, state, data, 18, parallel.make_mesh(4))

  def test_compiles_in_prepare_count_as_compile_time(self):
    before = parallel.compile_seconds()
    parallel.compile_function(lambda x: x * 3.0)(jnp.ones(3))  # A new one.
    self.assertGreater(parallel.compile_seconds(), before)
    made, state, data, batch = _setup()
    # A clock that says prepare compiled for 100 s.
    with mock.patch.object(parallel, 'compile_seconds',
                           side_effect=[0.0, 100.0]):
      result = _run(made, state, data, batch, parallel.make_mesh(1))
    self.assertGreaterEqual(result.compile_seconds, 100.0)
    self.assertLess(result.run_seconds, 0.0)  # The 100 s left run time.

  def test_batch_stream_is_a_permutation_per_pass(self):
    stream = host_batches.BatchStream('forget', 10, 3, seed=0)
    first_pass = np.concatenate([stream.next() for _ in range(3)])
    self.assertLen(set(first_pass.tolist()), 9)
    resumed = host_batches.BatchStream('forget', 10, 3, seed=0, position=3)
    np.testing.assert_array_equal(stream.next(), resumed.next())


def _two_split_setup(module, config):
  """(method, state, data) for `module` on forget and retain splits."""
  made, state, data, _ = _setup(method=module, config=config,
                                splits=('forget', 'retain'))
  return made, state, data


def _run_two_splits(made, state, data, batch=16):
  """Two epochs on both splits, un-augmented, on 2 devices."""
  return train.run(made, state, data, epochs=2,
                   batch_size={'forget': batch, 'retain': batch}, seed=3,
                   prep=_PREP._replace(crop_padding=0, flip=False),
                   mesh=parallel.make_mesh(2))


class StepPartsTest(absltest.TestCase):
  """A step made of several programs (`base.summed_gradients`)."""

  def test_summed_gradients_step_is_the_summed_loss_step(self):
    made, state, data = _two_split_setup(neggrad_plus, {'alpha': 0.7})
    state, method_state = made.prepare(jax.random.key(0), state)
    batches = {s: {'image': jnp.asarray(d['image'][:8], jnp.float32) / 255,
                   'label': jnp.asarray(d['label'][:8])}
               for s, d in data.items()}
    parts = made.phases['main'].update
    self.assertLen(parts, 2)
    stepped, metrics = state, {}
    for part in parts:
      stepped, method_state, part_metrics = jax.jit(part)(
          stepped, method_state, batches, jax.random.key(1))
      metrics.update(part_metrics)

    def summed_loss(params):
      ce = {s: losses.cross_entropy(
          state.apply(params, b['image'], train=True)[0][0], b['label'])
            for s, b in batches.items()}
      return 0.7 * ce['retain'] - 0.3 * ce['forget']

    loss, grads = jax.value_and_grad(summed_loss)(state.params)
    expected = state.apply_gradients(grads)
    _assert_trees_close(stepped.params, expected.params, 1e-6)
    np.testing.assert_allclose(metrics['loss'], loss, rtol=1e-5)
    self.assertEqual(int(stepped.step), 1)

  def test_separate_programs_train_as_one_program(self):
    made, state, data = _two_split_setup(neggrad_plus, {'alpha': 0.9})
    self.assertLen(
        step_programs._parts(made.phases['main'], parallel.make_mesh(2)), 2)
    separate = _run_two_splits(made, state, data)
    with mock.patch.object(parallel, 'separate_programs',
                           return_value=False):
      self.assertLen(
          step_programs._parts(made.phases['main'], parallel.make_mesh(2)),
          1)
      fused = _run_two_splits(made, state, data)
    _assert_trees_close(separate.state.params, fused.state.params, 1e-5)
    for a, b in zip(separate.history, fused.history):
      self.assertEqual(set(a), {'loss', 'forget_ce', 'forget_accuracy',
                                'retain_accuracy'})
      self.assertEqual(set(a), set(b))
      # Not the accuracies: rounding may flip a near-tie argmax.
      for k in ('loss', 'forget_ce'):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6)


def _probe_method(steps, augment, splits=('retain',)):
  """A method whose metrics say whether its batches carried the frozen
  outputs, and how far those are from computing them on the spot."""

  def frozen(state, method_state, images):
    del state, method_state
    return {'mean': images.mean(axis=(1, 2, 3))}

  def update(state, method_state, batches, rng):
    del rng
    batch = batches[splits[0]]
    outputs = base.frozen_outputs(frozen, state, method_state, batch)
    stored = any(k.startswith(base.FROZEN_PREFIX) for k in batch)
    error = jnp.abs(outputs['mean'] - batch['image'].mean(axis=(1, 2, 3)))
    return state, method_state, {'stored': jnp.float32(stored),
                                 'error': error.max()}

  return base.single_phase(update, splits, steps, augment=augment,
                           frozen=frozen)


class FrozenOutputsTest(parameterized.TestCase):
  """Teachers' outputs computed once per split (`Method.frozen`)."""

  @parameterized.named_parameters(
      ('a_pass_unaugmented', 4, False, 1.0),
      ('augmented', 4, True, 0.0),
      ('less_than_a_pass', 1, False, 0.0))
  def test_precomputed_when_it_pays(self, steps, augment, stored):
    _, state, data, batch = _setup()
    prep = _PREP if augment else _PREP._replace(crop_padding=0, flip=False)
    result = train.run(_probe_method(steps, augment), state, data, epochs=1,
                       batch_size={'retain': batch}, seed=3, prep=prep,
                       mesh=parallel.make_mesh(2))
    self.assertEqual(result.history[0]['stored'], stored)
    # Stored rows belong to the samples of the batch they arrive in.
    self.assertLess(result.history[0]['error'], 1e-5)

  @parameterized.parameters('bad_teaching', 'scrub')
  def test_precomputed_teachers_train_as_teachers_run_in_the_step(self, name):
    module = {'bad_teaching': bad_teaching, 'scrub': scrub}[name]
    config = default.method_config(name)
    config.epochs = 2
    made, state, data = _two_split_setup(module, config.to_dict())
    precomputed = _run_two_splits(made, state, data)
    with mock.patch.object(teacher_outputs, '_precomputing_pays',
                           return_value=False):
      in_step = _run_two_splits(made, state, data)
    _assert_trees_close(precomputed.state.params, in_step.state.params, 1e-5)


class AugmentTest(absltest.TestCase):

  def test_normalize(self):
    x = np.array([[[[0], [255]]]], np.uint8)
    np.testing.assert_allclose(augment.normalize(x, (0.5,), (0.5,)),
                               [[[[-1.0], [1.0]]]])

  def test_normalize_passes_preprocessed_floats_through(self):
    # Float images are in their model's own preprocessing (mu_jax/api.py).
    x = np.array([[[[-3.5], [255.0]]]], np.float64)
    out = augment.normalize(x, (0.5,), (0.5,))
    self.assertEqual(out.dtype, np.float32)
    np.testing.assert_array_equal(out, x.astype(np.float32))

  def test_crop_and_flip_keep_content_and_shape(self):
    x = np.arange(2 * 6 * 6, dtype=np.uint8).reshape(2, 6, 6, 1)
    cropped = augment.random_crop(jax.random.key(0), x, 2)
    self.assertEqual(cropped.shape, x.shape)
    # Every crop is a shifted window of the zero-padded image.
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for i in range(2):
      self.assertTrue(any(
          np.array_equal(cropped[i], padded[i, a:a + 6, b:b + 6])
          for a in range(5) for b in range(5)))
    flipped = augment.random_flip(jax.random.key(1), x)
    for i in range(2):
      self.assertTrue(np.array_equal(flipped[i], x[i]) or
                      np.array_equal(flipped[i], x[i, :, ::-1]))
    np.testing.assert_array_equal(
        augment.random_crop(jax.random.key(0), x, 2), cropped)


if __name__ == '__main__':
  absltest.main()
