"""Checkpoint integrity (checksums), the per-folder lock, half-written steps."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from unittest import mock

import filelock
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from mu_jax import checkpoint as checkpoint_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree(seed=0):
  rng = np.random.default_rng(seed)
  return {'params': {'w': jnp.asarray(rng.normal(size=(128, 256)), jnp.float32),
                     'b': jnp.asarray(rng.normal(size=7), jnp.bfloat16)},
          'step': jnp.asarray(3, jnp.int32)}


def _assert_trees_equal(test, a, b):
  test.assertEqual(jax.tree.structure(a), jax.tree.structure(b))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _files(directory):
  return [os.path.join(root, f) for root, _, files in os.walk(directory)
          for f in files]


class TestCase(absltest.TestCase):

  def tmpdir(self) -> str:
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def save(self, directory, step=1, tree=None, method_state=(), **meta):
    with checkpoint_lib.Checkpointer(directory) as ckpt:
      ckpt.save(step, _tree() if tree is None else tree, method_state,
                {'done': True, 'epoch': step, **meta})


class ChecksumTest(TestCase):

  def test_round_trip_records_and_verifies_every_array(self):
    directory = self.tmpdir()
    method_state = {'teacher': jnp.arange(5.0)}
    self.save(directory, method_state=method_state)
    with open(f'{directory}/1/checksums/metadata') as f:
      arrays = json.load(f)['arrays']
    self.assertCountEqual(arrays, ["state['params']['b']",
                                   "state['params']['w']", "state['step']",
                                   "method_state['teacher']"])
    self.assertEqual(arrays["state['params']['w']"]['shape'], [128, 256])
    self.assertEqual(arrays["state['params']['b']"]['dtype'], 'bfloat16')
    with checkpoint_lib.Checkpointer(directory) as ckpt:
      state, restored_method_state, meta = ckpt.restore(
          _tree(seed=1), {'teacher': jnp.zeros(5)})
    _assert_trees_equal(self, state, _tree())
    _assert_trees_equal(self, restored_method_state, method_state)
    self.assertEqual(meta, {'done': True, 'epoch': 1})  # No checksums in meta.

  def test_flipped_bytes_in_largest_data_file(self):
    directory = self.tmpdir()
    self.save(directory)
    largest = max(_files(f'{directory}/1'), key=os.path.getsize)
    self.assertGreater(os.path.getsize(largest), 64 * 1024)  # The array data.
    with open(largest, 'r+b') as f:
      raw = bytearray(f.read())
      middle = len(raw) // 2
      raw[middle:middle + 32] = bytes(b ^ 0xFF for b in raw[middle:middle + 32])
      f.seek(0)
      f.write(raw)
    with checkpoint_lib.Checkpointer(directory) as ckpt:
      self.assertTrue(ckpt.latest_meta()['done'])  # Meta is intact.
      with self.assertRaises(checkpoint_lib.CheckpointError) as cm:
        ckpt.restore(_tree())
    message = str(cm.exception)
    self.assertIn(f'{directory}/1', message)
    self.assertIn('corrupt', message)
    self.assertNotIn('\n', message)

  def test_mismatch_names_the_leaf(self):
    directory = self.tmpdir()
    self.save(directory)
    path = f'{directory}/1/checksums/metadata'
    with open(path) as f:
      checksums = json.load(f)
    checksums['arrays']["state['params']['w']"]['sha256'] = '0' * 64
    with open(path, 'w') as f:
      json.dump(checksums, f)
    with checkpoint_lib.Checkpointer(directory) as ckpt:
      with self.assertRaisesRegex(
          checkpoint_lib.CheckpointError,
          f'checkpoint {directory}/1 is corrupt \\(checksum mismatch in '
          r"state\['params'\]\['w'\]\); delete it"):
        ckpt.restore(_tree())

  def test_checkpoint_without_checksums_is_refused(self):
    directory = self.tmpdir()
    self.save(directory)
    shutil.rmtree(f'{directory}/1/checksums')  # Deleted, or an old save.
    with checkpoint_lib.Checkpointer(directory) as ckpt:
      with self.assertRaisesRegex(
          checkpoint_lib.CheckpointError,
          f'checkpoint {directory}/1 has no checksums .* pass '
          '--config.checkpoint.allow_unverified=True'):
        ckpt.restore(_tree(seed=1))

  def test_checkpoint_without_checksums_restores_when_allowed(self):
    directory = self.tmpdir()
    self.save(directory)
    shutil.rmtree(f'{directory}/1/checksums')
    checkpoint_lib.allow_unverified(True)
    self.addCleanup(checkpoint_lib.allow_unverified, False)
    with checkpoint_lib.Checkpointer(directory) as ckpt:
      with self.assertLogs(level='WARNING') as logs:
        state, _, meta = ckpt.restore(_tree(seed=1))
    self.assertIn('no checksums', '\n'.join(logs.output))
    _assert_trees_equal(self, state, _tree())
    self.assertTrue(meta['done'])

  def test_restore_with_another_dtype_is_not_called_corrupt(self):
    directory = self.tmpdir()
    self.save(directory)
    template = jax.tree.map(lambda x: x.astype(jnp.float16), _tree())
    with checkpoint_lib.Checkpointer(directory) as ckpt:
      with self.assertLogs(level='WARNING') as logs:
        state, _, _ = ckpt.restore(template)
    self.assertIn('were not checked', '\n'.join(logs.output))
    self.assertEqual(state['params']['w'].dtype, jnp.float16)


class LockTest(TestCase):

  def test_lock_file_lives_while_open_and_is_removed_on_close(self):
    directory = self.tmpdir()
    lock_path = os.path.join(directory, checkpoint_lib.LOCK_NAME)
    with checkpoint_lib.Checkpointer(directory) as ckpt:
      self.assertTrue(os.path.exists(lock_path))
      # Another Checkpointer of this process shares the lock: no deadlock.
      ckpt.save(1, _tree(), (), {'done': True})
      again = checkpoint_lib.Checkpointer(directory)
      self.assertTrue(again.latest_meta()['done'])
      again.close()
      again.close()  # Twice is fine.
      self.assertTrue(os.path.exists(lock_path))  # `ckpt` still holds it.
      self.assertTrue(ckpt.latest_meta()['done'])
    self.assertFalse(os.path.exists(lock_path))
    self.assertEqual(sorted(os.listdir(directory)), ['1'])

  def test_waits_for_a_held_lock_and_says_so(self):
    directory = self.tmpdir()
    other = filelock.FileLock(os.path.join(directory,
                                           checkpoint_lib.LOCK_NAME))
    other.acquire()  # Its own descriptor: contends like another process.
    waiting, opened = threading.Event(), []

    def warning(msg, *args, **kwargs):
      del kwargs
      if 'waiting for another run' in msg % args:
        waiting.set()

    def open_it():
      with mock.patch.object(checkpoint_lib.logging, 'warning', warning):
        opened.append(checkpoint_lib.Checkpointer(directory))

    thread = threading.Thread(target=open_it, daemon=True)
    thread.start()
    self.assertTrue(waiting.wait(60))
    self.assertEqual(opened, [])  # Still waiting while the lock is held.
    other.release()
    thread.join(60)
    self.assertLen(opened, 1)
    self.assertIsNone(opened[0].latest_meta())
    opened[0].close()

  def test_unlockable_folder_is_used_with_a_warning(self):
    directory = self.tmpdir()
    self.save(directory)
    with mock.patch.object(filelock.FileLock, 'acquire',
                           side_effect=PermissionError(13, 'Permission '
                                                       'denied')):
      with self.assertLogs(level='WARNING') as logs:
        ckpt = checkpoint_lib.Checkpointer(directory)
    self.assertIn('cannot lock', '\n'.join(logs.output))
    self.assertTrue(ckpt.latest_meta()['done'])
    ckpt.close()

  def test_uncreatable_folder_is_a_checkpoint_error(self):
    path = os.path.join(self.tmpdir(), 'file')
    with open(path, 'w') as f:
      f.write('x')
    with self.assertRaisesRegex(checkpoint_lib.CheckpointError,
                                'cannot create checkpoint folder'):
      checkpoint_lib.Checkpointer(os.path.join(path, 'run'))


_WORKER = textwrap.dedent('''
    import os, sys, time
    import numpy as np
    import jax.numpy as jnp
    from mu_jax import checkpoint as checkpoint_lib
    directory, sync, name = sys.argv[1:]
    open(os.path.join(sync, name + '.ready'), 'w').close()
    while not os.path.exists(os.path.join(sync, 'go')):
      time.sleep(0.01)
    with checkpoint_lib.Checkpointer(directory) as ckpt:
      template = {'w': jnp.zeros((64, 64)), 'b': jnp.zeros(8)}
      if ckpt.latest_meta() is None:
        # "Training": weights that differ per process, so a second training
        # would show; the sleep only makes the runs overlap.
        rng = np.random.default_rng(os.getpid())
        weights = {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32)
                   for k, v in template.items()}
        time.sleep(1.0)
        ckpt.save(1, weights, (), {'done': True, 'by': name})
        trained = True
      else:
        weights, _, meta = ckpt.restore(template)
        assert meta['done'], meta
        trained = False
    np.savez(os.path.join(sync, name + '.npz'), trained=trained,
             **{k: np.asarray(v) for k, v in weights.items()})
''')


class ConcurrentRunsTest(TestCase):

  def test_two_processes_on_one_fresh_folder(self):
    tmp = self.tmpdir()
    directory, sync = os.path.join(tmp, 'checkpoints', 'run'), tmp
    script = os.path.join(tmp, 'worker.py')
    with open(script, 'w') as f:
      f.write(_WORKER)
    env = dict(os.environ, JAX_PLATFORMS='cpu',
               PYTHONPATH=os.pathsep.join(
                   filter(None, [_ROOT, os.environ.get('PYTHONPATH')])))
    env.pop('XLA_FLAGS', None)
    procs = [subprocess.Popen([sys.executable, script, directory, sync, name],
                              env=env, cwd=_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for name in ('a', 'b')]
    try:
      # A start barrier, so both open the folder at about the same time.
      while not all(os.path.exists(os.path.join(sync, f'{n}.ready'))
                    for n in 'ab'):
        self.assertTrue(all(p.poll() is None for p in procs),
                        [p.communicate()[0][-3000:] for p in procs
                         if p.poll() is not None])
        time.sleep(0.05)
      open(os.path.join(sync, 'go'), 'w').close()
      outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
    for p, out in zip(procs, outputs):
      self.assertEqual(p.returncode, 0, out[-3000:])
    results = [dict(np.load(os.path.join(sync, f'{n}.npz'))) for n in 'ab']
    self.assertEqual(sorted(bool(r.pop('trained')) for r in results),
                     [False, True])  # One trained, the other reused it.
    for key in ('w', 'b'):
      np.testing.assert_array_equal(results[0][key], results[1][key])
    self.assertEqual(sorted(os.listdir(directory)), ['1'])  # No lock left.
    with checkpoint_lib.Checkpointer(directory) as ckpt:
      self.assertEqual(ckpt.latest_meta()['done'], True)


class HalfWrittenStepTest(TestCase):

  def _half_written(self, directory, step, remove):
    """Copies step 1 to `step`, less `remove` (what a broken save lacks)."""
    shutil.copytree(f'{directory}/1', f'{directory}/{step}')
    shutil.rmtree(f'{directory}/{step}/{remove}')

  def test_step_without_meta_is_moved_aside(self):
    directory = self.tmpdir()
    self.save(directory, step=1)
    # What two concurrent runs left: state/ and commit_success.txt, no meta/.
    self._half_written(directory, 2, 'meta')
    self.assertTrue(os.path.exists(f'{directory}/2/commit_success.txt'))
    self.assertTrue(os.path.isdir(f'{directory}/2/state'))
    with self.assertLogs(level='WARNING') as logs:
      ckpt = checkpoint_lib.Checkpointer(directory)
    with ckpt:
      self.assertIn(f'{directory}/2 is incomplete (no meta/',
                    '\n'.join(logs.output))
      self.assertEqual(ckpt.latest_meta(), {'done': True, 'epoch': 1})
      state, _, _ = ckpt.restore(_tree(seed=1))
      _assert_trees_equal(self, state, _tree())
      # The run goes on: saving step 2 again works.
      ckpt.save(2, _tree(seed=2), (), {'done': True, 'epoch': 2})
      self.assertEqual(ckpt.latest_meta()['epoch'], 2)
    names = sorted(os.listdir(directory))
    self.assertEqual(names[:2], ['1', '2'])
    self.assertLen(names, 3)
    self.assertStartsWith(names[2], '2.incomplete-')

  def test_unreadable_meta_and_missing_state(self):
    directory = self.tmpdir()
    self.save(directory, step=1)
    self._half_written(directory, 2, 'state')
    self._half_written(directory, 3, 'meta')
    os.makedirs(f'{directory}/3/meta')
    with open(f'{directory}/3/meta/metadata', 'w') as f:
      f.write('{"done": tr')  # Cut mid-write.
    with self.assertLogs(level='WARNING') as logs:
      ckpt = checkpoint_lib.Checkpointer(directory)
    output = '\n'.join(logs.output)
    self.assertIn(f'{directory}/2 is incomplete (no state/', output)
    self.assertIn(f'{directory}/3 is incomplete (unreadable meta/', output)
    with ckpt:
      self.assertEqual(ckpt.latest_meta()['epoch'], 1)

  def test_only_incomplete_steps_means_a_fresh_start(self):
    directory = self.tmpdir()
    self.save(directory, step=1)
    shutil.rmtree(f'{directory}/1/meta')
    with self.assertLogs(level='WARNING'):
      ckpt = checkpoint_lib.Checkpointer(directory)
    with ckpt:
      self.assertIsNone(ckpt.latest_meta())


class FailedWriteTest(TestCase):
  """A full disk, as Orbax reports it: in save() and again in close()."""

  def _full_disk(self, directory, in_save=True):
    """Orbax's save and close fail as on a full disk, leaving temp folders."""
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    def leave_tmp(step):
      os.makedirs(f'{directory}/{step}.orbax-checkpoint-tmp/state',
                  exist_ok=True)

    def save(manager, step, *args, **kwargs):
      del manager, args, kwargs
      leave_tmp(step)
      raise ValueError('RESOURCE_EXHAUSTED: Error writing "params": No '
                       "space left on device [os_error_code='28']")

    def close(manager):
      del manager
      leave_tmp(7)  # A background thread's write, after save() gave up.
      raise OSError(28, 'No space left on device')

    if in_save:
      self.enter_context(mock.patch.object(ocp.CheckpointManager, 'save',
                                           save))
    self.enter_context(mock.patch.object(ocp.CheckpointManager, 'close',
                                         close))

  def test_close_does_not_replace_the_error_of_save(self):
    directory = self.tmpdir()
    self._full_disk(directory)
    with self.assertRaisesRegex(
        checkpoint_lib.CheckpointError,
        f'cannot write checkpoint {directory}/1: no space left on the '
        'device; free some space or set --config.checkpoint_dir'):
      with checkpoint_lib.Checkpointer(directory) as ckpt:
        ckpt.save(1, _tree(), (), {'done': True})
    self.assertEqual(os.listdir(directory), [])  # No temp folder, no lock.

  def test_a_failure_reported_only_by_close_is_one_line(self):
    directory = self.tmpdir()
    self._full_disk(directory, in_save=False)
    ckpt = checkpoint_lib.Checkpointer(directory)
    with self.assertRaisesRegex(
        checkpoint_lib.CheckpointError,
        f'cannot write checkpoint folder {directory}: no space left'):
      ckpt.close()
    self.assertEqual(os.listdir(directory), [])
    ckpt.close()  # Closed already: nothing happens.


if __name__ == '__main__':
  absltest.main()
