"""The benchmark harness runs end to end on a tiny setting and writes JSON.

The PyTorch half runs only where torch is installed (CI has no torch: the
harness then measures mu_jax alone).
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HAS_TORCH = importlib.util.find_spec('torch') is not None


class BenchmarkTest(absltest.TestCase):

  def test_tiny_run_writes_valid_json_and_a_table(self):
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, 'bench.json')
      # The harness compiles into a fresh temporary cache of its own.
      env = dict(os.environ, JAX_PLATFORMS='cpu')
      env.pop('XLA_FLAGS', None)
      proc = subprocess.run(
          [sys.executable, '-m', 'benchmarks.run', '--variant=smoke',
           '--batch_size=16', '--shape=8,8,1', '--steps=3', '--warmup=1',
           '--repeats=1', '--methods=finetune,scrub', f'--out={out}'],
          cwd=_ROOT, capture_output=True, text=True, env=env, timeout=600)
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      with open(out) as f:
        payload = json.load(f)
    self.assertIn('train step: cnn batch 16', proc.stdout)
    self.assertEqual(payload['device']['platform'], 'cpu')
    if (os.cpu_count() or 1) >= 2:  # mu_jax's default: two host devices.
      self.assertEqual(payload['device']['count'], 2)
    step = payload['summary']['step']
    self.assertGreater(step['jax_img_per_s'], 0)
    self.assertLen(payload['step']['jax'][0]['step_seconds'], 3)
    methods = payload['summary']['methods']
    self.assertCountEqual(methods, ['finetune', 'scrub'])
    for row in methods.values():
      self.assertGreater(row['jax_wall_seconds'], row['jax_rte_seconds'])
      self.assertGreater(row['steps'], 0)
    # Both frameworks ran the same number of updates.
    for record in payload['methods'].values():
      self.assertEqual(record['jax'][0]['steps'], record['plan_steps'])
      if _HAS_TORCH:
        self.assertEqual(record['torch'][0]['steps'], record['plan_steps'])
    if _HAS_TORCH:
      self.assertGreater(step['ratio'], 0)
    else:
      self.assertIsNone(step['ratio'])


if __name__ == '__main__':
  absltest.main()
