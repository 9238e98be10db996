"""One experiment end to end, the stages in the order they run.

  config -> data and mesh (experiment.setup) -> split (experiment.make_split)
  -> original and retrain models (classifiers.train_classifiers)
  -> unlearning (unlearning.unlearn) -> evaluation (evaluation.row; with
  --config.eval.forgetting_quality_models, forgetting_quality.measure)
  -> the unlearned model saved (unlearned_model.save, workdir/unlearned/)
  -> report (report.experiment, written to workdir/report.json; a workdir
     with finished runs gets report_2.json, ... `report.run_paths`)

`run(config, workdir)` is what the CLI calls; it is importable so that
notebooks and tests run experiments the same way. Drivers of many
experiments (mu_jax/suite.py, mu_jax/tune.py) call the stages themselves.
"""

import os
import time

import ml_collections
from absl import logging

from mu_jax import augmentation
from mu_jax import classifiers
from mu_jax import evaluation
from mu_jax import experiment
from mu_jax import forgetting_quality
from mu_jax import methods
from mu_jax import parallel
from mu_jax import report
from mu_jax import unlearning
from mu_jax import unlearned_model


def default_workdir(config, split) -> str:
  method = methods.canonical_name(config.method.name)
  return os.path.join('runs', f'{config.data.name}_{config.model.name}',
                      f'{method}_{split.name}_s{config.seed}')


def run(config: ml_collections.ConfigDict, workdir: str = '') -> dict:
  """Runs one experiment and writes `workdir/report.json`.

  Args:
    config: see configs/default.py.
    workdir: output folder; '' =
      runs/<dataset>_<model>/<method>_<split>_s<seed>.

  Returns:
    The report (also written to `workdir/report.json`).
  """
  start = time.perf_counter()
  dataset, mesh = experiment.setup(config)
  split = experiment.make_split(config, dataset)
  workdir = workdir or default_workdir(config, split)
  report.check_output_folder(workdir, '--workdir')
  # A workdir that holds finished runs gets a numbered one: nothing is
  # overwritten, and TensorBoard never shows a step twice.
  paths = report.run_paths(workdir)
  if paths.index > 1:
    logging.warning('%s holds %d finished run(s); this run writes %s',
                    workdir, paths.index - 1, os.path.basename(paths.report))
  logging.info('dataset %s: %d train / %d test; split %s: %d forget, %d '
               'retain, %d test, %d validation; %d device(s); workdir %s',
               dataset.name, len(dataset.train_labels),
               len(dataset.test_labels), split.name, len(split.forget),
               len(split.retain), len(split.test), len(split.val),
               mesh.devices.size, workdir)
  exp = experiment.Experiment(config, dataset, mesh,
                              events_dir=paths.tensorboard)

  original, original_info, retrained, retrain_info = (
      classifiers.train_classifiers(exp, split))

  method = methods.canonical_name(config.method.name)
  simclr_info = None
  if method == 'retrain':
    logging.info('retrain uses the training recipe (config.train); --lr and '
                 '--epoches apply to unlearning methods only')
    unlearned, unlearn_info = retrained, {
        'seconds': retrain_info['seconds'], 'compile_seconds': None,
        'history': retrain_info['history'], 'guard': {'enabled': False},
        'augmentation': augmentation.report(config.method, 0, {})}
  else:
    unlearned, unlearn_info, simclr_info = unlearning.unlearn(exp, original,
                                                           split)

  eval_start = time.perf_counter()
  rows = {key: evaluation.row(state, dataset, split, mesh=mesh,
                            batch_size=config.eval.batch_size,
                            desc=f'eval {key}')
          for key, state in (('original', original), ('retrain', retrained),
                             ('unlearned', unlearned))}
  for key in ('original', 'unlearned'):
    rows[key]['avg_gap'] = evaluation.avg_gap(rows[key], rows['retrain'])
  rows['retrain']['avg_gap'] = 0.0
  eval_seconds = time.perf_counter() - eval_start

  quality = None
  if config.eval.forgetting_quality_models and method != 'retrain':
    quality = forgetting_quality.measure(exp, split, original, retrained,
                                         unlearned, workdir)
    rows['unlearned']['forgetting_quality'] = quality['forgetting_quality']
    rows['unlearned']['challenge_score'] = quality['challenge_score']

  log = exp.event_log('final')
  if log is not None:
    # The table's numbers as scalars (step 0) and the run's config as text.
    for key, row in rows.items():
      log(0, {f'{key}/{name}': row[name] for name in (
          'unlearn_acc', 'retain_acc', 'test_acc', 'mia_efficacy', 'avg_gap')})
    log.text('config', f'```\n{config.to_json(indent=2)}\n```')
    log.close()
  saved = None
  if method != 'retrain':
    # Every process writes its part of one folder: process 0's (the one
    # that writes the report), whatever --workdir the others were given.
    saved = unlearned_model.save(
        parallel.from_main_process(os.path.abspath(paths.unlearned)),
        original, unlearned, config=config, dataset=dataset,
        split=split, method=method,
        guard_outcome=unlearn_info['guard'].get('outcome'),
        run_seconds=unlearn_info['seconds'])
  payload = report.experiment(
      config, dataset, split, workdir=workdir, method=method, rows=rows,
      infos={'original': original_info, 'retrain': retrain_info,
             'unlearned': unlearn_info},
      simclr_info=simclr_info,
      seconds={'eval': eval_seconds, 'total': time.perf_counter() - start},
      quality=quality)
  payload['checkpoints']['unlearned'] = saved
  payload['report_file'] = paths.report
  report.write_json(paths.report, payload)
  return payload
