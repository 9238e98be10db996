"""The guard rails (mu_jax/guard.py): judging, rewinding, NaN, the search,
the budget, the balance knob and shared compiled programs."""

import tempfile
import time

import jax
import ml_collections
import numpy as np
import optax
from absl.testing import absltest
from absl.testing import parameterized

from configs import default
from mu_jax import guard
from mu_jax import host_batches
from mu_jax import models
from mu_jax import optim
from mu_jax import parallel
from mu_jax import pipeline
from mu_jax import state as state_lib
from mu_jax import train
from mu_jax.methods import base
from mu_jax.methods import finetune
from mu_jax.methods import neggrad_plus
from mu_jax.methods import random_label
from mu_jax.methods import salun
from mu_jax.methods import scrub
from tests import test_util

_PREP = host_batches.Preprocessing(mean=(0.5,), std=(0.25,))
_BATCH = 16


class _ScriptedProbe:
  """Returns scripted (forget, retain, val) accuracies, one per call.

  As per-example correctness of `examples` examples each (the first ones
  right), so that an accuracy that falls flips only examples that were
  right. It
  also keeps a copy of the weights it was shown, so that a test can tell
  which check's model the guard kept.
  """
  has_val = True

  def __init__(self, values, examples=1000):
    self.values, self.seen, self.seconds = list(values), [], 0.0
    self.examples = examples

  def __call__(self, state):
    self.seen.append(jax.tree.map(np.asarray, state.params))
    values = self.values[min(len(self.seen), len(self.values)) - 1]
    out = {}
    for key, accuracy in zip(('forget', 'retain', 'val'), values):
      if accuracy is not None:
        out[key] = (np.arange(self.examples)
                    < round(self.examples * accuracy / 100.0))
    return out


def _config(**overrides):
  config = default.guard_section()
  # Scripted accuracies are exact: no noise allowance, the random target a
  # window of one example around the original's held-out accuracy.
  config.noise_z = 0.0
  config.target_z = 0.0
  config.budget = 0.0  # No budget unless a test sets one.
  config.min_steps = 0  # Never lengthened unless a test asks.
  config.update(overrides)
  return config


def _run(config, mode, probe, original, run_attempt, **kwargs):
  """guard.run for `_setup`'s fine-tuning: epochs of 4 steps, checked after
  steps 2 and 4 of each."""
  kwargs.setdefault('epochs', 2)
  kwargs.setdefault('plan', lambda epochs: (
      4 * epochs, [2 * k for k in range(1, 2 * epochs + 1)]))
  return guard.run(config, mode, probe, original, run_attempt, **kwargs)


