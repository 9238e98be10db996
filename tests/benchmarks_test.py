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


class ScriptsTest(absltest.TestCase):

  def test_the_scripts_import_together(self):
    # absl refuses a flag defined twice in one process.
    proc = subprocess.run(
        [sys.executable, '-c', 'import benchmarks.run, '
         'benchmarks.profile_step, benchmarks.conv_kernels'],
        cwd=_ROOT, capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])


class TorchTwinsTest(absltest.TestCase):

  @absltest.skipUnless(_HAS_TORCH, 'torch is an optional extra')
  def test_every_model_has_a_twin_with_the_same_parameter_count(self):
    import jax  # pylint: disable=g-import-not-at-top
    import ml_collections  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
    from mu_jax import models  # pylint: disable=g-import-not-at-top
    self.assertCountEqual(torch_reference.MODELS, models.NAMES)
    for name in models.NAMES:
      shape = (32, 32, 3) if name == 'resnet18' else (28, 28, 1)
      twin = torch_reference.make_model(name, 10, 32, shape, True)
      model = models.create(ml_collections.ConfigDict(
          {'name': name, 'width': 32}), 10)
      variables = jax.eval_shape(model.init, jax.random.key(0),
                                 jax.ShapeDtypeStruct((1, *shape), 'float32'))
      self.assertEqual(
          sum(p.numel() for p in twin.parameters()),
          sum(int(np.prod(p.shape))
              for p in jax.tree.leaves(variables['params'])), name)


def _taps(size: int) -> int:
  """Kernel taps inside the image, summed over a 3x3 'SAME' output grid."""
  return (3 * size - 2) ** 2


class FlopsTest(absltest.TestCase):

  def test_cnn_step_flops_by_hand(self):
    from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
    b = 128
    conv0 = 2 * b * _taps(28) * 1 * 32  # Multiply-adds x 2, padding skipped.
    conv1 = 2 * b * _taps(14) * 32 * 64
    dense0, dense1 = 2 * b * 3136 * 128, 2 * b * 128 * 10
    # Forward; kernel gradients of all four layers; input gradients of all
    # but the first (its input is the data).
    by_hand = 2 * conv0 + 3 * conv1 + 3 * dense0 + 3 * dense1
    flops = mu_jax_side.step_flops('cnn', b, (28, 28, 1))
    # XLA also counts the element-wise work (ReLU, pooling, bias, softmax).
    self.assertBetween(flops, by_hand, 1.05 * by_hand)

  def test_fraction_of_peak_only_for_bfloat16_on_known_chips(self):
    from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
    from benchmarks import run  # pylint: disable=g-import-not-at-top
    self.assertEqual(mu_jax_side.peak_bf16_flops('NVIDIA H100 PCIe'), 756e12)
    self.assertEqual(mu_jax_side.peak_bf16_flops('NVIDIA H200'), 989e12)
    self.assertIsNone(mu_jax_side.peak_bf16_flops('cpu'))
    payload = {
        'device': {'platform': 'gpu', 'kind': 'NVIDIA H100 80GB HBM3',
                   'count': 2},
        'flags': {'batch_size': 512, 'dtype': 'bfloat16'},
        'step': {'jax': [{'img_per_s': 1000.0, 'compile_seconds': 1.0}],
                 'torch': [], 'flops_per_step': 512e9},
        'methods': {}}
    step = run.summarize(payload)['step']
    # 1e9 FLOP per image x 1000 img/s = 1e12 FLOP/s, on two 989e12 chips.
    self.assertAlmostEqual(step['jax_flops_per_s'], 1e12)
    self.assertAlmostEqual(step['fraction_of_peak'], 1e12 / (2 * 989e12))
    payload['flags']['dtype'] = 'float32'
    self.assertIsNone(run.summarize(payload)['step']['fraction_of_peak'])


if __name__ == '__main__':
  absltest.main()
