"""The accelerator script's dry run covers every section and writes both files.

`python -m benchmarks.accelerator --dry_run` is the CPU check of the script a
lent GPU runs for 8 minutes: tiny sizes, every code path. No timing is
asserted, only the structure of the JSON and the markdown: each section ran
or says why it was skipped, and every number is finite. The PyTorch section
runs (on the CPU) only where torch is installed.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest

from mu_jax import methods

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HAS_TORCH = importlib.util.find_spec('torch') is not None
_METHODS = tuple(methods.unlearning_methods())
_SECTIONS = ('torch', 'step', 'epoch', 'methods')


def _run(out, *args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.accelerator', '--dry_run',
       f'--out={out}', *args],
      cwd=_ROOT, capture_output=True, text=True, env=env, timeout=600)
  return proc


def _numbers(value, path=''):
  """(path, number) for every int or float in a JSON value."""
  if isinstance(value, bool):
    return
  if isinstance(value, (int, float)):
    yield path, value
  elif isinstance(value, dict):
    for k, v in value.items():
      yield from _numbers(v, f'{path}.{k}')
  elif isinstance(value, list):
    for i, v in enumerate(value):
      yield from _numbers(v, f'{path}[{i}]')


class DryRunTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.TemporaryDirectory()
    cls.proc = _run(cls.tmp.name)
    with open(os.path.join(cls.tmp.name, 'accelerator.json')) as f:
      cls.payload = json.load(f)
    with open(os.path.join(cls.tmp.name, 'accelerator.md')) as f:
      cls.markdown = f.read()

  @classmethod
  def tearDownClass(cls):
    cls.tmp.cleanup()
    super().tearDownClass()

  def test_exits_cleanly_and_leaves_only_its_two_files(self):
    self.assertEqual(self.proc.returncode, 0, self.proc.stderr[-3000:])
    self.assertEqual(self.payload['errors'], 0)
    self.assertCountEqual(os.listdir(self.tmp.name),
                          ['accelerator.json', 'accelerator.md'])
    self.assertTrue(self.payload['dry_run'])

  def test_every_number_is_finite(self):
    # json.load reads NaN and Infinity; the script must write neither.
    numbers = list(_numbers(self.payload))
    self.assertNotEmpty(numbers)
    for path, value in numbers:
      self.assertTrue(math.isfinite(value), path)

  def test_every_section_ran_or_says_why_not(self):
    for name in _SECTIONS:
      section = self.payload[name]
      self.assertIn(section['status'], ('ok', 'partial', 'skipped'), name)
      for row in section['rows']:
        self.assertIn(row['status'], ('ok', 'skipped'), (name, row))
        if row['status'] == 'skipped':
          self.assertTrue(row['reason'], (name, row))
    # With the default budget nothing of the dry run is skipped but PyTorch
    # where torch is absent.
    for name in ('step', 'epoch', 'methods'):
      self.assertEqual(self.payload[name]['status'], 'ok', name)

  def test_environment(self):
    env = self.payload['environment']
    self.assertEqual(env['device']['platform'], 'cpu')
    self.assertEqual(env['device']['count'], 1)
    for package in ('jax', 'jaxlib', 'flax'):
      self.assertIn(package, env['versions'])
    budget = self.payload['budget']
    self.assertEqual(budget['seconds'], 480)
    self.assertGreater(budget['elapsed_seconds'], 0)

  def test_train_step_rows(self):
    rows = self.payload['step']['rows']
    self.assertCountEqual([(r['dtype'], r['batch_size']) for r in rows],
                          [('float32', 16), ('bfloat16', 16)])
    for row in rows:
      self.assertGreater(row['img_per_s'], 0)
      self.assertGreater(row['compile_seconds'], 0)
      self.assertLen(row['step_seconds'], 2)
      self.assertGreater(row['flops_per_step'], 0)
      self.assertGreater(row['flops_per_s'], 0)
      # A CPU has no bfloat16 peak in the table.
      self.assertIsNone(row['fraction_of_bf16_peak'])
      if _HAS_TORCH:
        self.assertGreater(row['ratio_vs_torch'], 0)
      else:
        self.assertIsNone(row['ratio_vs_torch'])
    goal = self.payload['goal']
    self.assertEqual(goal['target_bf16_img_per_s'], 30_000)
    self.assertIsNone(goal['throughput_met'])  # Judged on accelerators only.

  def test_torch_section(self):
    torch = self.payload['torch']
    if not _HAS_TORCH:
      self.assertEqual(torch['status'], 'skipped')
      self.assertEqual(torch['rows'], [])
      self.assertIn('torch is not installed', ' '.join(torch['notes']))
      return
    self.assertEqual(torch['status'], 'ok', torch)
    self.assertCountEqual(
        [(r['dtype'], r['memory_format']) for r in torch['rows']],
        [(d, f) for d in ('float32', 'bfloat16')
         for f in ('channels_last', 'nchw')])
    for row in torch['rows']:
      self.assertGreater(row['img_per_s'], 0)

  def test_epoch_rows(self):
    rows = self.payload['epoch']['rows']
    self.assertEqual([r['dtype'] for r in rows], ['float32', 'bfloat16'])
    for row in rows:
      self.assertEqual(row['images'], 320)
      self.assertEqual(row['steps'], 320 // row['batch_size'])
      self.assertGreater(row['wall_seconds'], row['run_seconds'])
      self.assertGreater(row['img_per_s'], 0)

  def test_every_method_ran_its_shortened_recipe(self):
    rows = {r['method']: r for r in self.payload['methods']['rows']}
    self.assertCountEqual(rows, _METHODS)
    for method, row in rows.items():
      self.assertEqual(row['epochs'], 1, method)
      self.assertGreaterEqual(row['recipe_epochs'], row['epochs'], method)
      self.assertEqual(row['steps'], row['plan_steps'], method)
      self.assertGreater(row['steps'], 0, method)
      self.assertGreater(row['wall_seconds'], row['rte_seconds'], method)
    self.assertIn('paper_method', self.payload['methods']['shortened'])

  def test_markdown_has_every_table_and_row(self):
    md = self.markdown
    self.assertIn('DRY RUN', md)
    for header in ('| train step |', '| epoch (original recipe) |',
                   '| method |', 'Goal: bfloat16 >= 30,000 img/s'):
      self.assertIn(header, md)
    for method in _METHODS:
      self.assertIn(f'| {method} |', md)
    self.assertIn('| bfloat16 | 16 |', md)
    # Every table line has as many cells as its header.
    for table in md.split('\n\n'):
      lines = [l for l in table.splitlines() if l.startswith('|')]
      for line in lines[1:]:
        self.assertEqual(line.count('|'), lines[0].count('|'), line)


class BudgetTest(absltest.TestCase):

  def test_no_budget_skips_every_measurement_with_a_reason(self):
    with tempfile.TemporaryDirectory() as tmp:
      proc = _run(tmp, '--budget_s=0')
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      with open(os.path.join(tmp, 'accelerator.json')) as f:
        payload = json.load(f)
    for name in _SECTIONS:
      self.assertEqual(payload[name]['status'], 'skipped', name)
    rows = [r for n in ('step', 'epoch', 'methods')
            for r in payload[n]['rows']]
    self.assertLen(rows, 2 + 2 + len(_METHODS))
    for row in rows:
      self.assertEqual(row['status'], 'skipped')
      self.assertIn('time budget', row['reason'])

  def test_a_measurement_past_the_budget_is_stopped(self):
    from benchmarks import accelerator  # pylint: disable=g-import-not-at-top
    budget = accelerator.Budget(0.5, start=time.perf_counter(), reserve=0.0)
    stopped = accelerator.measure(budget, 'x', {},
                                  lambda: time.sleep(30) or {'done': 1})
    self.assertEqual(stopped['status'], 'skipped')
    self.assertIn('stopped at the time budget', stopped['reason'])
    self.assertNotIn('done', stopped)
    self.assertLess(stopped['seconds'], 10)
    later = accelerator.measure(budget, 'x', {}, lambda: {'done': 1})
    self.assertEqual(later['status'], 'skipped')
    self.assertIn('exhausted', later['reason'])

  def test_an_estimate_that_does_not_fit_is_skipped(self):
    from benchmarks import accelerator  # pylint: disable=g-import-not-at-top
    budget = accelerator.Budget(100.0, start=time.perf_counter(),
                                reserve=0.0)
    first = accelerator.measure(budget, 'x', {}, lambda: {'v': 1.0})
    self.assertEqual(first['status'], 'ok')
    budget.record('x', 1000.0)  # As if a measurement of its kind took long.
    self.assertEqual(accelerator.measure(
        budget, 'x', {}, lambda: {'v': 1.0})['status'], 'skipped')
    self.assertEqual(accelerator.measure(
        budget, 'y', {}, lambda: {'v': 1.0})['status'], 'ok')

  def test_an_error_is_recorded_and_the_run_goes_on(self):
    from benchmarks import accelerator  # pylint: disable=g-import-not-at-top
    budget = accelerator.Budget(100.0, start=time.perf_counter())
    row = accelerator.measure(budget, 'x', {}, lambda: 1 / 0)
    self.assertEqual(row['status'], 'error')
    self.assertIn('ZeroDivisionError', row['error'])
    self.assertEqual(accelerator.measure(
        budget, 'x', {}, lambda: {'v': 1.0})['status'], 'ok')


class ImportTest(absltest.TestCase):

  def test_imports_beside_the_other_benchmark_scripts(self):
    # Its flags are defined only when it runs as a script (run.py has --out;
    # absl refuses a flag defined twice in one process).
    # pylint: disable=g-import-not-at-top,unused-import
    from benchmarks import accelerator
    from benchmarks import profile_step
    from benchmarks import run
    # pylint: enable=g-import-not-at-top,unused-import
    self.assertEqual(accelerator._FLAGS, {})  # pylint: disable=protected-access


if __name__ == '__main__':
  absltest.main()
