"""The run report: `report.json` (written atomically) and the printed table."""

import errno
import importlib.metadata
import itertools
import json
import os
import platform
from typing import Any, Callable, Mapping, NamedTuple

import jax

from mu_jax import atomic_files
from mu_jax import errors
from mu_jax import parallel

PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint',
            'tensorflow-datasets', 'ml-collections', 'absl-py', 'numpy',
            'scikit-learn')


def versions() -> dict[str, str]:
  out = {'python': platform.python_version()}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = 'not installed'
  return out


def device_info() -> dict[str, Any]:
  devices = jax.devices()
  return {'platform': devices[0].platform, 'kind': devices[0].device_kind,
          'count': len(devices), 'processes': jax.process_count()}


_EVENT_FILES = itertools.count()  # This process's event files, numbered.


class EventLog:
  """Per-step scalars as TensorBoard event files (tensorboardX, no TF).

  `tensorboard --logdir <workdir>/tensorboard` shows them while a run
  trains. Calling it with (step, {name: value}) adds one scalar per name,
  and `learning_rate` (`step -> lr`, the optimizer's schedule) adds the
  step's learning rate.
  """

  def __init__(self, directory: str,
               learning_rate: Callable[[int], float] | None = None):
    import tensorboardX  # pylint: disable=g-import-not-at-top
    self.directory = directory
    self._learning_rate = learning_rate
    # Event files are named by the second and the host: a second writer in
    # the same folder within a second (the guard's checks after a short
    # attempt) would truncate the first's file without a suffix of its own.
    self._writer = tensorboardX.SummaryWriter(
        directory, flush_secs=10,
        filename_suffix=f'.{os.getpid()}.{next(_EVENT_FILES)}')

  def __call__(self, step: int, scalars: Mapping[str, float]):
    for name, value in scalars.items():
      self._writer.add_scalar(name, value, step)
    if self._learning_rate is not None:
      # The driver counts steps from 1; the schedule from 0.
      self._writer.add_scalar('learning_rate',
                              float(self._learning_rate(step - 1)), step)

  def text(self, name: str, text: str):
    """A text entry (e.g. the run's config), shown under TEXT."""
    self._writer.add_text(name, text, 0)

  def close(self):
    self._writer.close()


def write_json(path: str, payload: Mapping[str, Any]):
  """Writes JSON whole (`atomic_files.write_json`): never half-written.

  On the processes of a multi-process run other than process 0 it writes
  nothing: process 0 writes the run's files (`parallel.is_main_process`).

  Raises:
    errors.FileSystemError: the folder cannot be created or written (a
      file in the way, read-only, full); no file is left behind.
  """
  if not parallel.is_main_process():
    return
  try:
    atomic_files.write_json(path, payload)
  except OSError as e:
    error = errors.file_error(e, path, 'cannot write',
                              'choose another --workdir')
    if error is None:
      raise
    raise error from e


class RunPaths(NamedTuple):
  """Where one run of an experiment writes inside its workdir.

  A workdir that holds finished runs gets a numbered one (`run_paths`):
  run 1 writes report.json, tensorboard/ and unlearned/; run k > 1
  report_k.json, tensorboard_k/ and unlearned_k/. A finished report is
  never overwritten and TensorBoard never shows a step twice, while the
  workdir's caches (forgetting_quality/) serve every run.
  """
  index: int
  report: str
  tensorboard: str
  unlearned: str


def run_paths(workdir: str, index: int | None = None) -> RunPaths:
  """The paths of run `index`, or of the first run not finished yet."""
  def paths(k):
    suffix = '' if k == 1 else f'_{k}'
    return RunPaths(k, os.path.join(workdir, f'report{suffix}.json'),
                    os.path.join(workdir, f'tensorboard{suffix}'),
                    os.path.join(workdir, f'unlearned{suffix}'))

  if index is not None:
    return paths(index)
  k = 1
  while os.path.exists(paths(k).report):
    k += 1
  return paths(k)


def finished_runs(workdir: str) -> list[RunPaths]:
  """The runs of `workdir` that wrote their report, in order."""
  runs, k = [], 1
  while os.path.exists(run_paths(workdir, k).report):
    runs.append(run_paths(workdir, k))
    k += 1
  return runs


# What a file system takes when it cannot say (POSIX's usual limits).
_NAME_MAX, _PATH_MAX = 255, 4096


