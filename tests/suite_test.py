"""The benchmark suite's control flow on a tiny dataset (mu_jax/suite.py,
suite_store.py, suite_report.py).

Aggregation by hand, the table, the plan, resume after a kill, failure
isolation and the files a run writes. The data is a 96-image synthetic npz
and the model a width-4 CNN, so a whole suite takes seconds.
"""

import importlib
import json
import os
import subprocess
import sys
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest

from configs import suite as suite_config
from mu_jax import errors
from mu_jax import methods
from mu_jax import suite
from mu_jax import suite_report
from mu_jax import suite_store
from mu_jax import unlearning as unlearn_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_tiny_npz(path: str):
  """96 train / 48 test 8x8 images of 4 classes, each class its own shade."""
  rng = np.random.default_rng(0)
  arrays = {}
  for split, n in (('train', 96), ('test', 48)):
    labels = np.arange(n) % 4
    images = rng.integers(0, 60, (n, 8, 8, 1)) + 60 * labels[:, None, None,
                                                             None]
    arrays[f'{split}_images'] = images.astype(np.uint8)
    arrays[f'{split}_labels'] = labels.astype(np.int32)
  np.savez(path, **arrays)


def tiny_config(tmp: str, methods_list: str = 'finetune,neggrad',
                modes: str = 'random', seeds: int = 2):
  """configs/suite.py:smoke shrunk to seconds, with checkpoints under tmp."""
  _write_tiny_npz(f'{tmp}/tiny.npz')
  config = suite_config.get_config('smoke')
  config.checkpoint_dir = f'{tmp}/checkpoints'
  config.data.name, config.data.source = 'tiny', 'npz'
  config.data.path = f'{tmp}/tiny.npz'
  config.data.max_train = config.data.max_test = 0
  config.model.width = 4
  config.train.batch_size = 16
  config.eval.batch_size = 32
  config.method.batch_size = 8
  config.split.forget_num = 16
  config.split.forget_classes = (1,)
  config.suite.methods = methods_list
  config.suite.modes = modes
  config.suite.seeds = seeds
  config.suite.plots = False
  config.suite.curve_samples = config.suite.cka_samples = 16
  config.suite.tsne_samples = 12
  for section in (s for mode in config.suite.method_configs.values()
                  for s in mode.values()):
    section.batch_size = 8
    section.forget_batch_size = section.retain_batch_size = 0
  return config


def _cell(seed, status='ok', **metrics):
  if status == 'failed':
    return {'seed': seed, 'status': 'failed', 'error': 'ValueError: boom'}
  return {'seed': seed, 'status': 'ok', 'seconds': metrics.pop('seconds'),
          'metrics': metrics}


