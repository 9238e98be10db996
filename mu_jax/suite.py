"""The benchmark suite: every method, both forgetting modes, several seeds.

  python main.py --config configs/suite.py [--workdir runs/suite]

For each forgetting mode (random, class-wise) and seed, the suite trains or
reuses that seed's original and retrain models (the checkpoints `pipeline.run`
uses), runs every method from the original model on the same split, with its
settings in `config.suite.method_configs.<mode>.<method>`, and scores it
against that seed's retrain model, its own gold standard. The workdir gets:

  report.json   per-seed metrics, mean and std over seeds, failures, timings
  results.md    one table per mode in the SalUn paper's format (mean +- std
                over seeds) and the plots
  plots/        metric bars against retrain, forget / retain accuracy over the
                unlearning steps, t-SNE of features, layer-wise CKA
  cells/        one JSON file per finished (mode, seed, model), written
                atomically: a rerun skips every cell whose settings are
                unchanged, so a killed suite resumes where it stopped.

A method that raises is recorded as failed, with its error, and the suite goes
on. With `suite.multiseed`, the seeds' original and retrain models are first
trained together, in vmapped programs (mu_jax/multiseed.py).

This module is the orchestrator, in the order a run goes: `run`, the plan
(`plan`, `rerun_set`), then per (mode, seed) the cells still to do, the base
models and each method with its accuracy curve, CKA and features, and last the
report. The other concerns have their own homes: mu_jax/suite_store.py the
cells on disk, their keys and resume; mu_jax/suite_report.py the aggregation,
tables, plots and report files; mu_jax/representations.py the CKA and
features.
"""

import copy
import os
import time
import traceback
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np
from absl import logging

from mu_jax import classifiers
from mu_jax import errors
from mu_jax import evaluation
from mu_jax import experiment
from mu_jax import forgetting_quality
from mu_jax import methods
from mu_jax import multiseed
from mu_jax import parallel
from mu_jax import report
from mu_jax import representations
from mu_jax import splits as splits_lib
from mu_jax import suite_report
from mu_jax import suite_store
from mu_jax import unlearning

BASE_MODELS = suite_store.BASE_MODELS  # 'original', 'retrain': every seed's.
# The aggregation and the table, public here for callers of the suite.
summarize = suite_report.summarize
format_table = suite_report.format_table
# Unlearning steps after which the accuracy curves are sampled: every step up
# to 10, then every 25% more, so that runs of any length get 10-40 points,
# densest early, where forgetting happens.
_CURVE_STEPS = frozenset(range(1, 11)) | frozenset(
    round(10 * 1.25**k) for k in range(80))


def run(config: ml_collections.ConfigDict, workdir: str = '') -> dict:
  """Runs (or resumes) the suite and writes its report.

  Args:
    config: configs/suite.py: an experiment config plus `config.suite`.
    workdir: output folder; '' = runs/<dataset>_<model>/suite.

  Returns:
    The report (also written to `workdir/report.json`), with 'table': the
    markdown tables of all modes.
  """
  total_start = time.perf_counter()
  workdir = workdir or default_workdir(config)
  report.check_output_folder(workdir, '--workdir')
  suite = _Suite(config, workdir)
  logging.info('suite: %d methods x %d modes x %d seeds in %s',
               len(suite.methods), len(suite.modes), len(suite.seeds),
               suite.workdir)
  if config.suite.get('report_only'):
    logging.info('suite: report_only, writing the report of finished cells')
    return suite.finish(total_start)
  if config.suite.multiseed:
    suite.train_models_together()
  for mode in suite.modes:
    for seed in suite.seeds:
      start = time.perf_counter()
      suite.run_seed(mode, seed)
      suite.timings['cells'][f'{mode}_s{seed}'] = time.perf_counter() - start
  return suite.finish(total_start)


def default_workdir(config: ml_collections.ConfigDict) -> str:
  return os.path.join('runs', f'{config.data.name}_{config.model.name}',
                      'suite')


# Planning.


