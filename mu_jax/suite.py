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
"""

import copy
import hashlib
import json
import os
import time
import traceback
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np
from absl import logging

from mu_jax import classifiers
from mu_jax import errors
from mu_jax import evaluate
from mu_jax import experiment
from mu_jax import methods
from mu_jax import models
from mu_jax import multiseed
from mu_jax import parallel
from mu_jax import plots
from mu_jax import report
from mu_jax import representations
from mu_jax import splits as splits_lib
from mu_jax import unlearn

# The literature's names (SalUn, Unlearn-Sparse tables) for table rows.
LABELS = {'original': 'Original', 'retrain': 'Retrain', 'finetune': 'FT',
          'random_label': 'RL', 'neggrad': 'GA', 'neggrad_plus': 'NegGrad+',
          'salun': 'SalUn', 'bad_teaching': 'Bad Teaching', 'scrub': 'SCRUB'}
MODE_TITLES = {'random': 'Random forgetting',
               'class_wise': 'Class-wise forgetting'}
# (header, metric): the SalUn paper's columns; RTE is in seconds here.
TABLE_COLUMNS = (('UA', 'unlearn_acc'), ('RA', 'retain_acc'),
                 ('TA', 'test_acc'), ('MIA-Efficacy', 'mia_efficacy'),
                 ('Avg. Gap', 'avg_gap'), ('RTE (s)', 'seconds'))
BASE_MODELS = ('original', 'retrain')
# Default row order: the SalUn paper's (FT, RL, GA, ..., SalUn last), then
# methods it does not have; methods added later come after, by name.
DEFAULT_ORDER = ('finetune', 'random_label', 'neggrad', 'neggrad_plus',
                 'bad_teaching', 'scrub', 'salun')
# Unlearning steps after which the accuracy curves are sampled: every step up
# to 10, then every 25% more, so that runs of any length get 10-40 points,
# densest early, where forgetting happens.
_CURVE_STEPS = frozenset(range(1, 11)) | frozenset(
    round(10 * 1.25**k) for k in range(80))


def _names(value: str) -> list[str]:
  return [v.strip() for v in str(value).split(',') if v.strip()]


def plan(config: ml_collections.ConfigDict):
  """The methods, modes and seeds `config.suite` asks for, checked.

  Returns:
    (methods, modes, seeds): canonical method names (never 'retrain', whose
    row is always there), modes, seeds.

  Raises:
    ValueError: an unknown method or mode, or fewer than one seed.
  """
  suite = config.suite
  names = [methods.canonical_name(n) for n in _names(suite.methods)]
  for name in names:
    methods.get(name)  # Unknown: a ValueError that lists the choices.
  names = names or sorted(methods.AVAILABLE, key=lambda m: (
      DEFAULT_ORDER.index(m) if m in DEFAULT_ORDER else len(DEFAULT_ORDER), m))
  names = list(dict.fromkeys(n for n in names if n != 'retrain'))
  modes = ['class_wise' if m == 'classwise' else m
           for m in _names(suite.modes)]
  for mode in modes:
    if mode not in splits_lib.MODES:
      raise ValueError(f'--config.suite.modes: unknown mode {mode!r}; use '
                       f'{",".join(splits_lib.MODES)}')
  if not modes:
    raise ValueError('--config.suite.modes is empty; use random,class_wise')
  if suite.seeds < 1:
    raise ValueError(f'--config.suite.seeds={suite.seeds}; run at least 1')
  _check_method_configs(suite.method_configs, names, modes)
  return names, modes, [config.seed + i for i in range(suite.seeds)]


def rerun_set(config: ml_collections.ConfigDict) -> frozenset[str]:
  """The models `config.suite.rerun` names, canonical; checked.

  Raises:
    ValueError: an unknown model name.
  """
  names = set()
  for name in _names(config.suite.get('rerun', '')):
    if name not in BASE_MODELS:
      methods.get(name)  # Unknown: a ValueError that lists the choices.
      name = methods.canonical_name(name)
    names.add(name)
  return frozenset(names)


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
          'build it with configs/suite.py:method_sections()')
    missing = [n for n in names if n not in sections[mode]]
    if missing:
      raise errors.ConfigError(
          f'config.suite.method_configs.{mode} has no section for '
          f'{", ".join(missing)}; build it with '
          'configs/suite.py:method_sections()')


def summarize(cells: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """Mean and std over seeds of one model's cells.

  Args:
    cells: cell dicts of one (mode, model), one per seed, each with 'seed',
      'status' ('ok' or 'failed') and, if ok, 'metrics' and 'seconds'.

  Returns:
    {'n': successful seeds, 'seeds', 'failed': [{'seed', 'error'}],
    'mean': {metric: mean}, 'std': {metric: sample std (ddof=1), 0 for one
    seed}} over the metrics and 'seconds' of the successful cells.
  """
  ok = [c for c in cells if c['status'] == 'ok']
  values = {}
  for cell in ok:
    for key, value in {**cell['metrics'], 'seconds': cell['seconds']}.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        values.setdefault(key, []).append(float(value))
  return {
      'n': len(ok), 'seeds': [c['seed'] for c in ok],
      'failed': [{'seed': c['seed'], 'error': c['error']}
                 for c in cells if c['status'] == 'failed'],
      'mean': {k: float(np.mean(v)) for k, v in values.items()},
      'std': {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
              for k, v in values.items()}}


def format_table(summary: Mapping[str, Mapping[str, Any]],
                 order: Sequence[str]) -> str:
  """A markdown table in the SalUn paper's format, mean +- std over seeds.

  Args:
    summary: model -> `summarize` output.
    order: the rows, by model name.
  """
  header = ['Method'] + [name for name, _ in TABLE_COLUMNS]
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join(['---'] + ['---:'] * len(TABLE_COLUMNS)) + '|']
  for model in order:
    if model not in summary:
      continue
    row = summary[model]
    n, failed = row['n'], len(row['failed'])
    label = LABELS.get(model, model)
    if failed:
      label += f' ({n}/{n + failed} seeds)'
    if not n:
      cells = [f'failed ({failed}/{failed} seeds)'] + ['—'] * (
          len(TABLE_COLUMNS) - 1)
    else:
      cells = []
      for _, key in TABLE_COLUMNS:
        if key not in row['mean']:
          cells.append('—')
          continue
        digits = 1 if key == 'seconds' else 2
        cells.append(f"{row['mean'][key]:.{digits}f} ± "
                     f"{row['std'][key]:.{digits}f}")
    lines.append('| ' + ' | '.join([label] + cells) + ' |')
  return '\n'.join(lines)


def _to_json(config: ml_collections.ConfigDict):
  return json.loads(config.to_json())


def _cell_key(config: ml_collections.ConfigDict, split: splits_lib.Split,
              fingerprint: str, model: str) -> str:
  """Digest of everything a cell's numbers depend on: a change reruns it."""
  suite = config.suite
  payload = {
      'dataset': fingerprint, 'data': _to_json(config.data),
      'model': models.recipe(config.model), 'train': _to_json(config.train),
      'init_from': config.init_from, 'eval': _to_json(config.eval),
      'seed': config.seed, 'split': split.digest(),
      'analysis': [suite.curve_samples, suite.cka_samples,
                   suite.tsne_samples],
      'method': None if model in BASE_MODELS else _to_json(config.method),
      'guard': None if model in BASE_MODELS else _to_json(config.guard)}
  return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()
                        ).hexdigest()


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
      out = evaluate.per_example(
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


class _Suite:
  """One suite run: its settings, data and cell store."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config = config
    self.methods, self.modes, self.seeds = plan(config)
    self.rerun = rerun_set(config)
    self.dataset, self.mesh = experiment.setup(config)
    self.workdir = workdir
    self.fingerprint = self.dataset.fingerprint()
    self.timings = {'multiseed_seconds': 0.0, 'cells': {}}
    self.models = {}  # Checkpoint name -> training info.

  # Configs and cells.

  def method_config(self, name: str, mode: str) -> ml_collections.ConfigDict:
    # `plan` checked that the section exists.
    return copy.deepcopy(self.config.suite.method_configs[mode][name])

  def cell_config(self, mode: str, seed: int, method: str | None = None):
    config = copy.deepcopy(self.config)
    with config.unlocked():
      config.seed = seed
      config.split.mode = mode
      if method is not None:
        config.method = self.method_config(method, mode)
    return config

  def cell_path(self, mode: str, seed: int, model: str, suffix='.json'):
    return os.path.join(self.workdir, 'cells', mode, f's{seed}',
                        model + suffix)

  def load_cell(self, mode: str, seed: int, model: str) -> dict | None:
    path = self.cell_path(mode, seed, model)
    if not os.path.exists(path):
      return None
    with open(path) as f:
      return json.load(f)

  def is_done(self, mode, seed, model, key) -> bool:
    cell = self.load_cell(mode, seed, model)
    if cell is None:
      return False
    if cell['key'] != key:
      logging.info('%s %s seed %d: settings changed, rerunning', mode, model,
                   seed)
      return False
    if model in self.rerun:
      return False
    return cell['status'] == 'ok' or not self.config.suite.retry_failed

  def save_cell(self, cell: dict):
    report.write_json(self.cell_path(cell['mode'], cell['seed'],
                                     cell['model']), cell)

  def samples(self, split: splits_lib.Split, seed: int):
    """Fixed per seed: forget and retain samples for curves, CKA, t-SNE."""
    rng = np.random.default_rng(seed)
    return rng.permutation(split.forget), rng.permutation(split.retain)

  def todo(self, mode: str, seed: int):
    """The models of (mode, seed) still to run, with the split and keys."""
    config = self.cell_config(mode, seed)
    split = experiment.make_split(config, self.dataset)
    keys = {}
    for model in (*BASE_MODELS, *self.methods):
      cell_config = config if model in BASE_MODELS else self.cell_config(
          mode, seed, model)
      keys[model] = _cell_key(cell_config, split, self.fingerprint, model)
    todo = [m for m, k in keys.items() if not self.is_done(mode, seed, m, k)]
    return todo, split, keys

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
        images = self.dataset.train_images
        labels = self.dataset.train_labels
        if not config.init_from:
          jobs.append(classifiers.classifier_job(exp, 'original', images, labels,
                                              ('all', 'all')))
        jobs.append(classifiers.classifier_job(
            exp, 'retrain', images[split.retain], labels[split.retain],
            (split.name, split.train_digest())))
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
    rows = {m: self.load_cell(mode, seed, m)['metrics']
            for m in BASE_MODELS if m not in todo}
    if 'original' in todo or 'retrain' in todo:
      start = time.perf_counter()
      rows = {m: exp.evaluate(s, split, f'eval {m}')
              for m, s in (('original', original), ('retrain', retrained))}
      rows['original']['avg_gap'] = evaluate.avg_gap(rows['original'],
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
        self.save_cell(cell)
    for method in self.methods:
      if method in todo:
        self.run_method(mode, seed, method, split, keys[method], original,
                        rows['retrain'], forget, retain)

  def warn_moved_checkpoints(self, mode: str, seed: int, todo: Sequence[str]):
    """Warns when finished cells' models live outside config.checkpoint_dir.

    Cell keys leave the checkpoint folder out (it does not change the
    numbers), so a resume with another --config.checkpoint_dir reuses the
    cells but trains the original and retrain models again before the
    remaining methods can run: minutes to hours of avoidable training.
    """
    for model in BASE_MODELS:
      cell = None if model in todo else self.load_cell(mode, seed, model)
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

  def run_method(self, mode, seed, method, split, key, original, retrain_row,
                 forget, retain):
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
                                f'{mode}.{method}.batch_size:')
      exp = experiment.Experiment(config, self.dataset, self.mesh)
      curve = _Curve(exp, forget[:self.config.suite.curve_samples],
                     retain[:self.config.suite.curve_samples])
      curve.record(0, original)
      state, info, _ = unlearn.unlearn(
          exp, original, split, on_step_end=curve.on_step_end,
          every_steps=1)
      curve.finish(state, info['guard'])
      row = exp.evaluate(state, split, f'eval {method}')
      row['avg_gap'] = evaluate.avg_gap(row, retrain_row)
      cell.update(status='ok', metrics=row, seconds=info['seconds'],
                  compile_seconds=info['compile_seconds'],
                  history=info['history'], curve=curve.points,
                  guard=info['guard'],
                  cka=self.cka(state, original, forget),
                  method_config=_to_json(config.method))
      self.save_features(mode, seed, method, state, forget, retain)
    except Exception as e:  # pylint: disable=broad-except
      # Any error of one method, bug or bad setting, must not stop the
      # others; the cell keeps the message and the traceback.
      logging.exception('suite: %s failed (%s, seed %d)', method, mode, seed)
      cell.update(status='failed', error=f'{type(e).__name__}: {e}',
                  traceback=traceback.format_exc())
    cell['wall_seconds'] = time.perf_counter() - start
    self.save_cell(cell)

  def cka(self, state, original, forget) -> dict[str, Any]:
    """Layer-by-layer linear CKA to the original model on forget samples."""
    images = self.dataset.train_images[forget[:self.config.suite.cka_samples]]
    layers, matrix = representations.cka_matrix(
        state, original, images, mean=self.dataset.mean, std=self.dataset.std)
    return {'layers': layers, 'matrix': matrix.tolist()}

  def save_features(self, mode, seed, model, state, forget, retain):
    """Penultimate features of the t-SNE samples, for the first seed only."""
    if seed != self.seeds[0] or not self.config.suite.tsne_samples:
      return
    n = self.config.suite.tsne_samples
    images, labels = self.dataset.train_images, self.dataset.train_labels
    arrays = {}
    for name, index in (('forget', forget[:n]), ('retain', retain[:n])):
      arrays[name] = representations.features(
          state, images[index], mean=self.dataset.mean, std=self.dataset.std)
      arrays[f'{name}_label'] = labels[index]
    path = self.cell_path(mode, seed, model, '.features.npz')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Written before the cell's JSON, which marks the cell done.
    with open(path + '.tmp', 'wb') as f:
      np.savez(f, **arrays)
    os.replace(path + '.tmp', path)

  # Results.

  def collect(self):
    """All cells: {mode: {model: [cell per seed]}} and the split sizes."""
    cells, split_info = {}, {}
    for mode in self.modes:
      cells[mode] = {}
      for model in (*BASE_MODELS, *self.methods):
        found = [self.load_cell(mode, seed, model) for seed in self.seeds]
        cells[mode][model] = [c for c in found if c is not None]
      config = self.cell_config(mode, self.seeds[0])
      split = experiment.make_split(config, self.dataset)
      split_info[mode] = {'name': split.name, 'forget': int(len(split.forget)),
                          'retain': int(len(split.retain)),
                          'test': int(len(split.test)),
                          'forget_classes': list(split.forget_classes)}
    return cells, split_info

  def title(self, mode: str, split_info: Mapping[str, Any],
            seeds_done: int | None = None) -> str:
    """The table's heading; `seeds_done`: seeds with a finished retrain."""
    info = split_info[mode]
    total = info['forget'] + info['retain']
    if mode == 'random':
      what = (f"{info['forget']:,} of {total:,} train images "
              f"({100 * info['forget'] / total:.0f}%)")
    else:
      classes = ', '.join(str(c) for c in info['forget_classes'])
      what = f"class {classes} ({info['forget']:,} train images)"
    seeds = f'{len(self.seeds)} seeds'
    if seeds_done is not None and seeds_done < len(self.seeds):
      # A partial report (report_only after a stopped run) says so.
      seeds = f'{seeds_done} of {len(self.seeds)} seeds'
    return (f'{MODE_TITLES[mode]}: {what}, {self.dataset.name}, '
            f'{self.config.model.name}, {seeds}')

  def draw(self, mode: str, title: str, summary, cells) -> list[str]:
    """The four kinds of plots of one mode; a plot that fails is logged."""
    out_dir = os.path.join(self.workdir, 'plots')
    ok = {m: [c for c in cs if c['status'] == 'ok']
          for m, cs in cells.items()}
    written = []

    def attempt(name, fn):
      try:
        written.append(fn(os.path.join(out_dir, f'{name}_{mode}.png')))
      except Exception:  # pylint: disable=broad-except
        # A figure is not worth losing the report over.
        logging.exception('suite: plot %s_%s failed', name, mode)

    if 'retrain' in summary and summary['retrain']['n']:
      attempt('bars', lambda p: plots.metric_bars(
          summary, self.methods, p, labels=LABELS, title=title))
    curves = {}
    for method in self.methods:
      runs = [c['curve'] for c in ok[method]]
      if runs:
        steps = runs[0]['step']
        curves[method] = {'step': steps, **{
            key: [np.interp(steps, r['step'], r[key]) for r in runs]
            for key in ('forget_acc', 'retain_acc')}}
    if curves and 'retrain' in summary:
      reference = {k: summary['retrain']['mean'][k]
                   for k in ('forget_acc', 'retain_acc')}
      attempt('curves', lambda p: plots.accuracy_curves(
          curves, p, reference=reference, labels=LABELS, title=title))
    panels = {}
    for model in (*BASE_MODELS, *self.methods):
      path = self.cell_path(mode, self.seeds[0], model, '.features.npz')
      if any(c['seed'] == self.seeds[0] for c in ok[model]) and (
          os.path.exists(path)):
        with np.load(path) as arrays:
          panels[model] = dict(arrays)
    if panels:
      names = {**LABELS, 'original': 'Original (before)'}
      attempt('tsne', lambda p: plots.tsne(
          panels, p, labels=names, title=title + f', seed {self.seeds[0]}',
          iterations=self.config.suite.tsne_iterations, seed=self.seeds[0]))
    matrices, diagonals, layers = {}, {}, None
    for model in ('retrain', *self.methods):
      runs = [np.asarray(c['cka']['matrix']) for c in ok[model] if 'cka' in c]
      if runs:
        layers = ok[model][0]['cka']['layers']
        matrices[model] = np.mean(runs, 0)
        diagonals[model] = np.stack([np.diag(r) for r in runs])
    if matrices:
      attempt('cka', lambda p: plots.cka_heatmaps(
          matrices, layers, p, labels=LABELS,
          title=title + ' (mean over seeds)'))
      attempt('cka_layers', lambda p: plots.cka_layers(
          diagonals, layers, p, labels=LABELS, title=title))
    return written

  def finish(self, total_start: float) -> dict[str, Any]:
    """Aggregates the cells; writes report.json, results.md and plots."""
    cells, split_info = self.collect()
    order = [*BASE_MODELS, *self.methods]
    summary, tables, titles, figures, failures = {}, {}, {}, {}, []
    guarded = []  # Cells in which the guard rails acted.
    for mode in self.modes:
      summary[mode] = {m: summarize(cs) for m, cs in cells[mode].items()
                       if cs}
      titles[mode] = self.title(mode, split_info, len(
          [c for c in cells[mode]['retrain'] if c['status'] == 'ok']))
      tables[mode] = format_table(summary[mode], order)
      for model in order:
        for cell in cells[mode][model]:
          if cell['status'] == 'failed':
            failures.append({k: cell[k] for k in ('mode', 'seed', 'model',
                                                  'error')})
          elif cell.get('guard', {}).get('acted'):
            guarded.append({'mode': mode, 'seed': cell['seed'],
                            'model': model,
                            'summary': cell['guard']['summary']})
    plot_start = time.perf_counter()
    if self.config.suite.plots:
      for mode in self.modes:
        figures[mode] = [os.path.relpath(p, self.workdir) for p in self.draw(
            mode, titles[mode], summary[mode], cells[mode])]
    self.timings['plot_seconds'] = time.perf_counter() - plot_start
    self.timings['total_seconds'] = time.perf_counter() - total_start
    table = '\n\n'.join(f'{titles[m]}\n\n{tables[m]}' for m in self.modes)
    payload = {
        'config': _to_json(self.config),
        'methods': self.methods, 'modes': self.modes, 'seeds': self.seeds,
        'dataset': {'name': self.dataset.name,
                    'fingerprint': self.fingerprint,
                    'train': int(len(self.dataset.train_labels)),
                    'test': int(len(self.dataset.test_labels))},
        'splits': split_info, 'summary': summary, 'titles': titles,
        'tables': tables, 'table': table, 'failures': failures,
        'guard': guarded,
        'plots': figures, 'models': self.models, 'timings': self.timings,
        'per_seed': {mode: {model: {c['seed']: c.get('metrics') for c in cs}
                            for model, cs in cells[mode].items()}
                     for mode in self.modes},
        'workdir': self.workdir, 'versions': report.versions(),
        'device': report.device_info()}
    report.write_json(os.path.join(self.workdir, 'report.json'), payload)
    _write_markdown(os.path.join(self.workdir, 'results.md'), payload)
    return payload


def _write_markdown(path: str, payload: Mapping[str, Any]):
  lines = ['# Benchmark suite', '',
           'Mean ± sample std over seeds; each seed has its own split, '
           'original and retrain models. RTE: unlearning wall time in '
           'seconds (original, retrain: training time).', '']
  for mode in payload['modes']:
    lines += [f"## {payload['titles'][mode]}", '', payload['tables'][mode],
              '']
    lines += [f'![{p}]({p})' for p in payload['plots'].get(mode, [])] + ['']
  if payload['guard']:
    lines += ['## Guard rails', '',
              'Cells in which the oracle-free guard rails changed the run '
              '(mu_jax/guard.py):', '']
    lines += [f"- {LABELS.get(g['model'], g['model'])}, {g['mode']}, seed "
              f"{g['seed']}: {g['summary']}" for g in payload['guard']]
    lines.append('')
  if payload['failures']:
    lines += ['## Failures', '']
    for f in payload['failures']:
      error = f['error'].splitlines()[0][:300] if f['error'] else ''
      lines.append(f"- {LABELS.get(f['model'], f['model'])}, {f['mode']}, "
                   f"seed {f['seed']}: {error}")
    lines.append('')
  lines.append(f"Total wall time: {payload['timings']['total_seconds']:.0f} s"
               f" on {payload['device']['kind']}.")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')


def default_workdir(config: ml_collections.ConfigDict) -> str:
  return os.path.join('runs', f'{config.data.name}_{config.model.name}',
                      'suite')


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
  suite = _Suite(config, workdir or default_workdir(config))
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
