"""Tuning with the retrain oracle (mu_jax/tune.py) on the smoke config."""

import copy
import dataclasses
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest

from configs import tune as tune_config
from mu_jax import experiment
from mu_jax import splits as splits_lib
from mu_jax import tune


class GridTest(absltest.TestCase):

  def test_default_first_then_the_grid_within_budget(self):
    config = tune_config.get_config()
    base = config.method  # finetune: no knob of its own.
    grid = tune._grid(config.tune, 'finetune', base, seed=0)
    self.assertEqual(grid[0], {'lr_factor': 1.0, 'epoch_factor': 1.0})
    self.assertLen(grid, 15)  # 5 learning rates x 3 epoch counts.
    config.tune.budget = 6
    small = tune._grid(config.tune, 'finetune', base, seed=0)
    self.assertLen(small, 6)
    self.assertEqual(small[0], grid[0])
    self.assertEqual(small, tune._grid(config.tune, 'finetune', base, 0))
    # A method's own knob joins the grid; its default value is kept.
    from configs import default  # pylint: disable=g-import-not-at-top
    salun = default.method_config('salun')
    config.tune.budget = 100
    grid = tune._grid(config.tune, 'salun', salun, seed=0)
    self.assertEqual(grid[0]['mask_ratio'], salun.mask_ratio)
    self.assertLen(grid, 1 + 5 * 3 * 3)

  def test_apply_trial(self):
    from configs import default  # pylint: disable=g-import-not-at-top
    base = default.method_config('scrub')
    section = tune.apply_trial(base, {'lr_factor': 2.0, 'epoch_factor': 0.5,
                                      'msteps': 3})
    self.assertAlmostEqual(section.optim.lr, 2 * base.optim.lr)
    self.assertEqual(section.epochs, round(base.epochs / 2))
    self.assertEqual(section.msteps, 3)
    self.assertNotEqual(base.msteps, 3)  # A copy.


class RunTest(absltest.TestCase):

  def test_the_search_never_reads_the_test_set(self):
    # Every evaluation on the tuning seed scores the validation slice; the
    # test set is read on the evaluation seeds only, which forget other
    # classes class-wise.
    seen = []
    real = experiment.Experiment.evaluate

    def spy(exp, state, split, desc='eval'):
      seen.append((exp.config.seed, tuple(exp.config.split.forget_classes),
                   split))
      return real(exp, state, split, desc)

    with tempfile.TemporaryDirectory() as tmp:
      config = tune_config.get_config('smoke')
      config.checkpoint_dir = f'{tmp}/checkpoints'
      config.tune.modes = 'class_wise'
      config.tune.budget = 2
      with mock.patch.object(experiment.Experiment, 'evaluate', spy):
        out = tune.run(config, f'{tmp}/tune')
      setting = copy.deepcopy(config)
      setting.split.mode = 'class_wise'
      real_split = experiment.make_split(setting,
                                         experiment.setup(setting)[0])
    on_tuning_seed = [s for seed, _, s in seen if seed == config.seed]
    self.assertNotEmpty(on_tuning_seed)
    for split in on_tuning_seed:
      np.testing.assert_array_equal(split.test, real_split.val)
      self.assertEmpty(np.intersect1d(split.test, real_split.test))
    evaluation = [(seed, classes) for seed, classes, _ in seen
                  if seed != config.seed]
    self.assertNotEmpty(evaluation)
    for seed, classes in evaluation:
      self.assertNotEqual(classes, tuple(config.split.forget_classes))
    held_out = out['held_out']['class_wise']
    self.assertEqual(held_out['tuned_on']['scored_on'], 'validation slice')
    self.assertIn('validation slice', out['table'])

  def test_validation_view_swaps_test_and_val(self):
    split = splits_lib.Split(mode='random', seed=0, forget=[0], retain=[1, 2],
                             test=[0, 1, 2], forget_test=[],
                             forget_classes=(), val=[3, 4])
    view = tune.validation_view(split)
    np.testing.assert_array_equal(view.test, [3, 4])
    np.testing.assert_array_equal(view.val, [0, 1, 2])
    with self.assertRaisesRegex(ValueError, 'val_fraction'):
      tune.validation_view(dataclasses.replace(split, test=[0, 1, 2, 3, 4],
                                               val=[]))

  def test_smoke_tuning_picks_the_best_trial_and_resumes(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = tune_config.get_config('smoke')
      config.checkpoint_dir = f'{tmp}/checkpoints'
      out = tune.run(config, f'{tmp}/tune')
      result = out['results']['random']['neggrad']
      gaps = [t['metrics']['avg_gap'] for t in result['trials']
              if t['status'] == 'ok']
      self.assertLen(result['trials'], 3)  # The default and 2 learning rates.
      best = min(result['trials'], key=lambda t: t['metrics']['avg_gap'])
      self.assertEqual(result['best_trial'], best['trial'])
      self.assertEqual(best['metrics']['avg_gap'], min(gaps))
      for label in ('default', 'tuned'):
        runs = result['evaluation'][label]
        self.assertLen(runs, 1)  # Seed 1: never the tuning seed.
        self.assertEqual(runs[0]['status'], 'ok')
      self.assertIn('### neggrad', out['table'])
      # Resumed: every trial and evaluation comes from the store.
      with mock.patch.object(tune._Setting, 'run',
                             side_effect=AssertionError('not resumed')):
        again = tune.run(config, f'{tmp}/tune')
      self.assertEqual(again['results']['random']['neggrad']['best_trial'],
                       result['best_trial'])


if __name__ == '__main__':
  absltest.main()