def _setup(lr=0.05, epochs=2):
  """Fine-tuning of a tiny CNN: (original state, run_attempt)."""
  n = 64
  images, labels = test_util.tiny_images(n), test_util.tiny_labels(n)
  data = {'retain': host_batches.split_data(images, labels)}
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

  def run_attempt(settings, monitor=None):
    scales.append(settings.lr_scale)
    run_attempt.epochs.append(settings.epochs)
    config = ml_collections.ConfigDict(optim_config.to_dict())
    config.lr = optim_config.lr * settings.lr_scale
    return train.run(
        method, original.with_optimizer(optim.make_optimizer(config, 4, 2)),
        data, epochs=settings.epochs, batch_size={'retain': _BATCH}, seed=0,
        prep=_PREP, mesh=parallel.make_mesh(1), monitor=monitor,
        checks_per_epoch=2)

  run_attempt.epochs = []  # Each attempt's length, as `scales` its lr.
  return original, run_attempt, scales


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class JudgeTest(parameterized.TestCase):

  def _guard(self, mode, values, examples=1000, **overrides):
    probe = _ScriptedProbe(values, examples)
    judge = guard.Guard(_config(**overrides), mode, probe)
    state = state_lib.create(
        models.create(ml_collections.ConfigDict({'name': 'cnn', 'width': 4}),
                      4), optim.make_optimizer(ml_collections.ConfigDict(
                          {'name': 'sgd', 'lr': 0.1}), 1, 1),
        (8, 8, 1), jax.random.key(0))
    judge.baseline(state)
    return judge, [judge.measure(state, epoch=1, step=i + 1)
                   for i in range(len(values) - 1)]

  def test_damage_and_two_sided_target(self):
    # Random: at the target within one example (0.1 point) of the
    # original's held-out accuracy, 90; above it short, below it over.
    judge, checks = self._guard('random', [
        (99.0, 99.0, 90.0),   # Baseline.
        (95.0, 98.0, 90.0),   # Short of the target.
        (90.1, 97.0, 88.5),   # At it (one example off; 1.5 points lost).
        (85.0, 97.0, 89.0),   # Over-forgotten.
        (90.0, 88.0, 89.0),   # Retain 11 points down: damaged.
        (90.0, 98.0, 87.5),   # Held-out 2.5 points down: damaged.
        (90.0, 93.0, 88.5),   # 6 and 1.5 points down: within the limits.
    ])
    self.assertEqual([c.target for c in checks],
                     ['under', 'at', 'over', 'at', 'at', 'at'])
    self.assertEqual([judge.forgotten(c) for c in checks],
                     [False, True, False, False, False, True])
    self.assertIn('retain accuracy fell 11.0', checks[3].damage)
    self.assertIn('held-out accuracy fell 2.5', checks[4].damage)
    self.assertEqual(checks[5].damage, '')

  def test_the_random_window_is_the_two_sample_error(self):
    # 1000 forget and 1000 held-out examples at about 90 %: the error of
    # the difference is sqrt(2 p (1 - p) / 1000), p = 900.5 / 1001 (the
    # held-out side) and 1.8 points of gap at z = 1.
    judge, checks = self._guard('random', [
        (99.0, 99.0, 90.0), (93.0, 99.0, 90.0), (91.8, 99.0, 90.0),
        (88.2, 99.0, 90.0), (87.9, 99.0, 90.0)], target_z=1.0)
    p_val = 900.5 / 1001
    p_forget = 930.5 / 1001
    self.assertAlmostEqual(checks[0].gap, 3.0)
    self.assertAlmostEqual(checks[0].gap_error, 100 * np.sqrt(
        p_forget * (1 - p_forget) / 1000 + p_val * (1 - p_val) / 1000))
    # z SE + one example is about 1.44 points: 1.8 is outside, 2.1 too.
    self.assertEqual([c.target for c in checks],
                     ['under', 'under', 'over', 'over'])
    judge, checks = self._guard('random', [
        (99.0, 99.0, 90.0), (91.4, 99.0, 90.0), (88.6, 99.0, 90.0)],
                                target_z=1.0)
    self.assertEqual([c.target for c in checks], ['at', 'at'])

  def test_one_example_never_decides(self):
    # 1000 held-out examples: a drop of the limit plus one example (2.1
    # points, all flipped one way; no noise allowance at z = 0) is not
    # damage; one more example is, the smallest damaging drop.
    judge, (at_limit, past) = self._guard(
        'random', [(99.0, 99.0, 90.0), (95.0, 99.0, 87.9), (95.0, 99.0, 87.8)])
    self.assertEqual(at_limit.damage, '')
    self.assertIn('held-out accuracy fell 2.2', past.damage)
    self.assertAlmostEqual(
        judge.resolution()['smallest_damaging_val_drop'], 2.2)
    self.assertEqual(judge.caveat(), '')
    # 100 held-out images, z = 1: 6 lost examples are damage (6 - 1 -
    # sqrt(6) = 2.55 > 2), 5 are not (1.76): damage only from 6 points,
    # over twice the 2-point limit, and the run's report says so.
    judge, _ = self._guard('random', [(99.0, 99.0, 90.0)], examples=100,
                           noise_z=1.0)
    self.assertRegex(judge.caveat(), r'^caveat: on 100 validation images a '
                     r'check calls a held-out drop damage only from 6\.0 '
                     r'points \(the limit is 2\)')
    # The forgetting target likewise: one example off is still at it.
    judge, checks = self._guard('random', [
        (99.0, 99.0, 90.0), (90.1, 99.0, 90.0), (89.9, 99.0, 90.0),
        (90.2, 99.0, 90.0)])
    self.assertEqual([c.target for c in checks], ['at', 'at', 'under'])

  def test_class_wise_target(self):
    judge, checks = self._guard('class_wise', [
        (97.0, 99.0, 90.0), (40.0, 98.0, 90.0), (1.5, 97.0, 89.0)])
    self.assertEqual([judge.forgotten(c) for c in checks], [False, True])
    self.assertEqual([c.target for c in checks], ['under', 'at'])

  def test_best_is_the_lowest_estimated_gap(self):
    # Random: twice the distance of forget accuracy beyond the window
    # (90 +- one example, 0.1) plus the retain and held-out points lost.
    judge, checks = self._guard('random', [
        (99.0, 99.0, 90.0),   # The original: 17.8.
        (92.0, 99.0, 90.0),   # 3.8: the best.
        (90.5, 96.0, 89.5),   # 0.8 + 3 + 0.5 = 4.3.
        (89.0, 60.0, 90.0),   # Damaged: never kept.
    ])
    self.assertIs(judge.best, checks[0])
    self.assertAlmostEqual(judge.score(judge.checks[0]), 17.8)
    self.assertAlmostEqual(judge.score(checks[0]), 3.8)
    self.assertAlmostEqual(judge.score(checks[1]), 4.3)
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
                      {'lr_factor': float('nan')}, {'checks_per_epoch': 0},
                      {'target_z': -1.0}, {'budget': float('inf')},
                      {'class_wise_target': 100.0}):
      with self.subTest(overrides=overrides), self.assertRaisesRegex(
          ValueError, 'guard.'):
        guard.Guard(_config(**overrides), 'random', _ScriptedProbe([]))


