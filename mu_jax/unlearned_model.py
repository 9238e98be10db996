"""The unlearned model on disk: saved by every run, loaded by `load`.

A run of `main.py` writes the model it hands on (the guard rails' kept
model) as an Orbax checkpoint in `<workdir>/unlearned/` (`unlearned_<k>/`
for the k-th run into one workdir, `report.run_paths`), with the same
checksums as every mu_jax checkpoint, and names it in report.json
(`checkpoints.unlearned`). Its recipe records the method, the split's
fingerprint and the data's, so that

  model, variables = mu_jax.load('runs/.../salun_random1000_s0')
  logits, _ = model.apply(variables, images, train=False)

gives back the weights, and `--config.init_from=<workdir>/unlearned` starts
another run (a second round of unlearning) from them.

`save_variables` and `load_variables` do the same for any model's variables
(the library face's, `mu_jax.unlearn(...).variables`).
"""

import json
import os
from typing import Any

import jax
import ml_collections

from mu_jax import checkpoint as checkpoint_lib
from mu_jax import models
from mu_jax import optim
from mu_jax import report as report_lib
from mu_jax import state as state_lib

PyTree = Any


def save(directory: str, original, unlearned, *, config, dataset, split,
         method: str, guard_outcome: str | None,
         run_seconds: float) -> str:
  """Saves `unlearned`'s weights in `directory`; returns the folder.

  The state saved is the original's with the unlearned parameters and
  model state: the training recipe's optimizer, whatever the unlearning
  method used, so that the folder restores into the same template as an
  original model (`--config.init_from`, `load`).
  """
  state = original.replace(params=unlearned.params,
                           model_state=unlearned.model_state)
  recipe = json.loads(json.dumps({  # Tuples become lists, as in JSON.
      'dataset_fingerprint': dataset.fingerprint(),
      'model': models.recipe(config.model),
      'unlearned': {'method': method, 'mode': split.mode,
                    'split': split.name, 'split_digest': split.digest(),
                    'seed': config.seed, 'guard_outcome': guard_outcome}}))
  meta = {'epoch': 1, 'epochs': 1, 'done': True, 'positions': {},
          'history': [], 'run_seconds': run_seconds, 'recipe': recipe}
  with checkpoint_lib.Checkpointer(directory, max_to_keep=1) as checkpointer:
    checkpointer.save(0, state, (), meta)
  return os.path.abspath(directory)


def load(workdir: str, run: int | None = None) -> tuple[Any, PyTree]:
  """The unlearned model of a finished run: `(flax module, variables)`.

  Args:
    workdir: the run's `--workdir` (it holds report.json).
    run: which run of the workdir (1 = report.json, k = report_k.json);
      None = the latest.

  Returns:
    The model (`mu_jax.models`, its `apply(variables, images,
    train=False)` gives `(logits, features)` for normalised images) and its
    variables ({'params': ..., and 'batch_stats' where it has BatchNorm}).

  Raises:
    checkpoint.CheckpointError: no finished run, or its model is missing or
      corrupt.
  """
  runs = report_lib.finished_runs(workdir)
  if not runs:
    raise checkpoint_lib.CheckpointError(
        f'{workdir} holds no finished run (no report.json); pass the '
        '--workdir of a run')
  paths = runs[-1] if run is None else report_lib.run_paths(workdir, run)
  try:
    with open(paths.report) as f:
      payload = json.load(f)
  except OSError as e:
    raise checkpoint_lib.CheckpointError(
        f'{workdir}: no report of run {run} ({e.strerror})') from e
  directory = (payload.get('checkpoints') or {}).get('unlearned')
  if not directory or not os.path.isdir(directory):
    directory = paths.unlearned
  if not os.path.isdir(directory):
    raise checkpoint_lib.CheckpointError(
        f'{paths.report} has no saved unlearned model ({directory} is '
        'missing)')
  config = ml_collections.ConfigDict(payload['config'])
  model = models.create(config.model, payload['dataset']['num_classes'])
  tx = optim.make_optimizer(config.train.optim, 1, 1)
  template = state_lib.create(model, tx,
                              tuple(payload['dataset']['image_shape']),
                              jax.random.key(0))
  with checkpoint_lib.Checkpointer(directory) as checkpointer:
    state, _, _ = checkpointer.restore(template)
  return model, {'params': state.params, **state.model_state}


def save_variables(directory: str, variables: PyTree,
                   meta: dict[str, Any] | None = None) -> str:
  """Saves a model's variables as a checksummed Orbax checkpoint.

  Args:
    directory: a new folder, or an empty one: a folder that holds anything
      is refused, so that a good checkpoint is never overwritten.
    variables: e.g. `mu_jax.unlearn(...).variables`.
    meta: JSON-able facts to keep beside them (e.g. the unlearning report).

  Returns:
    The folder's absolute path.
  """
  if os.path.isdir(directory) and os.listdir(directory):
    raise checkpoint_lib.CheckpointError(
        f'{directory} is not empty; save to a new folder (nothing there was '
        'changed)')
  with checkpoint_lib.Checkpointer(directory, max_to_keep=1) as checkpointer:
    checkpointer.save(0, dict(variables), (), {'variables': True,
                                               **(meta or {})})
  return os.path.abspath(directory)


def load_variables(directory: str, like: PyTree) -> dict[str, PyTree]:
  """The variables `save_variables` wrote, restored into `like`'s structure
  (e.g. what `model.init` returns), each array checked against its
  checksum."""
  with checkpoint_lib.Checkpointer(directory) as checkpointer:
    variables, _, _ = checkpointer.restore(dict(like))
  return variables
