"""Tuning with the retrain oracle, as the papers and DeepUnlearn do.

  python main.py --config configs/tune.py --workdir runs/tune
  python main.py --config configs/tune.py --config.tune.methods=salun \
      --config.tune.modes=random --config.tune.budget=12

For each forgetting mode and method, a grid of the method's key
hyperparameters (learning rate, epochs and the method's own knob: SalUn's
mask ratio, SCRUB's max steps, Bad Teaching's temperature, ...) is searched
on the tuning seed (`config.seed`), minimising the Avg. Gap to that seed's
retrained model measured on the split's validation slice (`split.val`: its
TA and MIA use the held-out images, never the test set). The chosen setting
and the default are then evaluated on `eval_seeds` other seeds, each with
its own split, original and retrain model, on their test sets; class-wise,
each also forgets other classes (the tuning classes shifted by the seed's
offset), so that the evaluation is a new task, not the tuned one again. The
reported numbers are therefore not fit to their own test: a setting that
only suits the tuning seed and classes shows up as a worse mean on the
others.

The search and the evaluation run the methods without the guard rails, so
that they measure the settings themselves (the guard would retry a bad
setting with another step size). Trials and
evaluations are stored in `workdir/trials/` as they finish, so a killed
tuning resumes. `workdir/report.json` holds every trial, the chosen
settings and the evaluation; `workdir/results.md` the tables.

The search space is `config.tune`, made and commented in configs/tune.py;
each method starts from its section in the config's table
(`config.method_configs`), the one `--method` would run.
"""

import copy
import dataclasses
import itertools
import json
import os
import time
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np
from absl import logging

from mu_jax import atomic_files
from mu_jax import classifiers
from mu_jax import errors
from mu_jax import evaluation
from mu_jax import experiment
from mu_jax import methods
from mu_jax import parallel
from mu_jax import report
from mu_jax import splits as splits_lib
from mu_jax import unlearning


def _grid(tune: ml_collections.ConfigDict, name: str,
          base: ml_collections.ConfigDict, seed: int) -> list[dict[str, Any]]:
  """The trials of method `name` (default section `base`), default first.

  Each trial is a dict of overrides for `apply_trial`.
  """
  axes = [[('lr_factor', f) for f in tune.lr_factors],
          [('epoch_factor', f) for f in tune.epoch_factors]]
  default = {'lr_factor': 1.0, 'epoch_factor': 1.0}
  knob = methods.card(name).knob
  if tune.knobs and knob is not None:
    field, values = knob
    axes.append([(field, v) for v in values])
    default[field] = base.get(field)
  grid = [dict(point) for point in itertools.product(*axes)]
  grid = [default] + [p for p in grid if p != default]
  if len(grid) > tune.budget:
    rng = np.random.default_rng([seed, len(grid)])
    rest = rng.choice(np.arange(1, len(grid)), tune.budget - 1, replace=False)
    grid = [grid[0]] + [grid[i] for i in sorted(rest)]
  return grid