class PairedDropTest(absltest.TestCase):

  def test_golden(self):
    before = np.array([1, 1, 1, 1, 0, 0, 1, 1], bool)
    after = np.array([1, 0, 0, 1, 1, 0, 1, 1], bool)
    drop, error = guard.paired_drop(before, after)
    # 6/8 -> 5/8 right; 3 examples flipped: sqrt(3) / 8.
    self.assertAlmostEqual(drop, 12.5)
    self.assertAlmostEqual(error, 100 * np.sqrt(3) / 8)

  def test_accuracy_gap_golden(self):
    first = np.array([1, 1, 1, 0], bool)   # 3/4; rate (3.5) / 5 = 0.7.
    second = np.array([1, 0], bool)        # 1/2; rate (1.5) / 3 = 0.5.
    gap, error = guard.accuracy_gap(first, second)
    self.assertAlmostEqual(gap, 25.0)
    self.assertAlmostEqual(error, 100 * np.sqrt(0.7 * 0.3 / 4 +
                                                0.5 * 0.5 / 2))
    # All right on both sides: a gap of 0 with an error above 0.
    gap, error = guard.accuracy_gap(np.ones(10, bool), np.ones(10, bool))
    self.assertEqual(gap, 0.0)
    self.assertGreater(error, 0.0)