class AggregationTest(absltest.TestCase):

  def test_mean_and_sample_std_by_hand(self):
    cells = [_cell(0, unlearn_acc=1.0, retain_acc=99.0, seconds=10.0),
             _cell(1, unlearn_acc=2.0, retain_acc=97.0, seconds=12.0),
             _cell(2, unlearn_acc=6.0, retain_acc=98.0, seconds=14.0)]
    out = suite.summarize(cells)
    self.assertEqual((out['n'], out['seeds'], out['failed']),
                     (3, [0, 1, 2], []))
    self.assertAlmostEqual(out['mean']['unlearn_acc'], 3.0)
    # Deviations -2, -1, 3: sum of squares 14, over n - 1 = 2.
    self.assertAlmostEqual(out['std']['unlearn_acc'], np.sqrt(7.0))
    self.assertAlmostEqual(out['mean']['retain_acc'], 98.0)
    self.assertAlmostEqual(out['std']['retain_acc'], 1.0)
    self.assertAlmostEqual(out['mean']['seconds'], 12.0)
    self.assertAlmostEqual(out['std']['seconds'], 2.0)

  def test_failed_seeds_are_left_out_and_listed(self):
    out = suite.summarize([_cell(0, avg_gap=4.0, seconds=1.0),
                           _cell(1, status='failed')])
    self.assertEqual(out['n'], 1)
    self.assertEqual(out['failed'], [{'seed': 1,
                                      'error': 'ValueError: boom'}])
    self.assertEqual(out['std']['avg_gap'], 0.0)  # One seed: no spread.
    self.assertEqual(suite.summarize([_cell(0, status='failed')])['mean'], {})

  def test_table_in_the_salun_format(self):
    summary = {
        'retrain': suite.summarize([
            _cell(0, unlearn_acc=5.0, retain_acc=100.0, test_acc=94.0,
                  mia_efficacy=12.0, avg_gap=0.0, seconds=60.0),
            _cell(1, unlearn_acc=6.0, retain_acc=100.0, test_acc=94.5,
                  mia_efficacy=13.0, avg_gap=0.0, seconds=62.0)]),
        'salun': suite.summarize([
            _cell(0, unlearn_acc=3.0, retain_acc=99.5, test_acc=93.0,
                  mia_efficacy=14.0, avg_gap=1.5, seconds=3.0),
            _cell(1, status='failed')]),
        'neggrad': suite.summarize([_cell(0, status='failed')])}
    lines = suite.format_table(summary, ['retrain', 'salun', 'neggrad',
                                         'scrub']).splitlines()
    self.assertEqual(lines[0], '| Method | UA | RA | TA | MIA-Efficacy | '
                     'Avg. Gap | RTE (s) |')
    self.assertEqual(lines[2], '| Retrain | 5.50 ± 0.71 | 100.00 ± 0.00 | '
                     '94.25 ± 0.35 | 12.50 ± 0.71 | 0.00 ± 0.00 | '
                     '61.0 ± 1.4 |')
    self.assertStartsWith(lines[3], '| SalUn (1/2 seeds) | 3.00 ± 0.00 |')
    self.assertEqual(lines[4], '| GA (0/1 seeds) | failed (1/1 seeds) | — | '
                     '— | — | — | — |')
    self.assertLen(lines, 5)  # scrub has no cells: no row.

  def test_paired_comparison_by_hand(self):
    # SalUn is best (mean 1.0). SCRUB's differences 1, 2, 3: mean 2, sd 1,
    # half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.484138:
    # [-0.484, 4.484], within noise. The original's differences 5, 6, 7:
    # the same width around 6, so the ranking holds.
    cells = {
        'retrain': [_cell(s, avg_gap=0.0, seconds=1.0) for s in range(3)],
        'original': [_cell(s, avg_gap=g, seconds=1.0)
                     for s, g in enumerate((6.0, 6.0, 8.0))],
        'salun': [_cell(s, avg_gap=g, seconds=1.0)
                  for s, g in enumerate((1.0, 0.0, 1.0))],
        'scrub': [_cell(s, avg_gap=g, seconds=1.0)
                  for s, g in enumerate((2.0, 2.0, 4.0))],
        'neggrad': [_cell(0, avg_gap=9.0, seconds=1.0),
                    _cell(1, status='failed')]}
    rows = {r['model']: r for r in suite_report.paired_comparison(
        cells, ['retrain', 'original', 'salun', 'scrub', 'neggrad'])}
    self.assertEqual(set(rows), {'original', 'scrub', 'neggrad'})
    scrub = rows['scrub']
    self.assertEqual((scrub['best'], scrub['n']), ('salun', 3))
    self.assertAlmostEqual(scrub['mean'], 2.0)
    self.assertAlmostEqual(scrub['low'], 2.0 - 2.484138, places=5)
    self.assertAlmostEqual(scrub['high'], 2.0 + 2.484138, places=5)
    self.assertFalse(scrub['holds'])
    self.assertAlmostEqual(rows['original']['low'], 6.0 - 2.484138,
                           places=5)
    self.assertTrue(rows['original']['holds'])
    # One paired seed: a difference, no interval.
    self.assertEqual((rows['neggrad']['n'], rows['neggrad']['low'],
                      rows['neggrad']['holds']), (1, None, False))
    table = suite_report.format_comparison(
        suite_report.paired_comparison(cells, ['salun', 'scrub']))
    self.assertIn('| SCRUB | 3 | +2.00 | [-0.48, 4.48] | within noise |',
                  table)

  def test_cells_short_of_the_target_are_named(self):
    cells = {'finetune': [
        {'seed': 0, 'guard': {'outcome': 'forgotten'}},
        {'seed': 1, 'guard': {'outcome': 'not_forgotten'}},
        {'seed': 2, 'guard': {'outcome': 'kept_original'}}],
             'salun': [{'seed': 0, 'guard': {'enabled': False}}]}
    self.assertEqual(
        suite_report._unmet(cells, ['finetune', 'salun']),
        ['FT: seeds 1 (not_forgotten), 2 (kept_original)'])

  def test_title_says_when_seeds_are_missing(self):
    model = suite_config.get_config('smoke').model.name
    info = {'forget': 10, 'retain': 90, 'forget_classes': [0]}
    self.assertEndsWith(
        suite_report.title('class_wise', info, dataset='tiny', model=model,
                           seeds=3, seeds_done=2),
        'tiny, cnn, 2 of 3 seeds')
    self.assertEndsWith(
        suite_report.title('class_wise', info, dataset='tiny', model=model,
                           seeds=3, seeds_done=3),
        'cnn, 3 seeds')