def plan(config: ml_collections.ConfigDict):
  """The methods, modes and seeds `config.suite` asks for, checked.

  Returns:
    (methods, modes, seeds): the method rows, canonical method names (never
    'retrain', whose row is always there; with `suite.guard = 'both'` each
    followed by its unguarded row, `<name>-unguarded`), modes, seeds.

  Raises:
    ValueError: an unknown method.
    errors.ConfigError: an unknown mode, no mode, fewer than one seed, a
      (mode, method) without its section in `suite.method_configs`, a
      `suite.guard` other than 'config' and 'both', or 'both' in random
      mode without a validation slice.
  """
  suite = config.suite
  names = [methods.canonical_name(n) for n in _names(suite.methods)]
  for name in names:
    methods.get(name)  # Unknown: a ValueError that lists the choices.
  # By default every method, in the SalUn paper's row order (their cards).
  names = names or methods.unlearning_methods()
  names = list(dict.fromkeys(n for n in names if n != 'retrain'))
  modes = [splits_lib.canonical_mode(m) for m in _names(suite.modes)]
  for mode in modes:
    if mode not in splits_lib.MODES:
      raise errors.ConfigError(
          f'--config.suite.modes: unknown mode {mode!r}; use '
          f'{",".join(splits_lib.MODES)}')
  if not modes:
    raise errors.ConfigError(
        '--config.suite.modes is empty; use random,class_wise')
  if suite.seeds < 1:
    raise errors.ConfigError(
        f'--config.suite.seeds={suite.seeds}; run at least 1')
  _check_method_configs(suite.method_configs, names, modes)
  guard = suite.get('guard', 'config')
  if guard not in ('config', 'both'):
    raise errors.ConfigError(
        f"--config.suite.guard={guard!r}; use 'config' (each method as "
        "config.guard says) or 'both' (guarded and unguarded rows)")
  if guard == 'both' and 'random' in modes and not config.split.val_fraction:
    raise errors.ConfigError(
        "--config.suite.guard='both' runs guarded random-mode rows, which "
        'need a validation slice: set --config.split.val_fraction=0.2 (the '
        "paper configs' 'guarded' variant has one)")
  if guard == 'both':
    names = [row for n in names
             for row in (n, n + suite_store.UNGUARDED)]
  return names, modes, [config.seed + i for i in range(suite.seeds)]


def rerun_set(config: ml_collections.ConfigDict) -> frozenset[str]:
  """The models `config.suite.rerun` names, canonical; checked.

  Raises:
    ValueError: an unknown model name.
  """
  names = set()
  for name in _names(config.suite.get('rerun', '')):
    if name not in BASE_MODELS:
      # Unknown: a ValueError that lists the choices.
      methods.get(suite_store.method_of(name))
      name = methods.canonical_name(suite_store.method_of(name))
      # A method's code changed: both its rows are stale.
      names.add(name + suite_store.UNGUARDED)
    names.add(name)
  return frozenset(names)


def _names(value: str) -> list[str]:
  return [v.strip() for v in str(value).split(',') if v.strip()]


def _check_method_configs(sections: ml_collections.ConfigDict,
                          names: Sequence[str], modes: Sequence[str]):
  """Fails unless every (mode, method) to run has its own section.

  A suite once ran on a config whose `method_configs` had one section per
  method for both modes: the class-wise cells silently got the random-mode
  settings (GA and NegGrad+ diverged, SCRUB erased the retained classes).
  A missing section is therefore an error, never a quiet fallback.

  Raises:
    errors.ConfigError: a mode or a method without a section.
  """
  for mode in modes:
    if mode not in sections:
      flat = [n for n in names if n in sections]
      hint = (f' (it has sections named after methods, {", ".join(flat)}: '
              'one section per mode, each holding one per method, is needed)'
              if flat else '')
      raise errors.ConfigError(
          f'config.suite.method_configs has no {mode!r} section{hint}; '
          'build it with configs/suite.py:method_sections(config)')
    missing = [n for n in names if n not in sections[mode]]
    if missing:
      raise errors.ConfigError(
          f'config.suite.method_configs.{mode} has no section for '
          f'{", ".join(missing)}; build it with '
          'configs/suite.py:method_sections(config)')


