"""The guard rails (mu_jax/guard.py): judging, rewinding, NaN, the lr search."""

import jax
import ml_collections
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from mu_jax import guard
from mu_jax import models
from mu_jax import optim
from mu_jax import parallel
from mu_jax import state as state_lib
from mu_jax import train
from mu_jax.methods import base
from mu_jax.methods import finetune
from tests import test_util

_PREP = train.Preprocessing(mean=(0.5,), std=(0.25,))
_BATCH = 16


class _ScriptedProbe:
  """Returns scripted (forget, retain, val) accuracies, one per call.

  As per-example correctness of 1000 examples each (the first ones right),
  so that an accuracy that falls flips only examples that were right. It
  also keeps a copy of the weights it was shown, so that a test can tell
  which check's model the guard kept.
  """
  has_val = True

  def __init__(self, values):
    self.values, self.seen, self.seconds = list(values), [], 0.0

  def __call__(self, state):
    self.seen.append(jax.tree.map(np.asarray, state.params))
    values = self.values[min(len(self.seen), len(self.values)) - 1]
    out = {}
    for key, accuracy in zip(('forget', 'retain', 'val'), values):
      if accuracy is not None:
        out[key] = np.arange(1000) < round(10 * accuracy)
    return out


def _config(**overrides):
  config = guard.guard_config()
  config.noise_z = 0.0  # Scripted accuracies are exact.
  config.update(overrides)
  return config


