"""Checkpoints through Orbax; the only module that calls `orbax.checkpoint`.

A training run saves `{'state', 'method_state'}` plus a JSON `meta` dict at the
end of every epoch. Orbax writes each step into a temporary directory and
renames it when complete, and `CheckpointManager` lists only completed steps, so
a run killed mid-write leaves nothing that can be loaded by mistake.

Integrity: each step also holds a JSON item `checksums` with the SHA-256 of
every saved array (its dtype name, shape and little-endian C-order bytes),
written inside the step, so Orbax renames it into place with the rest.
`restore` recomputes them and raises `CheckpointError` on any mismatch. A
step without them (saved before checksums existed, or whose `checksums/` was
deleted) cannot be verified and is refused, unless the run allows it
(`allow_unverified`, `--config.checkpoint.allow_unverified=True`): then it
is restored unverified, with a warning.

Interrupts: Ctrl-C (SIGINT) during `save` is held back until the step is
written, then raised, so an interrupted run leaves whole steps; a save that
fails (read-only folder, full disk) removes its partial step and raises a
one-line `CheckpointError`; so does `close()`, where Orbax reports that
failure again, or first.

Concurrency: a `Checkpointer` holds an inter-process lock on its folder (the
file `LOCK_NAME` inside it, via `filelock`) from construction until `close()`,
so two runs on one folder take turns: the second waits (saying so once), then
sees and reuses what the first finished. Within one process, Checkpointers on
the same folder share the lock. On open, step folders that lack a readable
`meta/` or a `state/` (left by a crash or by concurrent runs of older
versions) are renamed to `<step>.incomplete-<time>` with a warning, so they
never block the folder.

Several processes (jax.distributed): all of them open, save, restore and
close every Checkpointer, as Orbax requires (it writes the replicated arrays
from process 0 and synchronises the others); the folder must be on a file
system they all see. The folder lock and the setting-aside of incomplete
steps happen on process 0 alone, and the others wait for it at a barrier
(`parallel.sync`); every process verifies the checksums of what it restored.
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any, Callable

import filelock
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from mu_jax import errors
from mu_jax import parallel

PyTree = Any

LOCK_NAME = '.mu_jax.lock'  # Inside the checkpoint folder; removed by close().
_CHECKSUMS = 'checksums'  # The Orbax item holding the per-array digests.

# Lock files this process holds -> [FileLock, open Checkpointers using it].
_held: dict[str, list] = {}
_held_guard = threading.Lock()
# Whether steps without checksums are restored (unverified) or refused; set
# per run from config.checkpoint.allow_unverified (`allow_unverified`).
_policy = {'allow_unverified': False}


# The environment variable naming where models are cached when
# --config.checkpoint_dir is '' (the default; `default_directory`).
DIRECTORY_ENV = 'MU_JAX_CHECKPOINT_DIR'


def default_directory() -> str:
  """Where models are cached by default, as an absolute path.

  $MU_JAX_CHECKPOINT_DIR if set; else the `checkpoints/` folder of the
  checkout mu_jax runs from; else (an installed package)
  ~/.cache/mu_jax/checkpoints. The same folder whatever the current
  directory, so `mu-jax` run from anywhere reuses the models it trained.
  """
  named = os.environ.get(DIRECTORY_ENV)
  if named:
    return os.path.abspath(os.path.expanduser(named))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if (os.path.isfile(os.path.join(root, 'main.py'))
      and os.path.isdir(os.path.join(root, 'checkpoints'))):
    return os.path.join(root, 'checkpoints')
  return os.path.join(os.path.expanduser('~'), '.cache', 'mu_jax',
                      'checkpoints')


class CheckpointError(errors.MuJaxError, RuntimeError):
  """A checkpoint is missing, unreadable or does not match the run."""


def allow_unverified(allowed: bool) -> None:
  """Whether `Checkpointer.restore` takes steps that have no checksums.

  Off by default: such a step may be corrupt in ways nothing detects (a
  flipped bit shows up only as a NaN or a diverging run much later).
  `experiment.setup` sets it from `config.checkpoint.allow_unverified`.
  """
  _policy['allow_unverified'] = bool(allowed)


def _has_leaves(tree) -> bool:
  return bool(jax.tree.leaves(tree))


def _lock_folder(directory: str) -> str | None:
  """Takes the folder's inter-process lock; returns its path (None: no lock).

  Re-entrant within a process. Blocks (after one warning) while another
  process holds it; the OS drops a dead process's lock, so none goes stale.
  """
  path = os.path.join(directory, LOCK_NAME)
  # The guard stays held while waiting: mu_jax opens Checkpointers from one
  # thread, and this keeps two threads from racing for one folder.
  with _held_guard:
    if path in _held:
      _held[path][1] += 1
      return path
    lock = filelock.FileLock(path, thread_local=False)
    try:
      try:
        lock.acquire(blocking=False)
      except filelock.Timeout:
        logging.warning('waiting for another run that holds %s ...',
                        directory)
        lock.acquire()
    except OSError as err:  # E.g. a read-only folder given to reuse.
      logging.warning('cannot lock %s (%s); using it unlocked, so run '
                      'nothing else on it meanwhile', directory,
                      err.strerror or err)
      return None
    _held[path] = [lock, 1]
    return path


def _unlock_folder(path: str) -> None:
  with _held_guard:
    entry = _held[path]
    entry[1] -= 1
    if entry[1]:
      return
    del _held[path]
    lock = entry[0]
    if isinstance(lock, filelock.UnixFileLock):
      # Unlinked while still held, so no lock file is left in the folder; a
      # waiter that opened the old file sees it unlinked and retries (filelock
      # checks st_nlink), so exclusion holds.
      with contextlib.suppress(OSError):
        os.unlink(path)
    lock.release()


@contextlib.contextmanager
def _interrupts_held():
  """Holds SIGINT back inside the block, then delivers it to its handler.

  With Python's default handler that is a KeyboardInterrupt raised after the
  block. Only in the main thread, where Python runs signal handlers;
  elsewhere a no-op.
  """
  if (threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGINT) is None):  # Not set from Python.
    yield
    return
  received = []
  previous = signal.signal(signal.SIGINT,
                           lambda signum, frame: received.append(frame))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if not received or previous == signal.SIG_IGN:
    return
  logging.warning('interrupted; the checkpoint being written was finished '
                  'first')
  if callable(previous):  # Python's default handler raises KeyboardInterrupt.
    previous(signal.SIGINT, received[0])
  else:  # SIG_DFL: the process ends as the signal says.
    signal.raise_signal(signal.SIGINT)


def _incomplete_reason(step_dir: str) -> str | None:
  """Why a step folder cannot be a finished save, or None if it can be."""
  try:
    with open(os.path.join(step_dir, 'meta', 'metadata')) as f:
      meta = json.load(f)
  except FileNotFoundError:
    return 'no meta/'
  except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError.
    return f'unreadable meta/ ({type(e).__name__})'
  if not isinstance(meta, dict):
    return 'meta/ is not a JSON object'
  if not os.path.isdir(os.path.join(step_dir, 'state')):
    return 'no state/'
  return None


def _key_data(leaf):
  """Typed PRNG key arrays as their uint32 key data; other leaves as is."""
  if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(
      leaf.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(leaf)
  return leaf


def _digest(array: np.ndarray) -> str:
  """SHA-256 of the dtype name, shape and little-endian C-order bytes."""
  if array.dtype.byteorder == '>' or (array.dtype.byteorder == '=' and
                                      sys.byteorder == 'big'):
    array = array.byteswap()
  array = np.ascontiguousarray(array)
  digest = hashlib.sha256(f'{array.dtype.name}:{array.shape};'.encode())
  digest.update(array.reshape(-1).view(np.uint8))
  return digest.hexdigest()


def _checksums(items: dict[str, PyTree]) -> dict[str, dict]:
  """{'<item><key path>': {'dtype', 'shape', 'sha256'}} of every array leaf.

  Python scalars count as 0-d arrays; leaves numpy cannot hold as plain
  bytes (objects, strings) are left out.
  """
  paths, leaves = [], []
  for name, tree in items.items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      paths.append(name + jax.tree_util.keystr(path))
      leaves.append(_key_data(leaf))
  out = {}
  # One device_get for all leaves: the copies to host overlap.
  for path, leaf in zip(paths, jax.device_get(leaves)):
    try:
      array = np.asarray(leaf)
    except (TypeError, ValueError):
      continue
    if array.dtype.hasobject or array.dtype.kind in 'USM':
      continue
    out[path] = {'dtype': array.dtype.name, 'shape': list(array.shape),
                 'sha256': _digest(array)}
  return out


class Checkpointer:
  """Saves and restores one training run's per-epoch checkpoints.

  Holds the folder's inter-process lock until `close()`; use it as a context
  manager or close it in a `finally`.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    try:
      os.makedirs(self.directory, exist_ok=True)
    except OSError as e:
      error = errors.file_error(
          e, self.directory, 'cannot create checkpoint folder',
          'set --config.checkpoint_dir to a writable folder')
      raise CheckpointError(str(error) if error else (
          f'cannot create checkpoint folder {self.directory} ({e.strerror}); '
          'set --config.checkpoint_dir to a writable folder')) from e
    # One run of several processes is one holder of the folder: process 0
    # locks it and tidies it while the others wait (locking it from every
    # process would deadlock: one waits for the lock, the holder for it in
    # Orbax's barriers).
    main = parallel.is_main_process()
    self._lock = _lock_folder(self.directory) if main else None
    self._closed = False
    self._save_failed = False  # Orbax may write on after a failed save.
    try:
      if main:
        self._set_aside_incomplete_steps()
      parallel.sync('mu_jax: checkpoint folder opened')
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                               create=True))
    except BaseException:
      self._closed = True
      if self._lock is not None:
        _unlock_folder(self._lock)
      raise

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def _set_aside_incomplete_steps(self) -> None:
    """Renames step folders that cannot be a finished save, with a warning."""
    for entry in os.scandir(self.directory):
      if not (entry.name.isdigit() and entry.is_dir()):
        continue
      reason = _incomplete_reason(entry.path)
      if reason is None:
        continue
      stamp = time.strftime('%Y%m%d-%H%M%S')
      target = f'{entry.path}.incomplete-{stamp}'
      suffix = 1
      while os.path.exists(target):
        suffix += 1
        target = f'{entry.path}.incomplete-{stamp}-{suffix}'
      try:
        os.rename(entry.path, target)
      except OSError as e:
        raise CheckpointError(
            f'checkpoint {entry.path} is incomplete ({reason}) and cannot be '
            f'moved aside ({e.strerror}); delete it') from e
      logging.warning(
          'checkpoint %s is incomplete (%s; a crash or a concurrent run left '
          'it), so it is ignored and moved to %s; delete that when done',
          entry.path, reason, target)

  def latest_meta(self) -> dict | None:
    """The metadata of the newest complete step, or None if there is none."""
    step = self._manager.latest_step()
    if step is None:
      return None
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except
      if parallel.peer_failure(e):
        raise  # Another process died in Orbax's barrier: not the files.
      raise CheckpointError(
          f'checkpoint {self.directory}/{step} is unreadable ({e!r:.80}); '
          'delete that directory to start over') from e
    return dict(restored['meta'])

  def restore(self, state: PyTree, method_state: PyTree = ()):
    """Restores the newest step into the structure (and shardings) given.

    Verifies each restored array against the step's checksums.

    Returns:
      (state, method_state, meta).

    Raises:
      CheckpointError: no step, it does not fit the structure, or it is
        corrupt (a checksum mismatch).
    """
    step = self._manager.latest_step()
    if step is None:
      raise CheckpointError(f'no checkpoint in {self.directory}')
    items = {'state': state}
    if _has_leaves(method_state):
      items['method_state'] = method_state
    args = {k: ocp.args.StandardRestore(
        jax.tree.map(ocp.utils.to_shape_dtype_struct, v))
            for k, v in items.items()}
    has_checksums = os.path.isdir(
        os.path.join(self.directory, str(step), _CHECKSUMS))
    if not has_checksums and not _policy['allow_unverified']:
      raise CheckpointError(
          f'checkpoint {self.directory}/{step} has no checksums (its '
          f'{_CHECKSUMS}/ folder is missing: deleted, or saved by an older '
          'mu_jax), so it cannot be verified; delete it to start over, or '
          'pass --config.checkpoint.allow_unverified=True to use it as it is')
    if has_checksums:
      args[_CHECKSUMS] = ocp.args.JsonRestore()
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(meta=ocp.args.JsonRestore(), **args))
    except Exception as e:  # pylint: disable=broad-except
      if parallel.peer_failure(e):
        raise  # Another process died in Orbax's barrier: not the files.
      raise CheckpointError(
          f'checkpoint {self.directory}/{step} does not fit this model or is '
          f'corrupt ({type(e).__name__}); delete it or use another '
          '--config.checkpoint_dir') from e
    if has_checksums:
      self._verify(step, restored[_CHECKSUMS],
                   {k: restored[k] for k in items})
    else:
      logging.warning('checkpoint %s/%d has no checksums; restoring it '
                      'unverified (--config.checkpoint.allow_unverified)',
                      self.directory, step)
    return (restored['state'], restored.get('method_state', method_state),
            dict(restored['meta']))

  def _verify(self, step: int, saved: Any, restored: dict[str, PyTree]):
    """Raises CheckpointError if a restored array differs from its checksum."""
    arrays = saved.get('arrays') if isinstance(saved, dict) else None
    if not isinstance(arrays, dict):
      raise CheckpointError(
          f'checkpoint {self.directory}/{step} is corrupt (unreadable '
          'checksums); delete it or use another --config.checkpoint_dir')
    unverified = []
    for path, record in _checksums(restored).items():
      expected = arrays.get(path)
      if not isinstance(expected, dict) or (
          expected.get('dtype'), expected.get('shape')) != (
              record['dtype'], record['shape']):
        unverified.append(path)  # Restored with a cast, or not recorded.
      elif expected.get('sha256') != record['sha256']:
        raise CheckpointError(
            f'checkpoint {self.directory}/{step} is corrupt (checksum '
            f'mismatch in {path}); delete it to fall back to an earlier step, '
            f'or delete {self.directory} to start over')
    if unverified:
      logging.warning('checkpoint %s/%d: %d arrays were restored with another '
                      'dtype or shape than saved (e.g. %s), so their checksums '
                      'were not checked', self.directory, step,
                      len(unverified), unverified[0])

  def save(self, step: int, state: PyTree, method_state: PyTree, meta: dict):
    """Saves one step, with its checksums, and waits until it is written.

    Ctrl-C (SIGINT) during the save is held back until the step is written,
    then raised as KeyboardInterrupt: an interrupted run leaves whole steps.

    Raises:
      CheckpointError: the folder cannot be written (read-only, full disk);
        the partial step is removed.
    """
    trees = {'state': state}
    if _has_leaves(method_state):
      trees['method_state'] = method_state
    with _interrupts_held():
      try:
        checksums = {'algorithm': 'sha256 of dtype name, shape and '
                                  'little-endian C-order bytes',
                     'arrays': _checksums(trees)}
        items = {k: ocp.args.StandardSave(v) for k, v in trees.items()}
        self._manager.save(step, args=ocp.args.Composite(
            meta=ocp.args.JsonSave(meta),
            **{_CHECKSUMS: ocp.args.JsonSave(checksums)}, **items))
        self._manager.wait_until_finished()
      except Exception as e:  # pylint: disable=broad-except
        error = errors.file_error(
            e, f'{self.directory}/{step}', 'cannot write checkpoint',
            'set --config.checkpoint_dir to a writable folder')
        if error is None:
          raise
        self._save_failed = True
        if parallel.is_main_process():  # The one that writes.
          self._remove_partial(step)
        raise CheckpointError(str(error)) from e

  def _remove_partial(self, step: int | None = None) -> None:
    """Deletes what a failed save left (Orbax's temporary folders).

    Args:
      step: that save's step; None: every step's (the folder's lock keeps
        other runs from writing in it meanwhile).
    """
    def partial(name: str) -> bool:
      if step is None:
        return '.orbax-checkpoint-tmp' in name
      return name.startswith(f'{step}.orbax-checkpoint-tmp')

    with contextlib.suppress(OSError):
      for entry in os.scandir(self.directory):
        if partial(entry.name):
          shutil.rmtree(entry.path, ignore_errors=True)

  def close(self):
    """Closes Orbax and releases the folder's lock; safe to call twice.

    Raises:
      CheckpointError: Orbax reports only now that a write failed (a full
        disk); what it left is removed. While another exception unwinds
        (`save`'s one-line error for that same write), Orbax's report is
        logged at debug level instead of replacing it.
    """
    if self._closed:
      return
    self._closed = True
    unwinding = sys.exc_info()[1] is not None
    try:
      try:
        # Waits for Orbax's background threads; re-raises what failed there.
        self._manager.close()
      except Exception as e:  # pylint: disable=broad-except
        if parallel.peer_failure(e) and not unwinding:
          raise  # Another process died in Orbax's barrier: not the files.
        error = errors.file_error(
            e, self.directory, 'cannot write checkpoint folder',
            'set --config.checkpoint_dir to a writable folder')
        if parallel.is_main_process() and error is not None:
          self._remove_partial()
        if unwinding:
          (logging.debug if error is not None else logging.warning)(
              'closing checkpoint folder %s failed too: %r', self.directory,
              e)
        elif error is None:
          raise
        else:
          raise CheckpointError(str(error)) from e
      finally:
        # Orbax's background threads may still have been creating a failed
        # save's temporary folders when `save` removed them (seen on a
        # loaded machine); they are done now, so remove what they left.
        if self._save_failed and parallel.is_main_process():
          self._remove_partial()
      if not unwinding:
        # Process 0 keeps the lock until every process is done with the
        # folder. Not while an exception unwinds: that may have hit this
        # process alone, and a barrier the others never reach would hang it.
        parallel.sync('mu_jax: checkpoint folder closed')
    finally:
      if self._lock is not None:
        _unlock_folder(self._lock)