class NextScaleTest(absltest.TestCase):

  def test_search(self):
    # Too little forgetting: up; a collapse, over-forgetting or NaN: down.
    self.assertEqual(guard._next_scale(1.0, guard.UNDER_FORGOT, None, None,
                                       2.0), (2.0, 1.0, None))
    self.assertEqual(guard._next_scale(1.0, guard.DIVERGED, None, None, 2.0),
                     (0.5, None, 1.0))
    self.assertEqual(guard._next_scale(1.0, guard.OVER_FORGOT, None, None,
                                       2.0), (0.5, None, 1.0))
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
                            (90.0, 98.0, 89.0)])
    outcome = _run(_config(), 'random', probe, original, run_attempt)
    self.assertEqual(scales, [1.0])
    self.assertEqual(outcome.report['attempts'][0]['outcome'],
                     guard.FORGOTTEN)
    self.assertEqual(outcome.report['outcome'], guard.OUTCOME_FORGOTTEN)
    self.assertEqual(outcome.report['headline'], '')
    self.assertFalse(outcome.report['acted'])
    self.assertLen(probe.seen, 5)  # Baseline and 4 checks: never stopped.
    plain = run_attempt(guard.Attempt(1.0, 2))
    _assert_trees_equal(outcome.state.params, plain.state.params)
    # The method's time is its attempt's; the guard's, the baseline check.
    attempt = outcome.report['attempts'][0]
    self.assertEqual(outcome.report['method_seconds'],
                     attempt['seconds'] - attempt['check_seconds'])
    self.assertAlmostEqual(outcome.report['method_seconds']
                           + outcome.report['overhead_seconds'],
                           outcome.seconds)
    self.assertGreaterEqual(outcome.report['overhead_seconds'], 0.0)

  def test_each_attempt_reports_its_checks_time(self):
    original, run_attempt, _ = _setup()

    class SlowProbe(_ScriptedProbe):
      """Each check takes at least 50 ms of wall time."""

      def __call__(self, state):
        time.sleep(0.05)
        return super().__call__(state)

    probe = SlowProbe([(99.0, 99.0, 90.0)] + [(90.0, 99.0, 89.0)] * 4)
    outcome = _run(_config(), 'random', probe, original, run_attempt)
    # The attempt's 4 checks (the baseline's is not the attempt's), inside
    # the attempt's time.
    attempt = outcome.report['attempts'][0]
    self.assertGreaterEqual(attempt['check_seconds'], 0.2)
    self.assertLessEqual(attempt['check_seconds'], attempt['seconds'])

  def test_an_original_at_the_target_still_runs_the_method(self):
    original, run_attempt, scales = _setup()
    # The original generalises; the method over-forgets at every step size.
    probe = _ScriptedProbe([(90.0, 99.0, 90.0)] + [(80.0, 99.0, 90.0)] * 8)
    outcome = _run(_config(max_attempts=2), 'random', probe, original,
                   run_attempt)
    self.assertEqual(scales, [1.0, 0.5])
    self.assertEqual(outcome.report['outcome'], guard.OUTCOME_FORGOTTEN)
    self.assertIn('at the target already', outcome.report['summary'])
    _assert_trees_equal(outcome.state.params, original.params)

  def test_an_original_at_the_target_beats_a_costlier_one(self):
    original, run_attempt, scales = _setup()
    # At the target before and after, but 3 retain points poorer after.
    probe = _ScriptedProbe([(90.0, 99.0, 90.0)] + [(90.0, 96.0, 90.0)] * 4)
    outcome = _run(_config(), 'random', probe, original, run_attempt)
    self.assertEqual(scales, [1.0])
    self.assertEqual(outcome.report['outcome'], guard.OUTCOME_FORGOTTEN)
    self.assertEqual(outcome.report['kept']['attempt'], 0)
    self.assertIn('lost less', outcome.report['summary'])
    _assert_trees_equal(outcome.state.params, original.params)

  def test_over_forgetting_is_rewound_to_the_indistinguishable_check(self):
    original, run_attempt, scales = _setup()
    probe = _ScriptedProbe([
        (99.0, 99.0, 90.0),   # Baseline.
        (95.0, 99.0, 90.0),   # Step 2: short.
        (90.1, 98.0, 89.5),   # Step 4: indistinguishable.
        (84.0, 98.0, 89.5),   # Step 6: over-forgotten.
        (80.0, 98.0, 89.0),   # Step 8, the end: over-forgotten.
    ])
    outcome = _run(_config(), 'random', probe, original, run_attempt)
    self.assertEqual(scales, [1.0])
    attempt = outcome.report['attempts'][0]
    self.assertEqual(attempt['outcome'], guard.OVER_FORGOT)
    self.assertEqual(attempt['rewound_to']['step'], 4)
    self.assertEqual(outcome.report['outcome'], guard.OUTCOME_FORGOTTEN)
    _assert_trees_equal(outcome.state.params, probe.seen[2])

  def test_over_forgetting_throughout_lowers_the_step(self):
    original, run_attempt, scales = _setup()
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(80.0, 98.0, 89.0)] * 4
                           + [(90.0, 98.0, 89.0)] * 4)
    outcome = _run(_config(), 'random', probe, original, run_attempt)
    self.assertEqual(scales, [1.0, 0.5])
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.OVER_FORGOT, guard.FORGOTTEN])

  def test_a_short_run_is_lengthened_within_its_budget(self):
    original, run_attempt, scales = _setup()

    # Short of the target after 8 steps (2 epochs), at it after 16.
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(95.0, 99.0, 90.0)] * 4
                           + [(92.0, 99.0, 90.0)] * 7 + [(90.0, 99.0, 90.0)])
    outcome = _run(_config(min_steps=10, budget=1.0, check_share=1.0),
                   'random', probe, original, run_attempt, budget_steps=40.0,
                   check_steps=1.0)
    self.assertEqual(run_attempt.epochs, [2, 4])
    self.assertEqual(scales, [1.0, 1.0])
    self.assertEqual(outcome.report['outcome'], guard.OUTCOME_FORGOTTEN)
    # The baseline, 8 steps and 4 checks, then 16 steps and 8 checks.
    self.assertEqual(outcome.report['budget']['spent_steps'], 37.0)

  def test_the_budget_holds(self):
    original, run_attempt, scales = _setup()
    # Short of the target in every attempt: only what fits is run. Each
    # attempt costs 8 steps and 4 checks of 2 steps: 16; the baseline 2.
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(98.0, 99.0, 90.0)] * 40)
    outcome = _run(_config(budget=1.0, check_share=1.0), 'random', probe,
                   original, run_attempt, budget_steps=50.0, check_steps=2.0)
    self.assertEqual(scales, [1.0, 2.0, 4.0])
    budget = outcome.report['budget']
    self.assertEqual(budget['spent_steps'], 50.0)
    self.assertLessEqual(budget['spent_steps'], budget['limit_steps'])
    self.assertIn('would exceed the budget', budget['stopped'])
    self.assertEqual(outcome.report['outcome'], guard.OUTCOME_NOT_FORGOTTEN)
    self.assertTrue(outcome.report['headline'].startswith('NOT FORGOTTEN'))
    # The first attempt runs even when it alone exceeds the budget.
    original, run_attempt, scales = _setup()
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(98.0, 99.0, 90.0)] * 8)
    _run(_config(budget=1.0, check_share=1.0), 'random', probe, original,
         run_attempt, budget_steps=1.0, check_steps=2.0)
    self.assertEqual(scales, [1.0])

  def test_smallest_damaging_drop_by_hand(self):
    # 120 images, limit 2 points (2.4 examples), z = 1: d - 1 - sqrt(d)
    # is 2.55 > 2.4 at d = 6 (5.0 points), 1.76 at d = 5.
    self.assertAlmostEqual(guard.smallest_damaging_drop(120, 2.0, 1.0), 5.0)
    # 2000 images: L = 40; d = 48 gives 40.07 > 40, d = 47 39.86.
    self.assertAlmostEqual(guard.smallest_damaging_drop(2000, 2.0, 1.0), 2.4)
    # No noise allowance: the limit plus one example, plus one.
    self.assertAlmostEqual(guard.smallest_damaging_drop(1000, 2.0, 0.0), 2.2)
    self.assertIsNone(guard.smallest_damaging_drop(10, 95.0, 1.0))

  def test_budget_is_a_share_of_the_retrain_with_a_floor(self):
    config = _config(budget=0.25, min_budget_steps=100)
    self.assertEqual(guard.budget_steps(config, 1000), 250.0)
    # A small dataset: a quarter of 160 steps is 40, raised to the floor.
    self.assertEqual(guard.budget_steps(config, 160), 100.0)
    self.assertIsNone(guard.budget_steps(_config(budget=0.0), 1000))

  def test_checks_are_spaced_by_their_cost(self):
    original, run_attempt, _ = _setup()
    # A check costs 1 step; at most half the steps: 2 apart, so all four
    # points of an 8-step attempt; at most a quarter: 4 apart, two.
    for share, seen in ((0.5, [2, 4, 6, 8]), (0.25, [4, 8])):
      probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(90.0, 99.0, 90.0)] * 4)
      outcome = _run(_config(check_share=share), 'random', probe, original,
                     run_attempt, check_steps=1.0)
      self.assertEqual([c['step'] for c in outcome.report['checks'][1:]],
                       seen)
    self.assertEqual(guard._spaced([3, 6, 9, 12, 13], 5.0),
                     frozenset({6, 12, 13}))
    self.assertEqual(guard._spaced([2, 4], 100.0), frozenset({4}))

  def test_a_run_that_never_moved_is_not_lengthened(self):
    original, run_attempt, scales = _setup()

    # The original's forget accuracy at every check: stepping up, not
    # running longer, is what can help (a saturated softmax).
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] * 9)
    _run(_config(min_steps=10, max_attempts=2), 'random', probe, original,
         run_attempt)
    self.assertEqual(run_attempt.epochs, [2, 2])
    # It never moved: the step grows by lr_factor squared.
    self.assertEqual(scales, [1.0, 4.0])

  def test_collapse_is_retried_then_rewound_to_the_best_check(self):
    original, run_attempt, scales = _setup()
    probe = _ScriptedProbe([
        (99.0, 99.0, 90.0),   # Baseline.
        (95.0, 99.0, 90.0),   # Attempt 1, step 2: the best undamaged check.
        (93.0, 80.0, 90.0),   # Then damaged to the end; attempt 2 too.
    ])
    outcome = _run(_config(max_attempts=2), 'random', probe, original,
                   run_attempt)
    self.assertEqual(scales, [1.0, 0.5])
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.COLLAPSED, guard.COLLAPSED])
    kept = outcome.report['kept']
    self.assertEqual((kept['attempt'], kept['step']), (1, 2))
    self.assertIn('rewound to attempt 1', outcome.report['summary'])
    self.assertTrue(outcome.report['acted'])
    self.assertEqual(outcome.report['outcome'], guard.OUTCOME_NOT_FORGOTTEN)
    _assert_trees_equal(outcome.state.params, probe.seen[1])

  def test_forgotten_then_damaged_is_rewound_without_a_retry(self):
    original, run_attempt, scales = _setup()
    probe = _ScriptedProbe([
        (99.0, 99.0, 90.0),   # Baseline.
        (96.0, 99.0, 90.0),   # Step 2.
        (90.0, 98.0, 89.0),   # Step 4: forgotten: 0+1+1.
        (90.0, 98.0, 89.5),   # Step 6: forgotten, the best: 0+1+.5.
        (80.0, 80.0, 70.0),   # Step 8, the end: damaged.
    ])
    outcome = _run(_config(), 'random', probe, original, run_attempt)
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
      _run(_config(max_attempts=3), 'random', probe, original, run_attempt)
    self.assertEqual(scales, [1.0, 0.5, 0.25])

  def test_diverged_attempts_are_rewound_to_their_best_check(self):
    # Gradient ascent on a large forget set: forget and held-out accuracy
    # fall together, then the loss overflows in every attempt.
    original, run_attempt, scales = _setup()

    def diverge_at_the_end(settings, monitor=None):
      run_attempt(settings, monitor)  # Its 4 checks, then a NaN.
      raise train.DivergenceError('forget_ce became nan')

    probe = _ScriptedProbe([(99.0, 99.0, 90.0),                   # Base.
                            (97.0, 99.0, 90.0), (96.0, 99.0, 90.0),  # Best.
                            (80.0, 60.0, 60.0), (80.0, 60.0, 60.0)]
                           + [(80.0, 60.0, 60.0)] * 8)
    outcome = _run(_config(max_attempts=3), 'random', probe, original,
                   diverge_at_the_end)
    self.assertEqual(scales, [1.0, 0.5, 0.25])
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.DIVERGED] * 3)
    kept = outcome.report['kept']
    self.assertEqual((kept['attempt'], kept['step']), (1, 4))
    _assert_trees_equal(outcome.state.params, probe.seen[2])

  def test_nothing_better_keeps_the_original_loudly(self):
    original, run_attempt, _ = _setup()
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(90.0, 70.0, 60.0)] * 20)
    outcome = _run(_config(max_attempts=2), 'random', probe, original,
                   run_attempt)
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.COLLAPSED] * 2)
    # Nothing undamaged but the original: it is handed on, with a report.
    self.assertEqual(outcome.report['kept']['attempt'], 0)
    self.assertIn('kept the original', outcome.report['summary'])
    self.assertEqual(outcome.report['outcome'], guard.OUTCOME_KEPT_ORIGINAL)
    self.assertTrue(outcome.report['headline'].startswith(
        'NOT FORGOTTEN: kept the original model'))
    self.assertIsNone(outcome.result)
    _assert_trees_equal(outcome.state.params, original.params)
    # No attempt kept: all of the run time was the guard's.
    self.assertEqual(outcome.report['method_seconds'], 0.0)
    self.assertEqual(outcome.report['overhead_seconds'], outcome.seconds)

  def test_a_diverged_attempt_is_retried_with_a_smaller_step(self):
    original, run_attempt, scales = _setup()

    def diverge_at_full_step(settings, monitor=None):
      if settings.lr_scale >= 1.0:
        scales.append(settings.lr_scale)
        raise train.DivergenceError('loss became nan')
      return run_attempt(settings, monitor)

    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(90.0, 99.0, 90.0)] * 4)
    outcome = _run(_config(), 'random', probe, original,
                   diverge_at_full_step)
    self.assertEqual(scales, [1.0, 0.5])
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.DIVERGED, guard.FORGOTTEN])
    self.assertEqual(outcome.report['kept']['attempt'], 2)
    _assert_trees_equal(outcome.state.params, probe.seen[-1])

  def test_too_little_forgetting_raises_the_step(self):
    original, run_attempt, scales = _setup()
    # A fifth of the way from 99 to 90, twice, then there.
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(97.0, 99.0, 90.0)] * 8
                           + [(90.0, 99.0, 90.0)] * 4)
    outcome = _run(_config(), 'random', probe, original, run_attempt)
    self.assertEqual(scales, [1.0, 2.0, 4.0])
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.UNDER_FORGOT, guard.UNDER_FORGOT,
                      guard.FORGOTTEN])

  def test_bisects_between_too_little_and_too_much(self):
    original, run_attempt, scales = _setup()
    probe = _ScriptedProbe([(99.0, 99.0, 90.0)] + [(97.0, 99.0, 90.0)] * 4
                           + [(80.0, 50.0, 60.0)] * 4
                           + [(90.0, 99.0, 90.0)] * 4)
    outcome = _run(_config(), 'random', probe, original, run_attempt)
    self.assertEqual(scales[:2], [1.0, 2.0])
    self.assertAlmostEqual(scales[2], np.sqrt(2.0))
    self.assertEqual([a['outcome'] for a in outcome.report['attempts']],
                     [guard.UNDER_FORGOT, guard.COLLAPSED, guard.FORGOTTEN])

  def test_attempts_share_compiled_programs(self):
    # The learning rate is optimizer state (optim.lr_scale): a second
    # attempt at another step size compiles nothing new.
    original, _, _ = _setup()
    n = 64
    images, labels = test_util.tiny_images(n), test_util.tiny_labels(n)
    data = {'retain': host_batches.split_data(images, labels)}
    ctx = base.Context(num_classes=4, epochs=1,
                       steps_per_epoch={'retain': n // _BATCH},
                       batch_size={'retain': _BATCH}, init_variables=None,
                       iterate=None)
    method = finetune.make(ml_collections.ConfigDict({'augment': False}),
                           ctx)
    tx = optax.chain(optim.make_optimizer(ml_collections.ConfigDict(
        {'name': 'sgd', 'lr': 0.05, 'momentum': 0.9}), 4, 1), optim.lr_scale())
    cache, finals = {}, []
    for scale in (1.0, 2.0):
      start = original.with_optimizer(tx)
      start = start.replace(opt_state=optim.set_lr_scale(start.opt_state,
                                                         scale))
      finals.append(train.run(
          method, start, data, epochs=1, batch_size={'retain': _BATCH},
          seed=0, prep=_PREP, mesh=parallel.make_mesh(1),
          compile_cache=cache).state.params)
      self.assertLen(cache, 1)
    # The same program, another step: different weights.
    self.assertFalse(all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(finals[0]), jax.tree.leaves(finals[1]))))


