"""The benchmark suite's store of finished cells, the basis of its resume.

A cell is one (mode, seed, model) of a suite run: the original or retrain
model of that seed's split, or one method unlearned from that original. Each
finished cell is one JSON file, with the penultimate features of its t-SNE
samples beside it for the first seed:

  <workdir>/cells/<mode>/s<seed>/<model>.json
  <workdir>/cells/<mode>/s<seed>/<model>.features.npz

Both are written atomically (`atomic_files`: a temporary file, then a
rename), the features first: a cell's JSON marks it done. The JSON holds the
cell's key, a digest of every setting its numbers depend on (`cell_key`); a
rerun skips a cell whose key is unchanged, so a killed suite resumes where
it stopped and a changed setting reruns exactly the cells it affects. This
module only stores and looks up cells; mu_jax/suite.py decides what to run
and runs it.
"""

import json
import os
from typing import Any, Iterable, Mapping

import ml_collections
import numpy as np
from absl import logging

from mu_jax import atomic_files
from mu_jax import models
from mu_jax import parallel
from mu_jax import report
from mu_jax import splits as splits_lib

# The models every (mode, seed) has besides the methods: their cells depend
# on the training recipe only, never on a method's or the guard's settings.
BASE_MODELS = ('original', 'retrain')
# With `suite.guard = 'both'` every method has a second row, run without the
# guard rails: its model name is the method's plus this suffix.
UNGUARDED = '-unguarded'


def method_of(model: str) -> str:
  """The method a row runs: its name without the unguarded suffix."""
  return model.removesuffix(UNGUARDED)


def config_json(config: ml_collections.ConfigDict) -> Any:
  """A config as plain JSON values, the form cells and their keys hold."""
  return json.loads(config.to_json())


def cell_key(config: ml_collections.ConfigDict, split: splits_lib.Split,
             fingerprint: str, model: str) -> str:
  """Digest of everything a cell's numbers depend on: a change reruns it.

  The checkpoint folder is left out (it does not change the numbers), so a
  resume with another `checkpoint_dir` reuses the cells. The payload must not
  change, or every existing store reruns from scratch.

  Args:
    config: the cell's config (`config.method` is the method's section).
    split: the cell's split.
    fingerprint: the dataset's fingerprint.
    model: 'original', 'retrain' or a method name.
  """
  suite = config.suite
  payload = {
      'dataset': fingerprint, 'data': config_json(config.data),
      'model': models.recipe(config.model),
      'train': config_json(config.train),
      'init_from': config.init_from, 'eval': config_json(config.eval),
      'seed': config.seed, 'split': split.digest(),
      'analysis': [suite.curve_samples, suite.cka_samples,
                   suite.tsne_samples],
      'method': None if model in BASE_MODELS else config_json(config.method),
      'guard': None if model in BASE_MODELS else config_json(config.guard)}
  return atomic_files.content_key(payload)


class CellStore:
  """The cells under `<workdir>/cells`, and which of them count as done."""

  def __init__(self, workdir: str, *, rerun: Iterable[str] = (),
               retry_failed: bool = True):
    """Opens the store of `workdir`; nothing is read until asked.

    Args:
      workdir: the suite's output folder.
      rerun: models whose finished cells are never done (`suite.rerun`).
      retry_failed: whether a failed cell is run again (`suite.retry_failed`).
    """
    self.workdir = workdir
    self.rerun = frozenset(rerun)
    self.retry_failed = retry_failed

  def path(self, mode: str, seed: int, model: str,
           suffix: str = '.json') -> str:
    return os.path.join(self.workdir, 'cells', mode, f's{seed}',
                        model + suffix)

  def load(self, mode: str, seed: int, model: str) -> dict | None:
    """The finished cell, or None."""
    path = self.path(mode, seed, model)
    if not os.path.exists(path):
      return None
    with open(path) as f:
      return json.load(f)

  def save(self, cell: Mapping[str, Any]):
    """Writes a cell (with 'mode', 'seed', 'model'); it is then done."""
    report.write_json(self.path(cell['mode'], cell['seed'], cell['model']),
                      cell)

  def is_done(self, mode: str, seed: int, model: str, key: str) -> bool:
    """Whether the stored cell stands: same key, not to be rerun or retried."""
    cell = self.load(mode, seed, model)
    if cell is None:
      return False
    if cell['key'] != key:
      logging.info('%s %s seed %d: settings changed, rerunning', mode, model,
                   seed)
      return False
    if model in self.rerun:
      return False
    return cell['status'] == 'ok' or not self.retry_failed

  def save_features(self, mode: str, seed: int, model: str,
                    arrays: Mapping[str, np.ndarray]):
    """Writes a cell's t-SNE features; call before `save`, which ends it.

    Like `save` (`report.write_json`), only on process 0 of a multi-process
    run.
    """
    if not parallel.is_main_process():
      return
    atomic_files.write_npz(self.path(mode, seed, model, '.features.npz'),
                           arrays)

  def load_features(self, mode: str, seed: int,
                    model: str) -> dict[str, np.ndarray] | None:
    """A cell's t-SNE features, or None where none were saved."""
    path = self.path(mode, seed, model, '.features.npz')
    if not os.path.exists(path):
      return None
    with np.load(path) as arrays:
      return dict(arrays)

  def collect(self, modes: Iterable[str], seeds: Iterable[int],
              model_names: Iterable[str]) -> dict[str, dict[str, list]]:
    """The finished cells: {mode: {model: [cell per seed that has one]}}."""
    seeds, model_names = list(seeds), list(model_names)
    return {mode: {model: [c for c in (self.load(mode, seed, model)
                                       for seed in seeds) if c is not None]
                   for model in model_names}
            for mode in modes}