class PlanTest(absltest.TestCase):

  def test_defaults_every_method_but_retrain(self):
    config = suite_config.get_config('smoke')
    names, modes, seeds = suite.plan(config)
    self.assertCountEqual(names, [m for m in methods.AVAILABLE
                                  if m != 'retrain'])
    self.assertEqual(names[0], 'finetune')  # The SalUn paper's order.
    self.assertEqual(modes, ['random', 'class_wise'])
    self.assertEqual(seeds, [0, 1])

  def test_lists_aliases_and_bad_names(self):
    config = suite_config.get_config('smoke')
    config.suite.methods = 'salUN, retrain,FT'
    config.suite.modes = 'classwise'
    config.seed, config.suite.seeds = 5, 3
    self.assertEqual(suite.plan(config),
                     (['salun', 'finetune'], ['class_wise'], [5, 6, 7]))
    config.suite.methods = 'nope'
    with self.assertRaisesRegex(ValueError, 'unknown method'):
      suite.plan(config)
    config.suite.methods, config.suite.modes = '', 'sideways'
    with self.assertRaisesRegex(ValueError, 'unknown mode'):
      suite.plan(config)

  def test_bad_modes_and_seeds_are_config_errors(self):
    config = suite_config.get_config('smoke')
    for modes, seeds, message in (('sideways', 2, 'unknown mode'),
                                  (' , ', 2, 'modes is empty'),
                                  ('random', 0, 'seeds=0; run at least 1')):
      config.suite.modes, config.suite.seeds = modes, seeds
      with self.assertRaisesRegex(errors.ConfigError, message):
        suite.plan(config)

  def test_every_method_has_a_section_per_mode(self):
    config = suite_config.get_config()
    for mode in ('random', 'class_wise'):
      for name in methods.AVAILABLE:
        if name != 'retrain':
          section = config.suite.method_configs[mode][name]
          self.assertEqual(section.name, name)
    # configs/<name>.py:class_wise where a method has one.
    from configs import neggrad  # pylint: disable=g-import-not-at-top
    self.assertEqual(
        config.suite.method_configs.class_wise.neggrad.optim.lr,
        neggrad.get_config('class_wise').method.optim.lr)
    self.assertEqual(config.suite.method_configs.random.neggrad.optim.lr,
                     neggrad.get_config().method.optim.lr)

  def test_class_wise_sections_are_the_class_wise_variants(self):
    config = suite_config.get_config()
    sections = config.suite.method_configs
    for name in ('neggrad', 'neggrad_plus', 'scrub'):
      module = importlib.import_module(f'configs.{name}')
      class_wise = module.get_config('class_wise').method
      self.assertEqual(sections.class_wise[name].to_dict(),
                       class_wise.to_dict(), name)
      self.assertNotEqual(sections.random[name].to_dict(),
                          class_wise.to_dict(), name)
    # The settings that keep them from diverging or over-forgetting.
    self.assertEqual((sections.class_wise.neggrad_plus.alpha,
                      sections.class_wise.neggrad_plus.optim.lr), (0.97, 0.01))
    self.assertEqual(sections.class_wise.scrub.msteps, 2)

  def test_guard_both_adds_an_unguarded_row_per_method(self):
    config = suite_config.get_config('smoke')
    config.suite.methods = 'salun,FT'
    config.suite.guard = 'both'
    self.assertEqual(suite.plan(config)[0], [
        'salun', 'salun-unguarded', 'finetune', 'finetune-unguarded'])
    # A method whose code changed: both its rows rerun.
    config.suite.rerun = 'salun'
    self.assertEqual(suite.rerun_set(config),
                     {'salun', 'salun-unguarded'})
    self.assertEqual(suite_report.labels()['salun-unguarded'],
                     'SalUn (unguarded)')
    config.suite.guard = 'sometimes'
    with self.assertRaisesRegex(errors.ConfigError, "suite.guard='sometimes'"):
      suite.plan(config)
    # Guarded random-mode rows need held-out images (the paper protocol has
    # none): refused before anything runs.
    config.suite.guard, config.split.val_fraction = 'both', 0.0
    with self.assertRaisesRegex(errors.ConfigError, 'val_fraction=0.2'):
      suite.plan(config)

  def test_sections_per_mode_are_required(self):
    config = suite_config.get_config('smoke')
    # The layout that once gave class-wise cells the random settings.
    config.suite.method_configs = config.suite.method_configs.random
    with self.assertRaisesRegex(errors.ConfigError,
                                "no 'random' section.*neggrad"):
      suite.plan(config)
    config = suite_config.get_config('smoke')
    del config.suite.method_configs.class_wise['scrub']
    with self.assertRaisesRegex(errors.ConfigError,
                                'class_wise has no section for scrub'):
      suite.plan(config)
    config.suite.modes = 'random'  # Only the modes that run need one.
    suite.plan(config)