def _setup(lr=0.05, epochs=2):
  """Fine-tuning of a tiny CNN: (original state, run_attempt)."""
  n = 64
  images, labels = test_util.tiny_images(n), test_util.tiny_labels(n)
  data = {'retain': train.split_data(images, labels)}
  model = models.create(ml_collections.ConfigDict({'name': 'cnn',
                                                   'width': 4}), 4)
  ctx = base.Context(num_classes=4, epochs=epochs,
                     steps_per_epoch={'retain': n // _BATCH},
                     batch_size={'retain': _BATCH}, init_variables=None,
                     iterate=None)
  method = finetune.make(ml_collections.ConfigDict({'augment': False}), ctx)
  optim_config = ml_collections.ConfigDict(
      {'name': 'sgd', 'lr': lr, 'momentum': 0.9, 'weight_decay': 0.0})
  original = state_lib.create(model, optim.make_optimizer(optim_config, 4, 2),
                              (8, 8, 1), jax.random.key(0))
  scales = []

  def run_attempt(lr_scale, monitor=None):
    scales.append(lr_scale)
    config = ml_collections.ConfigDict(optim_config.to_dict())
    config.lr = optim_config.lr * lr_scale
    return train.run(
        method, original.with_optimizer(optim.make_optimizer(config, 4, 2)),
        data, epochs=epochs, batch_size={'retain': _BATCH}, seed=0,
        prep=_PREP, mesh=parallel.make_mesh(1), monitor=monitor,
        checks_per_epoch=2)

  return original, run_attempt, scales


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class JudgeTest(parameterized.TestCase):

  def _guard(self, mode, values, **overrides):
    probe = _ScriptedProbe(values)
    judge = guard.Guard(_config(**overrides), mode, probe)
    state = state_lib.create(
        models.create(ml_collections.ConfigDict({'name': 'cnn', 'width': 4}),
                      4), optim.make_optimizer(ml_collections.ConfigDict(
                          {'name': 'sgd', 'lr': 0.1}), 1, 1),
        (8, 8, 1), jax.random.key(0))
    judge.baseline(state)
    return judge, [judge.measure(state, epoch=1, step=i + 1)
                   for i in range(len(values) - 1)]

  def test_damage_and_targets(self):
    # Random: the target is half way from 99 to the held-out 90.
    judge, checks = self._guard('random', [
        (99.0, 99.0, 90.0),   # Baseline.
        (95.0, 98.0, 90.0),   # Above 94.5: not yet forgotten.
        (94.0, 97.0, 88.5),   # Forgotten (1.5 held-out points lost).
        (80.0, 88.0, 89.0),   # Retain 11 points down: damaged.
        (80.0, 98.0, 87.5),   # Held-out 2.5 points down: damaged.
        (80.0, 93.0, 88.5),   # 6 and 1.5 points down: within the limits.
    ])
    self.assertEqual(judge.target, 94.5)
    self.assertEqual([judge.forgotten(c) for c in checks],
                     [False, True, False, False, True])
    self.assertIn('retain accuracy fell 11.0', checks[2].damage)
    self.assertIn('held-out accuracy fell 2.5', checks[3].damage)
    self.assertEqual(checks[4].damage, '')

  def test_class_wise_target(self):
    judge, checks = self._guard('class_wise', [
        (97.0, 99.0, 90.0), (40.0, 98.0, 90.0), (1.5, 97.0, 89.0)])
    self.assertEqual(judge.target, 2.0)
    self.assertEqual([judge.forgotten(c) for c in checks], [False, True])

  def test_best_is_the_lowest_estimated_gap(self):
    # Random: 2 |forget - 90| plus the retain and held-out points lost.
    judge, checks = self._guard('random', [
        (99.0, 99.0, 90.0),   # 18.
        (92.0, 99.0, 90.0),   # 4.
        (90.5, 96.0, 89.5),   # 1 + 3 + 0.5 = 4.5.
        (89.0, 60.0, 90.0),   # Damaged: never kept.
    ])
    self.assertIs(judge.best, checks[0])
    self.assertEqual(judge.score(checks[1]), 4.5)
    # Class-wise: 2 forget accuracy plus the points lost.
    judge, checks = self._guard('class_wise', [
        (97.0, 99.0, 90.0), (0.0, 93.0, 88.0), (1.0, 98.0, 90.0)])
    self.assertIs(judge.best, checks[1])

  def test_noise_forgives_a_small_measured_drop(self):
    # Held-out accuracy 2.5 points down on 1000 examples: 25 flipped, so the
    # drop's standard error is sqrt(25) / 1000 = 0.5 points.
    values = [(99.0, 99.0, 90.0), (95.0, 99.0, 87.5)]
    _, strict = self._guard('random', values, noise_z=0.0)
    _, lenient = self._guard('random', values, noise_z=2.0)
    self.assertIn('held-out accuracy fell 2.5 +- 0.5', strict[0].damage)
    self.assertEqual(lenient[0].damage, '')

  def test_random_mode_needs_a_validation_set(self):
    probe = _ScriptedProbe([(99.0, 99.0, None)])
    probe.has_val = False
    with self.assertRaisesRegex(ValueError, 'val_fraction'):
      guard.Guard(_config(), 'random', probe).baseline(None)

  def test_bad_config(self):
    for overrides in ({'max_attempts': 0}, {'lr_factor': 1.0},
                      {'checks_per_epoch': 0}, {'random_progress': 0.0}):
      with self.assertRaises(ValueError):
        guard.Guard(_config(**overrides), 'random', _ScriptedProbe([]))


class PairedDropTest(absltest.TestCase):

  def test_golden(self):
    before = np.array([1, 1, 1, 1, 0, 0, 1, 1], bool)
    after = np.array([1, 0, 0, 1, 1, 0, 1, 1], bool)
    drop, error = guard.paired_drop(before, after)
    # 6/8 -> 5/8 right; 3 examples flipped: sqrt(3) / 8.
    self.assertAlmostEqual(drop, 12.5)
    self.assertAlmostEqual(error, 100 * np.sqrt(3) / 8)


class NextScaleTest(absltest.TestCase):

  def test_search(self):
    # Too little forgetting: up; a collapse or NaN: down.
    self.assertEqual(guard._next_scale(1.0, guard.UNDER_FORGOT, None, None,
                                       2.0), (2.0, 1.0, None))
    self.assertEqual(guard._next_scale(1.0, guard.DIVERGED, None, None, 2.0),
                     (0.5, None, 1.0))
    # Bracketed: the geometric middle.
    scale, low, high = guard._next_scale(4.0, guard.COLLAPSED, 2.0, None, 2.0)
    self.assertAlmostEqual(scale, np.sqrt(8.0))
    self.assertEqual((low, high), (2.0, 4.0))


class RunTest(absltest.TestCase):

  def test_a_run_that_needs_no_help_is_untouched(self):
    original, run_attempt, scales = _setup()
    # Damaged in the middle, repaired and forgotten at the end (step 8).
    probe = _ScriptedProbe([(99.0, 99.0, 90.0), (95.0, 80.0, 75.0),
                            (96.0, 98.0, 89.0), (95.0, 98.0, 89.0),
                            (93.0, 98.0, 89.0)])
    outcome = guard.run(_config(), 'random', probe, original, run_attempt)
    self.assertEqual(scales, [1.0])
    self.assertEqual(outcome.report['attempts'][0]['outcome'],
                     guard.FORGOTTEN)
    self.assertFalse(outcome.report['acted'])
    self.assertLen(probe.seen, 5)  # Baseline and 4 checks: never stopped.
    plain = run_attempt(1.0)
    _assert_trees_equal(outcome.state.params, plain.state.params)

  def test_collapse_is_retried_then_rewound_to_the_best_check(self):
    original, run_attempt, scales = _setup()
    probe = _ScriptedProbe([
        (99.0, 99.0, 90.0),   # Baseline.
        (95.0, 99.0, 90.0),   # Attempt 1, step 2: the best undamaged check.
        (93.0, 80.0, 90.0),   # Then damaged to the end; attempt 2 too.
    ])
    outcome = guard.run(_config(max_attempts=2), 'random', probe, original,
                        run_attempt)
    self.assertEqual(scales, [1.0, 0.5])
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.COLLAPSED, guard.COLLAPSED])
    kept = outcome.report['kept']
    self.assertEqual((kept['attempt'], kept['step']), (1, 2))
    self.assertIn('rewound to attempt 1', outcome.report['summary'])
    self.assertTrue(outcome.report['acted'])
    _assert_trees_equal(outcome.state.params, probe.seen[1])

  def test_forgotten_then_damaged_is_rewound_without_a_retry(self):
    original, run_attempt, scales = _setup()
    probe = _ScriptedProbe([
        (99.0, 99.0, 90.0),   # Baseline.
        (96.0, 99.0, 90.0),   # Step 2.
        (93.0, 98.0, 89.5),   # Step 4: forgotten (target 94.5): 6+1+.5.
        (92.0, 97.0, 89.0),   # Step 6: forgotten, the best: 4+2+1.
        (80.0, 80.0, 70.0),   # Step 8, the end: damaged.
    ])
    outcome = guard.run(_config(), 'random', probe, original, run_attempt)
    self.assertEqual(scales, [1.0])
    attempt = outcome.report['attempts'][0]
    self.assertEqual(attempt['outcome'], guard.COLLAPSED)
    self.assertEqual(attempt['rewound_to']['step'], 6)
    _assert_trees_equal(outcome.state.params, probe.seen[3])
    self.assertIn('rewound attempt 1', outcome.report['summary'])

  def test_nan_in_every_attempt_is_an_error(self):
    original, run_attempt, scales = _setup(lr=1e30)
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)])
    with self.assertRaisesRegex(train.DivergenceError,
                                'every attempt diverged, down to lr x0.25'):
      guard.run(_config(max_attempts=3), 'random', probe, original,
                run_attempt)
    self.assertEqual(scales, [1.0, 0.5, 0.25])

  def test_diverged_attempts_are_rewound_to_their_best_check(self):
    # Gradient ascent on a large forget set: forget and held-out accuracy
    # fall together, then the loss overflows in every attempt.
    original, run_attempt, scales = _setup()

    def diverge_at_the_end(lr_scale, monitor=None):
      run_attempt(lr_scale, monitor)  # Its 4 checks, then a NaN.
      raise train.DivergenceError('forget_ce became nan')

    probe = _ScriptedProbe([(99.0, 99.0, 90.0),                   # Base.
                            (97.0, 99.0, 90.0), (96.0, 99.0, 90.0),  # Best.
                            (80.0, 60.0, 60.0), (80.0, 60.0, 60.0)]
                           + [(80.0, 60.0, 60.0)] * 8)
    outcome = guard.run(_config(), 'random', probe, original,
                        diverge_at_the_end)
    self.assertEqual(scales, [1.0, 0.5, 0.25])
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.DIVERGED] * 3)
    kept = outcome.report['kept']
    self.assertEqual((kept['attempt'], kept['step']), (1, 4))
    _assert_trees_equal(outcome.state.params, probe.seen[2])

  def test_nothing_better_keeps_the_original(self):
    original, run_attempt, _ = _setup()
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(90.0, 70.0, 60.0)] * 20)
    outcome = guard.run(_config(max_attempts=2), 'random', probe, original,
                        run_attempt)
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.COLLAPSED] * 2)
    # Nothing undamaged but the original: it is handed on, with a report.
    self.assertEqual(outcome.report['kept']['attempt'], 0)
    self.assertIn('kept the original', outcome.report['summary'])
    self.assertIsNone(outcome.result)
    _assert_trees_equal(outcome.state.params, original.params)

  def test_a_diverged_attempt_is_retried_with_a_smaller_step(self):
    original, run_attempt, scales = _setup()

    def diverge_at_full_step(lr_scale, monitor=None):
      if lr_scale >= 1.0:
        scales.append(lr_scale)
        raise train.DivergenceError('loss became nan')
      return run_attempt(lr_scale, monitor)

    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(90.0, 99.0, 90.0)] * 4)
    outcome = guard.run(_config(), 'random', probe, original,
                        diverge_at_full_step)
    self.assertEqual(scales, [1.0, 0.5])
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.DIVERGED, guard.FORGOTTEN])
    self.assertEqual(outcome.report['kept']['attempt'], 2)
    _assert_trees_equal(outcome.state.params, probe.seen[-1])

  def test_too_little_forgetting_raises_the_step(self):
    original, run_attempt, scales = _setup()
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(98.0, 99.0, 90.0)] * 8
                           + [(93.0, 99.0, 90.0)] * 4)
    outcome = guard.run(_config(), 'random', probe, original, run_attempt)
    self.assertEqual(scales, [1.0, 2.0, 4.0])
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.UNDER_FORGOT, guard.UNDER_FORGOT,
                      guard.FORGOTTEN])

  def test_bisects_between_too_little_and_too_much(self):
    original, run_attempt, scales = _setup()
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(98.0, 99.0, 90.0)] * 4
                           + [(80.0, 50.0, 60.0)] * 4
                           + [(93.0, 99.0, 90.0)] * 4)
    outcome = guard.run(_config(), 'random', probe, original, run_attempt)
    self.assertEqual(scales[:2], [1.0, 2.0])
    self.assertAlmostEqual(scales[2], np.sqrt(2.0))
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.UNDER_FORGOT, guard.COLLAPSED, guard.FORGOTTEN])


if __name__ == '__main__':
  absltest.main()