class _Suite:
  """One suite run: its plan, data and cell store; runs and reports cells."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config = config
    self.methods, self.modes, self.seeds = plan(config)
    self.dataset, self.mesh = experiment.setup(config)
    self.workdir = workdir
    self.store = suite_store.CellStore(
        workdir, rerun=rerun_set(config),
        retry_failed=config.suite.retry_failed)
    self.fingerprint = self.dataset.fingerprint()
    self.timings = {'multiseed_seconds': 0.0, 'cells': {}}
    self.models = {}  # Checkpoint name -> training info.

  # What is left to do.

  def todo(self, mode: str, seed: int):
    """The models of (mode, seed) still to run, with the split and keys."""
    config = self.cell_config(mode, seed)
    split = experiment.make_split(config, self.dataset)
    keys = {}
    for model in (*BASE_MODELS, *self.methods):
      cell_config = config if model in BASE_MODELS else self.cell_config(
          mode, seed, model)
      keys[model] = suite_store.cell_key(cell_config, split,
                                         self.fingerprint, model)
    todo = [m for m, k in keys.items()
            if not self.store.is_done(mode, seed, m, k)]
    return todo, split, keys

  def cell_config(self, mode: str, seed: int, method: str | None = None):
    """The experiment config of a cell: its seed, mode and method section
    (and, for a method's row with `suite.guard = 'both'`, the guard rails on
    or, in its unguarded row, off)."""
    config = copy.deepcopy(self.config)
    with config.unlocked():
      config.seed = seed
      config.split.mode = mode
      config.eval.forgetting_quality_models = (
          self.config.suite.forgetting_quality_models)
      if method is not None:
        # `plan` checked that the section exists.
        config.method = copy.deepcopy(self.config.suite.method_configs[mode][
            suite_store.method_of(method)])
        if self.config.suite.get('guard', 'config') == 'both':
          config.guard.enabled = not method.endswith(suite_store.UNGUARDED)
    return config

  # Running.

  def train_models_together(self):
    """Trains the pending seeds' original and retrain models, vmapped."""
    jobs = []
    for seed in self.seeds:
      for mode in self.modes:
        todo, split, _ = self.todo(mode, seed)
        if not todo:
          continue
        config = self.cell_config(mode, seed)
        exp = experiment.Experiment(config, self.dataset, self.mesh)
        if not config.init_from:
          jobs.append(classifiers.classifier_job(exp, 'original'))
        jobs.append(classifiers.classifier_job(exp, 'retrain', split))
    if jobs:
      start = time.perf_counter()
      self.models.update(multiseed.train_jobs(jobs, self.mesh, desc='suite'))
      self.timings['multiseed_seconds'] = time.perf_counter() - start

  def run_seed(self, mode: str, seed: int):
    """Runs the unfinished cells of one (mode, seed)."""
    todo, split, keys = self.todo(mode, seed)
    if not todo:
      logging.info('%s seed %d: all cells done', mode, seed)
      return
    config = self.cell_config(mode, seed)
    exp = experiment.Experiment(config, self.dataset, self.mesh)
    forget, retain = self.samples(split, seed)
    self.warn_moved_checkpoints(mode, seed, todo)
    original, original_info, retrained, retrain_info = (
        classifiers.train_classifiers(exp, split))
    rows = {m: self.store.load(mode, seed, m)['metrics']
            for m in BASE_MODELS if m not in todo}
    if 'original' in todo or 'retrain' in todo:
      start = time.perf_counter()
      rows = {m: exp.evaluate(s, split, f'eval {m}')
              for m, s in (('original', original), ('retrain', retrained))}
      rows['original']['avg_gap'] = evaluation.avg_gap(rows['original'],
                                                     rows['retrain'])
      rows['retrain']['avg_gap'] = 0.0
      for model, state, info in (('original', original, original_info),
                                 ('retrain', retrained, retrain_info)):
        cell = {'status': 'ok', 'key': keys[model], 'mode': mode,
                'seed': seed, 'model': model, 'split': split.name,
                'metrics': rows[model], 'seconds': info['seconds'],
                'reused': info['reused'], 'checkpoint': info['checkpoint'],
                'history': info['history']}
        if model == 'retrain':
          cell['cka'] = self.cka(retrained, original, forget)
        self.save_features(mode, seed, model, state, forget, retain)
        cell['wall_seconds'] = time.perf_counter() - start
        self.store.save(cell)
    for method in self.methods:
      if method in todo:
        self.run_method(mode, seed, method, split, keys[method], original,
                        retrained, rows['retrain'], forget, retain)

  def run_method(self, mode, seed, method, split, key, original, retrained,
                 retrain_row, forget, retain):
    """Unlearns, evaluates and records one cell; a failure is recorded."""
    logging.info('suite: %s, seed %d, %s', mode, seed, method)
    start = time.perf_counter()
    cell = {'key': key, 'mode': mode, 'seed': seed, 'model': method,
            'split': split.name}
    try:
      config = self.cell_config(mode, seed, method)
      experiment.check_config(config)
      parallel.check_batch_size(config.method.batch_size, self.mesh,
                                '--config.suite.method_configs.'
                                f'{mode}.{config.method.name}.batch_size:')
      exp = experiment.Experiment(config, self.dataset, self.mesh)
      curve = _Curve(exp, forget[:self.config.suite.curve_samples],
                     retain[:self.config.suite.curve_samples])
      curve.record(0, original)
      state, info, _ = unlearning.unlearn(
          exp, original, split, on_step_end=curve.on_step_end,
          every_steps=1)
      curve.finish(state, info['guard'])
      row = exp.evaluate(state, split, f'eval {method}')
      row['avg_gap'] = evaluation.avg_gap(row, retrain_row)
      if config.eval.forgetting_quality_models:
        cell['forgetting_quality'] = forgetting_quality.measure(
            exp, split, original, retrained, state, os.path.join(
                self.workdir, 'forgetting_quality', mode, f's{seed}'))
        for metric in ('forgetting_quality', 'challenge_score'):
          row[metric] = cell['forgetting_quality'][metric]
      cell.update(status='ok', metrics=row, seconds=info['seconds'],
                  compile_seconds=info['compile_seconds'],
                  history=info['history'], curve=curve.points,
                  guard=info['guard'],
                  cka=self.cka(state, original, forget),
                  method_config=suite_store.config_json(config.method))
      self.save_features(mode, seed, method, state, forget, retain)
    except Exception as e:  # pylint: disable=broad-except
      if parallel.peer_failure(e):
        raise  # Another process of the run died: no cell can run any more.
      # Any error of one method, bug or bad setting, must not stop the
      # others; the cell keeps the message and the traceback.
      logging.exception('suite: %s failed (%s, seed %d)', method, mode, seed)
      cell.update(status='failed', error=f'{type(e).__name__}: {e}',
                  traceback=traceback.format_exc())
    cell['wall_seconds'] = time.perf_counter() - start
    self.store.save(cell)

  def samples(self, split: splits_lib.Split, seed: int):
    """Fixed per seed: forget and retain samples for curves, CKA, t-SNE."""
    rng = np.random.default_rng(seed)
    return rng.permutation(split.forget), rng.permutation(split.retain)

  def cka(self, state, original, forget) -> dict[str, Any]:
    """Layer-by-layer linear CKA to the original model on forget samples."""
    images = self.dataset.train_images[forget[:self.config.suite.cka_samples]]
    return representations.layer_cka(state, original, images,
                                     mean=self.dataset.mean,
                                     std=self.dataset.std)

  def save_features(self, mode, seed, model, state, forget, retain):
    """Penultimate features of the t-SNE samples, for the first seed only."""
    n = self.config.suite.tsne_samples
    if seed != self.seeds[0] or not n:
      return
    self.store.save_features(mode, seed, model,
                             representations.forget_retain_features(
                                 state, self.dataset.train_images,
                                 self.dataset.train_labels, forget[:n],
                                 retain[:n], mean=self.dataset.mean,
                                 std=self.dataset.std))

  def warn_moved_checkpoints(self, mode: str, seed: int, todo: Sequence[str]):
    """Warns when finished cells' models live outside config.checkpoint_dir.

    Cell keys leave the checkpoint folder out (it does not change the
    numbers), so a resume with another --config.checkpoint_dir reuses the
    cells but trains the original and retrain models again before the
    remaining methods can run: minutes to hours of avoidable training.
    """
    for model in BASE_MODELS:
      cell = None if model in todo else self.store.load(mode, seed, model)
      if not cell or not cell.get('checkpoint'):
        continue
      folder = os.path.dirname(os.path.normpath(cell['checkpoint']))
      if os.path.normpath(folder) != os.path.normpath(
          self.config.checkpoint_dir):
        logging.warning(
            '%s seed %d: the finished cells used the %s model in %s, but '
            'checkpoints are now read from %s: it is trained again unless '
            'you pass --config.checkpoint_dir=%s', mode, seed, model,
            cell['checkpoint'], self.config.checkpoint_dir, folder)

  # Reporting.

  def finish(self, total_start: float) -> dict[str, Any]:
    """Aggregates the cells; writes report.json, results.md and plots."""
    cells = self.store.collect(self.modes, self.seeds,
                               (*BASE_MODELS, *self.methods))
    return suite_report.write(
        self.workdir, config=self.config, methods=self.methods,
        modes=self.modes, seeds=self.seeds, dataset=self.dataset,
        splits={mode: self.split_info(mode) for mode in self.modes},
        cells=cells, store=self.store, trained=self.models,
        timings=self.timings, total_start=total_start)

  def split_info(self, mode: str) -> dict[str, Any]:
    """The sizes of the first seed's split of `mode`, for the report."""
    split = experiment.make_split(self.cell_config(mode, self.seeds[0]),
                                  self.dataset)
    return {'name': split.name, 'forget': int(len(split.forget)),
            'retain': int(len(split.retain)), 'test': int(len(split.test)),
            'forget_classes': list(split.forget_classes)}


