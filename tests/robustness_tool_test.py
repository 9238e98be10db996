"""tools/robustness.py without running a grid: its replicates, its interval
and its tables over replicates, on stored cells written here."""

import dataclasses
import json
import os
import tempfile

from absl.testing import absltest

from tests import test_util


def _robustness():
  return test_util.load_tool('robustness')


def _cell(setting, guard_on, test_acc, avg_gap, *, outcome='forgotten',
          original_test_acc=90.0, original_gap=5.0):
  """A stored random-mode cell of the shape run_setting writes."""
  base = {'original': {'unlearn_acc': 1.0, 'retain_acc': 99.0,
                       'test_acc': original_test_acc, 'mia_efficacy': 2.0,
                       'avg_gap': original_gap},
          'retrain': {'unlearn_acc': 10.0, 'retain_acc': 99.0,
                      'test_acc': 90.0, 'mia_efficacy': 12.0,
                      'avg_gap': 0.0}}
  return {'status': 'ok', 'setting': setting, 'method': 'salun',
          'guard_on': guard_on, 'tag': '', 'set': [],
          'metrics': {'unlearn_acc': 8.0, 'retain_acc': 95.0,
                      'test_acc': test_acc, 'mia_efficacy': 10.0,
                      'avg_gap': avg_gap},
          'seconds': 1.0, 'base': base,
          'split': {'name': 'random1000', 'mode': 'random'},
          'base_seconds': {'original': 1.0, 'retrain': 1.0},
          'guard': {'outcome': outcome} if guard_on else None}


class ReplicatesTest(absltest.TestCase):

  def test_replicates_are_named_settings_with_their_seed_offset(self):
    robustness = _robustness()
    args = robustness.parse_args(['--settings', 'tiles_class2,skdigits_class8',
                                  '--replicates', '2'])
    self.assertEqual(args.settings, ['tiles_class2', 'tiles_class2~r1',
                                     'skdigits_class8', 'skdigits_class8~r1'])
    self.assertEqual(robustness._replicate('tiles_class2~r1'),
                     ('tiles_class2', 1))
    self.assertEqual(robustness._replicate('tiles_class2'), ('tiles_class2', 0))

  def test_wilson_interval(self):
    wilson = _robustness()._wilson
    # 36 of 40: p = 0.9, by hand (z = 1.96): centre 0.86495, half 0.09547.
    low, high = wilson(36, 40)
    self.assertAlmostEqual(low, 76.95, places=1)
    self.assertAlmostEqual(high, 96.04, places=1)
    self.assertEqual(wilson(8, 8)[1], 100.0)
    self.assertEqual(wilson(0, 0), (0.0, 100.0))

  def test_tables_give_means_over_replicates_and_the_silent_misses(self):
    robustness = _robustness()
    with tempfile.TemporaryDirectory() as out:
      cells = {
          'tiles_random10': [_cell('tiles_random10', True, 89.0, 3.0),
                             _cell('tiles_random10', False, 85.0, 6.0)],
          # A miss the guard did not flag: test accuracy down 4 points.
          'tiles_random10~r1': [_cell('tiles_random10~r1', True, 86.0, 4.0),
                                _cell('tiles_random10~r1', False, 88.0, 4.0)],
      }
      for name, stored in cells.items():
        os.makedirs(os.path.join(out, 'cells', name))
        for cell in stored:
          path = os.path.join(out, 'cells', name, 'salun_{}.json'.format(
              'guard' if cell['guard_on'] else 'plain'))
          with open(path, 'w') as f:
            json.dump(cell, f)
      args = robustness.parse_args(['--out', out, '--settings',
                                    'tiles_random10', '--replicates', '2',
                                    '--methods', 'salun'])
      text = robustness.tables(args)
    self.assertIn('| tiles_random10 | salun | on | 2 | 8.00 ± 0.00 | '
                  '-2.50 ± 2.12 | 3.50 ± 0.71 | 1/2 |', text)
    self.assertIn('| tiles_random10 | salun | off | 2 | 8.00 ± 0.00 | '
                  '-3.50 ± 2.12 | 5.00 ± 1.41 | 1/2 |', text)
    self.assertIn('tiles_random10~r1 (TA-3,silent)', text)
    self.assertIn('| all | on | 1/2 |', text)
    self.assertIn('1 not flagged (silent)', text)


class CompareTest(absltest.TestCase):

  def _store(self, out, setting, name, cell):
    os.makedirs(os.path.join(out, 'cells', setting), exist_ok=True)
    with open(os.path.join(out, 'cells', setting, name + '.json'), 'w') as f:
      json.dump(cell, f)

  def test_rows_over_seeds_with_the_gap_paired_against_the_first(self):
    robustness = _robustness()
    with tempfile.TemporaryDirectory() as out:
      # Two seeds; the @mask1.0 row's gap is 1.0 and 3.0, salun's 2.0 and
      # 5.0: differences +1.0 and +2.0, mean 1.5, sample std 0.71; a
      # one-sample t of 1.5 / (0.7071 / sqrt 2) = 3.0 on 1 degree of
      # freedom has p = 0.205 (2 arctan(1/3) / pi).
      for setting, no_mask, masked in (('s0', 1.0, 2.0), ('s1', 3.0, 5.0)):
        self._store(out, setting, 'salun_plain_mask1.0',
                    _cell(setting, False, 90.0, no_mask))
        self._store(out, setting, 'salun_plain',
                    _cell(setting, False, 88.0, masked))
      args = robustness.parse_args(
          ['--out', out, '--settings', 'embedded_random10', '--guard', 'off',
           '--compare', 'salun@mask1.0,salun'])
      self.assertTrue(args.report_only)  # --compare runs nothing.
      args = dataclasses.replace(args, settings=['s0', 's1'])
      text = robustness.compare_table(args)
    self.assertIn('| salun @mask1.0 | 8.00 ± 0.00 | 95.00 ± 0.00 | '
                  '90.00 ± 0.00 | 10.00 ± 0.00 | 2.00 ± 1.41 |', text)
    self.assertIn('| original | 1.00 ± 0.00 |', text)
    self.assertIn('- salun: +1.50 ± 0.71 (per setting +1.00, +2.00; '
                  'p = 0.205)', text)

  def test_a_missing_cell_is_named(self):
    robustness = _robustness()
    with tempfile.TemporaryDirectory() as out:
      args = robustness.parse_args(
          ['--out', out, '--settings', 'embedded_random10', '--guard', 'off',
           '--compare', 'salun'])
      with self.assertRaisesRegex(LookupError, 'salun_plain.json: no such'):
        robustness.compare_table(args)

  def test_compare_needs_one_guard_setting(self):
    with self.assertRaisesRegex(Exception, 'one --guard'):
      _robustness().parse_args(['--compare', 'salun'])


if __name__ == '__main__':
  absltest.main()