def _check_name_lengths(path: str, target: str, probe: str, flag: str,
                        fix: str) -> None:
  """Refuses a folder name too long to create (ENAMETOOLONG).

  Else the run would fail at its first write under `path`, after training.
  The limits are those of `probe`'s file system (the nearest existing folder).
  """
  try:
    name_max = os.pathconf(probe, 'PC_NAME_MAX')
    path_max = os.pathconf(probe, 'PC_PATH_MAX')
  except (OSError, ValueError):  # Not on this platform or file system.
    name_max, path_max = _NAME_MAX, _PATH_MAX
  longest = max(target.split(os.sep), key=lambda n: len(os.fsencode(n)))
  size = len(os.fsencode(longest))
  if size > name_max:
    raise errors.FileSystemError(
        f'{flag} {path}: the folder name {longest[:20]}... is {size} bytes '
        f'long, more than the {name_max} its file system allows; {fix}',
        errno.ENAMETOOLONG)
  # The files mu_jax writes under the folder add their names to the path.
  room = path_max - _NAME_MAX
  if len(os.fsencode(target)) > room:
    raise errors.FileSystemError(
        f'{flag} {path}: the path is {len(os.fsencode(target))} bytes long; '
        f'its file system allows {path_max} for the files under it, so keep '
        f'it under {room}; {fix}', errno.ENAMETOOLONG)


def check_output_folder(path: str, flag: str) -> None:
  """Refuses, up front, an output folder that could not be written.

  Creates nothing: looks at `path` or its nearest existing parent.

  Args:
    path: the folder (it need not exist yet).
    flag: the flag that named it, for the message (e.g. '--workdir').

  Raises:
    errors.FileSystemError: `path` or a parent is a file, a folder name in
      it is longer than its file system allows, or the nearest existing
      folder is read-only, not writable or on a full device.
  """
  target = os.path.abspath(path)
  probe = target
  while not os.path.exists(probe) and os.path.dirname(probe) != probe:
    probe = os.path.dirname(probe)
  fix = f'choose another {flag}'
  _check_name_lengths(path, target, probe, flag, fix)
  if not os.path.isdir(probe):
    what = 'it is' if probe == target else f'{probe} is'
    raise errors.FileSystemError(
        f'{flag} {path}: {what} a file, not a folder; {fix}', errno.ENOTDIR)
  try:
    stat = os.statvfs(probe)
  except OSError:  # Not on this platform or file system: the write tells.
    return
  if stat.f_flag & os.ST_RDONLY:
    raise errors.FileSystemError(
        f'{flag} {path}: {probe} is on a read-only file system; {fix}',
        errno.EROFS)
  if not os.access(probe, os.W_OK | os.X_OK):
    raise errors.FileSystemError(
        f'{flag} {path}: {probe} is not writable (permission denied); {fix}',
        errno.EACCES)
  if stat.f_bavail == 0:
    raise errors.FileSystemError(
        f'{flag} {path}: no space left on the device of {probe}; free some '
        f'space or {fix}', errno.ENOSPC)


_COLUMNS = (('UA', 'unlearn_acc'), ('RA', 'retain_acc'), ('TA', 'test_acc'),
            ('Forget-test', 'forget_test_acc'), ('MIA-eff.', 'mia_efficacy'),
            ('MIA-AUC', 'mia_loss_auc'), ('Avg.Gap', 'avg_gap'),
            ('F', 'forgetting_quality'), ('Score', 'challenge_score'))