def apply_trial(section: ml_collections.ConfigDict,
                trial: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A method section with a trial's overrides (a copy)."""
  section = copy.deepcopy(section)
  for key, value in trial.items():
    if key == 'lr_factor':
      section.optim.lr = section.optim.lr * value
    elif key == 'epoch_factor':
      section.epochs = max(1, int(round(section.epochs * value)))
    elif value is not None:
      section[key] = type(section[key])(value)
  return section


def validation_view(split: splits_lib.Split) -> splits_lib.Split:
  """`split` with its validation slice in the place of its test set (and
  the test set in the place of the validation slice), so that the metrics
  of `evaluation.row` read the held-out images only."""
  if not len(split.val):
    raise errors.ConfigError(
        'the tuner chooses on the validation slice, never on the test set: '
        'set --config.split.val_fraction > 0')
  return dataclasses.replace(split, test=split.val, val=split.test)


class _Setting:
  """One (mode, seed, classes): its split, original and retrain models.

  `select`: the tuning setting, scored on its validation slice
  (`validation_view`); else an evaluation setting, scored on its test set.
  """

  def __init__(self, config, dataset, mesh, mode: str, seed: int, *,
               classes: Sequence[int] | None = None, select: bool = False):
    self.config = copy.deepcopy(config)
    with self.config.unlocked():
      self.config.seed = seed
      self.config.split.mode = mode
      if classes is not None:
        self.config.split.forget_classes = tuple(classes)
    self.dataset, self.mesh = dataset, mesh
    self.split = experiment.make_split(self.config, dataset)
    self.scored = validation_view(self.split) if select else self.split
    exp = experiment.Experiment(self.config, dataset, mesh)
    self.original, _, retrained, _ = classifiers.train_classifiers(
        exp, self.split)
    self.retrain_row = exp.evaluate(retrained, self.scored, 'eval retrain')
    self.original_row = exp.evaluate(self.original, self.scored,
                                     'eval original')
    self.original_row['avg_gap'] = evaluation.avg_gap(self.original_row,
                                                    self.retrain_row)

  def run(self, section: ml_collections.ConfigDict) -> dict[str, Any]:
    """Unlearns with `section`, unguarded; the row and RTE, or the error."""
    config = copy.deepcopy(self.config)
    with config.unlocked():
      config.method = section
      config.guard.enabled = False
    experiment.check_config(config)
    exp = experiment.Experiment(config, self.dataset, self.mesh)
    try:
      state, info, _ = unlearning.unlearn(exp, self.original, self.split)
    except errors.MuJaxError as e:  # E.g. a trial that diverges.
      return {'status': 'failed', 'error': f'{type(e).__name__}: {e}'}
    row = exp.evaluate(state, self.scored, 'eval unlearned')
    row['avg_gap'] = evaluation.avg_gap(row, self.retrain_row)
    return {'status': 'ok', 'metrics': row, 'seconds': info['seconds']}


def _held_out_classes(config, dataset, mode: str,
                      offset: int) -> tuple[int, ...] | None:
  """Class-wise: the tuning classes shifted by `offset` (a new task for the
  evaluation); None in random mode."""
  if mode != 'class_wise':
    return None
  return tuple(sorted({(int(c) + offset) % dataset.num_classes
                       for c in config.split.forget_classes}))


def _names(value: str) -> list[str]:
  return [v.strip() for v in str(value).split(',') if v.strip()]


def _table(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
  """Markdown rows: label, then mean +- std of the metrics over seeds."""
  columns = (('UA', 'unlearn_acc'), ('RA', 'retain_acc'), ('TA', 'test_acc'),
             ('MIA-eff.', 'mia_efficacy'), ('Avg. Gap', 'avg_gap'))
  lines = ['| setting | ' + ' | '.join(c for c, _ in columns) + ' |',
           '|---|' + '---:|' * len(columns)]
  for label, runs in rows:
    ok = [r['metrics'] for r in runs if r['status'] == 'ok']
    if not ok:
      lines.append(f'| {label} | ' + ' | '.join('failed' for _ in columns)
                   + ' |')
      continue
    cells = []
    for _, key in columns:
      values = [m[key] for m in ok]
      std = np.std(values, ddof=1) if len(values) > 1 else 0.0
      cells.append(f'{np.mean(values):.2f} ± {std:.2f}')
    lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def run(config: ml_collections.ConfigDict, workdir: str = '') -> dict:
  """Tunes, evaluates and writes the report (see the module docstring)."""
  start = time.perf_counter()
  workdir = workdir or os.path.join(
      'runs', f'{config.data.name}_{config.model.name}', 'tune')
  report.check_output_folder(workdir, '--workdir')
  tune = config.tune
  names = [methods.canonical_name(n) for n in _names(tune.methods)] or (
      methods.unlearning_methods())
  for name in names:
    methods.get(name)  # Unknown: a ValueError naming the choices.
  if tune.eval_seeds < 1 or tune.budget < 1:
    raise errors.ConfigError(
        f'tune.eval_seeds={tune.eval_seeds} and tune.budget={tune.budget} '
        'must be at least 1')
  dataset, mesh = experiment.setup(config)
  # Finished trials and evaluations, keyed by their settings: a killed
  # tuning resumes. report.write_json writes on process 0 only.
  store = atomic_files.KeyedStore(os.path.join(workdir, 'trials'),
                                  writer=report.write_json)
  results, held_outs = {}, {}
  lines = ['# Tuning with the retrain oracle', '']
  for mode in _names(tune.modes):
    setting = _Setting(config, dataset, mesh, mode, config.seed,
                       select=True)
    evals = [_Setting(config, dataset, mesh, mode, config.seed + i,
                      classes=_held_out_classes(config, dataset, mode, i))
             for i in range(1, tune.eval_seeds + 1)]
    held_out = {'tuned_on': {'seed': config.seed,
                             'split': setting.split.name,
                             'scored_on': 'validation slice',
                             'images': int(len(setting.split.val))},
                'evaluated_on': [{'seed': ev.config.seed,
                                  'split': ev.split.name,
                                  'scored_on': 'test set'} for ev in evals]}
    held_outs[mode] = held_out
    results[mode] = {}
    lines += [f'## {mode}', '',
              f'Chosen on seed {config.seed} ({setting.split.name}), by the '
              'Avg. Gap to its retrain model on its validation slice '
              f'({len(setting.split.val)} held-out test images; never its '
              'test set); evaluated on ' + ', '.join(
                  f'seed {ev.config.seed} ({ev.split.name})' for ev in evals)
              + ' on their test sets (mean ± std).', '']
    for name in names:
      # The method's section in the config's table: the one `--method`
      # would run.
      base = methods.section(config, name, mode)
      trials = []
      for trial in _grid(tune, name, base, config.seed):
        section = apply_trial(base, trial)
        key = {'kind': 'trial', 'mode': mode, 'seed': config.seed,
               'split': setting.split.digest(), 'scored_on': 'val',
               'method': json.loads(section.to_json())}
        result = store.get(key)
        if result is None:
          result = setting.run(section)
          store.put(key, result)
        trials.append({'trial': trial, **result})
        logging.info('tune %s %s %s: %s', mode, name, trial,
                     result.get('metrics', {}).get('avg_gap',
                                                   result.get('error')))
      ok = [t for t in trials if t['status'] == 'ok']
      best = min(ok, key=lambda t: t['metrics']['avg_gap']) if ok else None
      chosen = apply_trial(base, best['trial']) if best else base
      evaluation = {}
      for label, section in (('default', base), ('tuned', chosen)):
        runs = []
        for ev in evals:
          key = {'kind': 'eval', 'mode': mode, 'seed': ev.config.seed,
                 'split': ev.split.digest(),
                 'method': json.loads(section.to_json())}
          result = store.get(key)
          if result is None:
            result = ev.run(section)
            store.put(key, result)
          runs.append(result)
        evaluation[label] = runs
      results[mode][name] = {
          'trials': trials, 'best_trial': best and best['trial'],
          'chosen': json.loads(chosen.to_json()), 'evaluation': evaluation}
      chosen_text = (f"{best['trial']} (Avg. Gap "
                     f"{best['metrics']['avg_gap']:.2f} on seed "
                     f"{config.seed}'s validation slice)" if best else
                     'none: every trial failed; the default is evaluated')
      lines += [f'### {name}', '', f'Chosen: {chosen_text}.', '',
                _table([('original', [{'status': 'ok',
                                       'metrics': ev.original_row}
                                      for ev in evals]),
                        ('default', evaluation['default']),
                        ('tuned', evaluation['tuned'])]), '']
  payload = {'config': json.loads(config.to_json()), 'methods': names,
             'results': results, 'held_out': held_outs, 'workdir': workdir,
             'seconds': time.perf_counter() - start,
             'versions': report.versions(), 'device': report.device_info()}
  payload['table'] = '\n'.join(lines)
  report.write_json(os.path.join(workdir, 'report.json'), payload)
  if parallel.is_main_process():  # Process 0 writes the run's files.
    atomic_files.write_text(os.path.join(workdir, 'results.md'),
                            payload['table'] + '\n')
  return payload