class BalanceKnobTest(absltest.TestCase):

  def test_tilts_by_hand(self):
    # NegGrad+: the ascent weight 1 - alpha times the strength, in [0, 1].
    self.assertAlmostEqual(neggrad_plus.BALANCE.tilt(0.97, 2.0), 0.94)
    self.assertAlmostEqual(neggrad_plus.BALANCE.tilt(0.97, 0.5), 0.985)
    self.assertEqual(neggrad_plus.BALANCE.tilt(0.6, 4.0), 0.0)
    # RL, SalUn, SCRUB: the repair weights divided by it.
    self.assertEqual(random_label.BALANCE.tilt(1.0, 2.0), 0.5)
    self.assertIs(salun.BALANCE, random_label.BALANCE)
    self.assertEqual(scrub.BALANCE.fields, ('alpha', 'gamma'))
    for balance in (neggrad_plus.BALANCE, random_label.BALANCE):
      self.assertAlmostEqual(balance.tilt(0.8, 1.0), 0.8)

  def test_a_stronger_attempt_moves_the_knob(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = test_util.smoke_config(tmp)
      config.split.mode = 'class_wise'
      config.split.forget_classes = (1,)
      config.method = default.method_config('neggrad_plus', 'class_wise',
                                            smoke=True)
      config.method.optim.lr = 1e-9  # Forgets nothing: the search steps up.
      config.guard.update(budget=0.0, max_attempts=2, min_steps=0)
      report = pipeline.run(config, f'{tmp}/w')
    attempts = report['guard']['attempts']
    # It never moved: the strength grows by lr_factor squared.
    self.assertEqual([a['lr_scale'] for a in attempts], [1.0, 4.0])
    alpha = config.method.alpha
    self.assertEqual(attempts[0]['knob'], {'alpha': alpha})
    self.assertAlmostEqual(attempts[1]['knob']['alpha'],
                           max(0.0, 1.0 - 4.0 * (1.0 - alpha)))


class LrScaleTest(absltest.TestCase):

  def test_is_a_learning_rate_change(self):
    params = {'w': np.array([1.0, -2.0], np.float32)}
    grads = {'w': np.array([0.5, 0.25], np.float32)}
    for name in ('sgd', 'adam'):
      config = ml_collections.ConfigDict(
          {'name': name, 'lr': 0.1, 'momentum': 0.9, 'weight_decay': 0.01})
      scaled = optax.chain(optim.make_optimizer(config, 1, 1),
                           optim.lr_scale())
      config.lr = 0.3
      plain = optim.make_optimizer(config, 1, 1)
      state = optim.set_lr_scale(scaled.init(params), 3.0)
      plain_state = plain.init(params)
      for _ in range(3):
        updates, state = scaled.update(grads, state, params)
        expected, plain_state = plain.update(grads, plain_state, params)
        np.testing.assert_allclose(updates['w'], expected['w'], rtol=1e-6)


if __name__ == '__main__':
  absltest.main()