def format_table(rows: Mapping[str, Mapping[str, float]],
                 seconds: Mapping[str, float]) -> str:
  """A markdown table in the SalUn paper's format (UA, RA, TA, MIA, gap, RTE).

  Args:
    rows: model label -> metrics dict (see `evaluation.metrics`).
    seconds: model label -> run time in seconds (RTE for the unlearned one).
  """
  columns = [c for c in _COLUMNS
             if any(c[1] in row for row in rows.values())]
  header = ['model'] + [c[0] for c in columns] + ['time (s)']
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
  for label, row in rows.items():
    cells = [label]
    for _, key in columns:
      value = row.get(key)
      fmt = '{:.3f}' if key in ('mia_loss_auc', 'forgetting_quality',
                                'challenge_score') else '{:.2f}'
      cells.append('—' if value is None else fmt.format(value))
    time_s = seconds.get(label)
    cells.append('—' if time_s is None else f'{time_s:.1f}')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def experiment(config, dataset, split, *, workdir: str, method: str,
               rows: Mapping[str, Mapping[str, float]],
               infos: Mapping[str, Mapping[str, Any]],
               simclr_info: Mapping[str, Any] | None,
               seconds: Mapping[str, float],
               quality: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The report of one experiment (`pipeline.run`), its table included.

  Args:
    config: the run's config.
    dataset: the `data.Dataset`.
    split: the `splits.Split`.
    workdir: where the report goes.
    method: the unlearning method's name.
    rows: 'original', 'retrain', 'unlearned' -> `evaluation.row` plus avg_gap.
    infos: the same keys -> training / unlearning info (seconds, reused,
      checkpoint, history; the unlearned one also compile_seconds,
      augmentation and guard).
    simclr_info: the SimCLR encoder's training info, if it was used.
    seconds: {'eval', 'total'} wall times.
    quality: `forgetting_quality.measure`'s result, if it was asked for.
  """
  original, retrain, unlearned = (infos[k] for k in ('original', 'retrain',
                                                     'unlearned'))
  payload = {
      'config': json.loads(config.to_json()),
      'dataset': {'name': dataset.name, 'fingerprint': dataset.fingerprint(),
                  'train': int(len(dataset.train_labels)),
                  'test': int(len(dataset.test_labels)),
                  'num_classes': dataset.num_classes,
                  'image_shape': list(dataset.train_images.shape[1:])},
      'split': {'mode': split.mode, 'name': split.name,
                'digest': split.digest(), 'forget': int(len(split.forget)),
                'retain': int(len(split.retain)), 'test': int(len(split.test)),
                'val': int(len(split.val)),
                'forget_test': int(len(split.forget_test)),
                'forget_classes': list(split.forget_classes)},
      'workdir': workdir,
      'method': method,
      'augmentation': unlearned['augmentation'],
      'guard': unlearned['guard'],
      'forgetting_quality': quality,
      'metrics': dict(rows),
      'timings': {
          'original_train_seconds': original['seconds'],
          'original_reused': original['reused'],
          'original_resumed_from_epoch': original.get('resumed_from_epoch'),
          'retrain_seconds': retrain['seconds'],
          'retrain_reused': retrain['reused'],
          'retrain_resumed_from_epoch': retrain.get('resumed_from_epoch'),
          'unlearn_seconds': unlearned['seconds'],
          'unlearn_compile_seconds': unlearned['compile_seconds'],
          # Unlearning's wall time (guard rails and compilation included)
          # over the retrain's: what unlearning saves (the guard's budget
          # is a quarter of the retrain's steps).
          'unlearn_share_of_retrain': (
              (unlearned['seconds'] + (unlearned['compile_seconds'] or 0.0))
              / retrain['seconds'] if retrain['seconds'] else None),
          'simclr_pretrain_seconds': simclr_info and simclr_info['seconds'],
          'eval_seconds': seconds['eval'],
          'total_seconds': seconds['total']},
      'history': {k: infos[k]['history'] for k in infos},
      'checkpoints': {'original': original['checkpoint'],
                      'retrain': retrain['checkpoint'],
                      'simclr': simclr_info and simclr_info['checkpoint']},
      'versions': versions(),
      'device': device_info(),
  }
  label = f'unlearned ({method})'
  table = format_table(
      {'original': rows['original'], 'retrain': rows['retrain'],
       label: rows['unlearned']},
      {'original': original['seconds'], 'retrain': retrain['seconds'],
       label: unlearned['seconds']})
  guard = unlearned['guard']
  if guard.get('summary'):
    table += '\n' + guard['summary']
  if guard.get('caveat'):
    table += '\n' + guard['caveat']
  if guard.get('headline'):
    # A run that did not forget says so first (mu_jax/guard.py, `UNMET`).
    table = guard['headline'] + '\n' + table
  if quality:
    table += (f"\nforgetting quality over {quality['models']} unlearned and "
              f"{quality['models']} retrained models: F = "
              f"{quality['forgetting_quality']:.3f}, challenge score "
              f"{quality['challenge_score']:.3f}, mean epsilon "
              f"{quality['mean_epsilon']:.2f}")
  payload['table'] = table
  return payload