class _Curve:
  """Forget and retain accuracy on fixed samples during unlearning.

  Under the guard rails a method may run several times (attempts); a step
  count that starts again marks a new attempt, and `finish` keeps the curve
  of the attempt whose model was kept.
  """

  def __init__(self, exp: experiment.Experiment, forget: np.ndarray,
               retain: np.ndarray):
    images, labels = exp.dataset.train_images, exp.dataset.train_labels
    self._exp = exp
    self._sets = {'forget_acc': (images[forget], labels[forget]),
                  'retain_acc': (images[retain], labels[retain])}
    self.points = {'step': [], 'forget_acc': [], 'retain_acc': []}
    self._attempts = []  # The points of every attempt, in order.
    self._last_step = 0

  def record(self, step: int, state):
    self.points['step'].append(step)
    for key, (images, labels) in self._sets.items():
      out = evaluation.per_example(
          state, images, labels, mean=self._exp.dataset.mean,
          std=self._exp.dataset.std, mesh=self._exp.mesh,
          batch_size=self._exp.config.eval.batch_size, desc='curve')
      self.points[key].append(100.0 * float(np.mean(out['correct'])))

  def on_step_end(self, step: int, state, method_state):
    del method_state  # Only the model is evaluated.
    if step <= self._last_step:  # The guard started another attempt.
      self._attempts.append(self.points)
      self.points = {k: v[:1] for k, v in self.points.items()}  # Step 0.
    self._last_step = step
    if step in _CURVE_STEPS:
      self.record(step, state)

  def finish(self, state, guard_report: Mapping[str, Any]):
    """Keeps the curve of the attempt kept, up to the model kept.

    Args:
      state: the unlearned model (its point ends the curve).
      guard_report: the run's guard report ({'enabled': False} without).
    """
    attempts = self._attempts + [self.points]
    kept = guard_report.get('kept', {'attempt': len(attempts),
                                     'step': self._last_step})
    points = attempts[kept['attempt'] - 1] if kept['attempt'] else {
        k: v[:1] for k, v in self.points.items()}  # The original only.
    end = sum(step <= kept['step'] for step in points['step'])
    self.points = {k: v[:end] for k, v in points.items()}
    if self.points['step'][-1] != kept['step']:
      self.record(kept['step'], state)