def train_or_reuse(directory: str, recipe: dict, what: str, template: PyTree,
                   train: Callable[['Checkpointer'], Any]
                   ) -> tuple[PyTree, dict]:
  """Reuses the finished model in `directory`, resumes it, or trains it.

  The one home of every cached model (original, retrain, SimCLR encoder,
  augmentation generators). A folder holding a model made with another
  `recipe` is refused rather than silently reused; an unfinished one is
  resumed by `train` (`train.run` resumes from the checkpointer it is
  given). The folder stays locked meanwhile, so a concurrent run on it waits
  and then reuses the model.

  Args:
    directory: the checkpoint folder.
    recipe: what the weights depend on (JSON types after a round trip); saved
      as `checkpoint_meta={'recipe': ...}` by `train`.
    what: names the model in messages, e.g. 'a retrain model'.
    template: the TrainState to restore into (structure and shardings).
    train: `checkpointer -> train.Result`: trains (or resumes) with
      `checkpointer=checkpointer, checkpoint_meta={'recipe': recipe}`.

  Returns:
    (state, info) with info = {'seconds' (training time; that of the run
    that trained it when reused), 'reused', 'checkpoint', 'history'} and,
    when trained now, 'compile_seconds' and 'resumed_from_epoch'.

  Raises:
    CheckpointError: the folder holds another recipe's model, or is corrupt.
  """
  recipe = json.loads(json.dumps(recipe))  # Tuples become lists, as in JSON.
  with Checkpointer(directory) as checkpointer:
    meta = checkpointer.latest_meta()
    if meta is not None and meta.get('recipe') != recipe:
      raise CheckpointError(
          f'{directory} holds {what} trained with another recipe, split or '
          'dataset; delete it or set --config.checkpoint_dir')
    if meta is not None and meta.get('done'):
      state, _, meta = checkpointer.restore(template)
      logging.info('reusing %s in %s', what, directory)
      return state, {'seconds': meta['run_seconds'], 'reused': True,
                     'checkpoint': directory, 'history': meta['history']}
    if meta is not None:
      logging.info('resuming %s in %s from epoch %d', what, directory,
                   meta['epoch'])
    result = train(checkpointer)
  return result.state, {'seconds': result.run_seconds, 'reused': False,
                        'compile_seconds': result.compile_seconds,
                        'resumed_from_epoch': result.resumed_from_epoch,
                        'checkpoint': directory, 'history': result.history}