class _CountingUnlearn:
  """Wraps unlearning.unlearn; raises KeyboardInterrupt at call `kill_at`."""

  def __init__(self, kill_at=None):
    self.calls, self.kill_at = [], kill_at
    self._real = unlearn_lib.unlearn

  def __call__(self, exp, *args, **kwargs):
    self.calls.append((exp.config.split.mode, exp.config.seed,
                       exp.config.method.name))
    if len(self.calls) == self.kill_at:
      raise KeyboardInterrupt  # Like Ctrl-C or a kill: not a method error.
    return self._real(exp, *args, **kwargs)


class SuiteRunTest(absltest.TestCase):

  def test_run_then_kill_and_resume(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = tiny_config(tmp)
      killed = _CountingUnlearn(kill_at=3)
      with mock.patch.object(unlearn_lib, 'unlearn', killed):
        with self.assertRaises(KeyboardInterrupt):
          suite.run(config, f'{tmp}/w')
      self.assertFalse(os.path.exists(f'{tmp}/w/report.json'))
      # report_only: a report of the finished cells, nothing run.
      config.suite.report_only = True
      idle = _CountingUnlearn()
      with mock.patch.object(unlearn_lib, 'unlearn', idle):
        partial = suite.run(config, f'{tmp}/w')
      self.assertEqual(idle.calls, [])
      self.assertEqual((partial['summary']['random']['finetune']['n'],
                        partial['summary']['random']['neggrad']['n']), (1, 1))
      config.suite.report_only = False
      resumed = _CountingUnlearn()
      with mock.patch.object(unlearn_lib, 'unlearn', resumed):
        result = suite.run(config, f'{tmp}/w')
      # Cells 1 and 2 were finished before the kill; 3 and 4 run now.
      self.assertEqual(killed.calls[:2], [('random', 0, 'finetune'),
                                          ('random', 0, 'neggrad')])
      self.assertEqual(resumed.calls, [('random', 1, 'finetune'),
                                       ('random', 1, 'neggrad')])
      with open(f'{tmp}/w/report.json') as f:
        report = json.load(f)
      summary = report['summary']['random']
      for model in ('original', 'retrain', 'finetune', 'neggrad'):
        self.assertEqual(summary[model]['n'], 2, model)
        for metric in ('unlearn_acc', 'retain_acc', 'test_acc',
                       'mia_efficacy', 'avg_gap', 'seconds'):
          self.assertIn(metric, summary[model]['mean'])
      self.assertEqual(summary['retrain']['mean']['avg_gap'], 0.0)
      self.assertEqual(report['failures'], [])
      self.assertIn('| FT |', result['table'])
      # Multi-seed training made both seeds' models in one program each.
      seeds_together = {v.get('seeds') for v in report['models'].values()}
      self.assertEqual(seeds_together, {2})
      # A third run has nothing left to do and reports the same numbers.
      idle = _CountingUnlearn()
      with mock.patch.object(unlearn_lib, 'unlearn', idle):
        again = suite.run(config, f'{tmp}/w')
      self.assertEqual(idle.calls, [])
      self.assertEqual(again['summary'], report['summary'])

  def test_failing_method_is_recorded_and_the_rest_runs(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = tiny_config(tmp, 'neggrad,finetune', seeds=1)
      config.suite.method_configs.random.neggrad.optim.lr = 1e30  # Diverges.
      config.guard.enabled = False  # As configured: no step-size retries.
      result = suite.run(config, f'{tmp}/w')
      self.assertLen(result['failures'], 1)
      failure = result['failures'][0]
      self.assertEqual((failure['model'], failure['seed']), ('neggrad', 0))
      self.assertIn('DivergenceError', failure['error'])
      self.assertIn('diverged', failure['error'])
      summary = result['summary']['random']
      self.assertEqual((summary['neggrad']['n'], summary['finetune']['n']),
                       (0, 1))
      self.assertIn('| GA (0/1 seeds) | failed (1/1 seeds) |',
                    result['table'])
      with open(f'{tmp}/w/cells/random/s0/neggrad.json') as f:
        self.assertIn('Traceback', json.load(f)['traceback'])
      with open(f'{tmp}/w/results.md') as f:
        self.assertIn('## Failures', f.read())
      # Not retried when asked so; retried (and fixed) with a new setting.
      config.suite.retry_failed = False
      calls = _CountingUnlearn()
      with mock.patch.object(unlearn_lib, 'unlearn', calls):
        suite.run(config, f'{tmp}/w')
      self.assertEqual(calls.calls, [])
      config.suite.method_configs.random.neggrad.optim.lr = 1e-3
      result = suite.run(config, f'{tmp}/w')
      self.assertEqual(result['failures'], [])
      # Named in suite.rerun (e.g. after a code change): run again.
      config.suite.rerun = 'FT'
      calls = _CountingUnlearn()
      with mock.patch.object(unlearn_lib, 'unlearn', calls):
        suite.run(config, f'{tmp}/w')
      self.assertEqual(calls.calls, [('random', 0, 'finetune')])
      config.suite.rerun = 'nope'
      with self.assertRaisesRegex(ValueError, 'unknown method'):
        suite.run(config, f'{tmp}/w')

  def test_forgetting_quality_column(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = tiny_config(tmp, 'finetune', seeds=1)
      config.suite.forgetting_quality_models = 2
      result = suite.run(config, f'{tmp}/w')
      with open(f'{tmp}/w/cells/random/s0/finetune.json') as f:
        cell = json.load(f)
      self.assertEqual(cell['forgetting_quality']['models'], 2)
      self.assertBetween(cell['metrics']['forgetting_quality'], 0.0, 1.0)
      header = result['table'].split('\n')[2]
      self.assertIn('| F | Score |', header)

  def test_guarded_and_unguarded_side_by_side(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = tiny_config(tmp, 'finetune', seeds=1)
      config.guard.allow_unmet = True
      config.suite.guard = 'both'
      result = suite.run(config, f'{tmp}/w')
      cells = {}
      for row in ('finetune', 'finetune-unguarded'):
        with open(f'{tmp}/w/cells/random/s0/{row}.json') as f:
          cells[row] = json.load(f)
      guarded = cells['finetune']['guard']
      self.assertTrue(guarded['enabled'])
      self.assertAlmostEqual(
          guarded['method_seconds'] + guarded['overhead_seconds'],
          cells['finetune']['seconds'], places=6)
      self.assertEqual(cells['finetune-unguarded']['guard'],
                       {'enabled': False})
      lines = result['table'].splitlines()
      header = next(line for line in lines if line.startswith('| Method'))
      self.assertIn('| RTE (s) | of which guard (s) |', header)
      unguarded = next(line for line in lines
                       if line.startswith('| FT (unguarded) |'))
      self.assertTrue(unguarded.endswith('| — |'))  # No guard, no share.

  def test_each_mode_runs_with_its_own_method_config(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = tiny_config(tmp, 'neggrad', modes='random,class_wise',
                           seeds=1)
      config.suite.method_configs.random.neggrad.optim.lr = 2e-3
      config.suite.method_configs.class_wise.neggrad.optim.lr = 3e-4
      seen = []
      real = unlearn_lib.unlearn

      def recording_unlearn(exp, *args, **kwargs):
        seen.append((exp.config.split.mode, exp.config.method.optim.lr))
        return real(exp, *args, **kwargs)

      with mock.patch.object(unlearn_lib, 'unlearn', recording_unlearn):
        suite.run(config, f'{tmp}/w')
      self.assertEqual(seen, [('random', 2e-3), ('class_wise', 3e-4)])
      for mode, lr in (('random', 2e-3), ('class_wise', 3e-4)):
        with open(f'{tmp}/w/cells/{mode}/s0/neggrad.json') as f:
          self.assertEqual(json.load(f)['method_config']['optim']['lr'], lr)
      # A new class-wise setting reruns the class-wise cell only.
      config.suite.method_configs.class_wise.neggrad.optim.lr = 1e-4
      seen.clear()
      with mock.patch.object(unlearn_lib, 'unlearn', recording_unlearn):
        suite.run(config, f'{tmp}/w')
      self.assertEqual(seen, [('class_wise', 1e-4)])

  def test_both_modes_with_plots_and_sequential_training(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = tiny_config(tmp, 'finetune', modes='random,class_wise',
                           seeds=1)
      config.suite.plots = True
      config.suite.multiseed = False
      result = suite.run(config, f'{tmp}/w')
      self.assertEqual(result['models'], {})  # Trained by the pipeline.
      for mode in ('random', 'class_wise'):
        written = sorted(os.path.basename(p) for p in result['plots'][mode])
        self.assertEqual(written, sorted(
            f'{kind}_{mode}.png'
            for kind in ('bars', 'curves', 'tsne', 'cka', 'cka_layers')))
        for path in result['plots'][mode]:
          with open(os.path.join(f'{tmp}/w', path), 'rb') as f:
            self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')
      retrain = result['summary']['class_wise']['retrain']['mean']
      self.assertEqual(retrain['forget_acc'], 0.0)  # Never saw class 1.
      self.assertIn('Class-wise forgetting: class 1', result['table'])
      with open(f'{tmp}/w/cells/random/s0/finetune.json') as f:
        cell = json.load(f)
      self.assertEqual(cell['curve']['step'][0], 0)
      self.assertLen(cell['curve']['forget_acc'], len(cell['curve']['step']))
      self.assertEqual(cell['cka']['layers'][-1], 'features')


class MovedCheckpointsTest(absltest.TestCase):

  def test_warns_when_finished_cells_used_another_checkpoint_dir(self):
    with tempfile.TemporaryDirectory() as tmp:
      runner = object.__new__(suite._Suite)  # No data needed.
      runner.store = suite_store.CellStore(f'{tmp}/w')
      runner.config = suite_config.get_config('smoke')
      runner.config.checkpoint_dir = f'{tmp}/elsewhere'
      for model in suite.BASE_MODELS:
        runner.store.save({'mode': 'random', 'seed': 0, 'model': model,
                           'status': 'ok',
                           'checkpoint': f'{tmp}/w/checkpoints/x_{model}'})
      with self.assertLogs('absl', 'WARNING') as logs:
        runner.warn_moved_checkpoints('random', 0, ['finetune'])
      self.assertLen(logs.output, 2)
      self.assertIn(f'--config.checkpoint_dir={tmp}/w/checkpoints',
                    logs.output[0])
      runner.config.checkpoint_dir = f'{tmp}/w/checkpoints/'
      with mock.patch.object(suite.logging, 'warning') as warning:
        runner.warn_moved_checkpoints('random', 0, ['finetune'])
      warning.assert_not_called()


class MainTest(absltest.TestCase):

  def test_main_dispatches_suite_configs(self):
    with tempfile.TemporaryDirectory() as tmp:
      tiny_config(tmp)  # Writes the npz.
      env = dict(os.environ, JAX_PLATFORMS='cpu')
      env.pop('XLA_FLAGS', None)
      proc = subprocess.run(
          [sys.executable, 'main.py', '--config=configs/suite.py:smoke',
           f'--workdir={tmp}/w', f'--config.checkpoint_dir={tmp}/ck',
           '--config.data.source=npz', '--config.data.name=tiny',
           f'--config.data.path={tmp}/tiny.npz', '--config.data.max_train=0',
           '--config.data.max_test=0', '--config.model.width=4',
           '--config.train.batch_size=16', '--config.split.forget_num=16',
           '--config.suite.methods=finetune', '--config.suite.modes=random',
           '--config.suite.seeds=1', '--config.suite.plots=False',
           '--config.suite.method_configs.random.finetune.batch_size=8'],
          cwd=_ROOT, capture_output=True, text=True, env=env, timeout=600)
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      self.assertIn('| FT |', proc.stdout)
      self.assertTrue(os.path.exists(f'{tmp}/w/report.json'))


if __name__ == '__main__':
  absltest.main()
