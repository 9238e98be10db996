"""Two processes joined by jax.distributed equal one process with 2 devices.

Each process of the two-process run has one CPU device and they exchange
their collectives over Gloo on a free localhost port; the reference run is
one process with two CPU devices. Same split, same global batches, same
mesh shape: every metric must agree up to float rounding, only process 0
may write the run's files, and both processes must exit 0.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TIMEOUT = 420  # Seconds; the run takes ~40 s on a busy 2-core machine.


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _command(workdir: str, checkpoint_dir: str, *extra: str) -> list[str]:
  return [sys.executable, 'main.py', '--config', 'configs/default.py:smoke',
          '--method', 'finetune', f'--workdir={workdir}',
          f'--config.checkpoint_dir={checkpoint_dir}', *extra]


def _env(devices: int) -> dict:
  env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices),
             JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)  # Would override the device count.
  return env


class MultiHostTest(absltest.TestCase):

  def test_two_processes_equal_one_process_with_two_devices(self):
    tmp = tempfile.mkdtemp()
    reference = subprocess.run(
        _command(f'{tmp}/one', f'{tmp}/one_ckpt'), cwd=_ROOT, env=_env(2),
        capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    self.assertEqual(reference.returncode, 0, reference.stderr[-3000:])

    port = _free_port()
    procs = []
    for process_id in (0, 1):
      procs.append(subprocess.Popen(
          _command(f'{tmp}/multi{process_id}', f'{tmp}/multi_ckpt',
                   '--config.distributed.enabled=True',
                   f'--config.distributed.coordinator_address=127.0.0.1:'
                   f'{port}',
                   '--config.distributed.num_processes=2',
                   f'--config.distributed.process_id={process_id}'),
          cwd=_ROOT, env=_env(1), stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
      for proc in procs:
        outputs.append(proc.communicate(timeout=_TIMEOUT))
    finally:
      for proc in procs:
        proc.kill()
    for proc, (_, err) in zip(procs, outputs):
      self.assertEqual(proc.returncode, 0, err[-3000:])

    # Process 0 printed the table and wrote the report; process 1 nothing.
    self.assertIn('| unlearned (finetune) |', outputs[0][0])
    self.assertNotIn('| unlearned', outputs[1][0])
    self.assertFalse(os.path.exists(f'{tmp}/multi1'),
                     os.listdir(f'{tmp}/multi1')
                     if os.path.exists(f'{tmp}/multi1') else '')
    # Both processes wrote the unlearned model into process 0's workdir.
    self.assertTrue(os.path.isdir(f'{tmp}/multi0/unlearned'))
    with open(f'{tmp}/one/report.json') as f:
      one = json.load(f)
    with open(f'{tmp}/multi0/report.json') as f:
      multi = json.load(f)
    self.assertEqual((one['device']['count'], one['device']['processes']),
                     (2, 1))
    self.assertEqual((multi['device']['count'],
                      multi['device']['processes']), (2, 2))
    self.assertEqual(one['split'], multi['split'])
    self.assertEqual(one['guard']['summary'], multi['guard']['summary'])
    self.assertEqual(set(one['metrics']), set(multi['metrics']))
    for model, metrics in one['metrics'].items():
      for name, value in metrics.items():
        if name.endswith('seconds') or not isinstance(value, float):
          continue
        self.assertAlmostEqual(value, multi['metrics'][model][name],
                               places=3, msg=f'{model} {name}')


if __name__ == '__main__':
  absltest.main()
