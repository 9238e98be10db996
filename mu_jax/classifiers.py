"""The original and retrain models: trained once per recipe, then reused.

The original model is trained on the whole train set, the retrain model (the
gold standard) on the retain set, both with the training recipe
`config.train`; each lives in its own checkpoint folder, named after the
dataset, model, split and seed, with the recipe it was trained with, and is
trained, resumed or reused through `checkpoint.train_or_reuse`.
`--config.init_from` loads a given original model instead.
"""

import json
import os
from typing import Any, NamedTuple

import jax
import ml_collections
from absl import logging
import numpy as np

from mu_jax import atomic_files
from mu_jax import checkpoint as checkpoint_lib
from mu_jax import host_batches
from mu_jax import models
from mu_jax import optim
from mu_jax import parallel
from mu_jax import splits as splits_lib
from mu_jax import train
from mu_jax.experiment import Experiment
from mu_jax.methods import base
from mu_jax.methods import retrain


def train_or_reuse(exp: Experiment, what: str, name: str, recipe: dict,
                   method: base.Method, template, data, epochs: int,
                   batch: int, augment: bool,
                   seed: int | None = None) -> tuple[Any, dict[str, Any]]:
  """Trains the model of checkpoint folder `name` with `method`, or reuses it.

  Per-step metrics of a training go to `exp.event_log(what)`; `seed` (default
  `config.seed`) seeds its batch order and step rngs.

  Returns:
    (state, info): see `checkpoint_lib.train_or_reuse`.
  """
  template = jax.device_put(template, parallel.replicated(exp.mesh))

  def train_it(checkpointer):
    log = exp.event_log(what, optim.make_schedule(
        exp.config.train.optim, max(1, len(data['retain']['label']) // batch),
        epochs))
    try:
      return train.run(
          method, template, data, epochs=epochs,
          batch_size={'retain': batch},
          seed=exp.config.seed if seed is None else seed,
          prep=exp.prep(augment), mesh=exp.mesh, desc=f'train {what}',
          checkpointer=checkpointer, checkpoint_meta={'recipe': recipe},
          log_metrics=log)
    finally:
      if log is not None:
        log.close()

  return checkpoint_lib.train_or_reuse(
      os.path.join(exp.config.checkpoint_dir, name), recipe,
      f"{'an' if what[:1] in 'aeiou' else 'a'} {what} model",
      template, train_it)


class TrainingJob(NamedTuple):
  """One classifier of the training recipe: the original or a retrain model.

  Attributes:
    kind: 'original' or 'retrain'.
    name: checkpoint folder name, `<dataset>_<model>_<split>_s<seed>-<key>`,
      `<key>` a hash of `recipe`.
    directory: the checkpoint folder, under `config.checkpoint_dir`.
    recipe: what the weights depend on (JSON types); a checkpoint made with
      another recipe is refused.
    seed: seeds the initialisation, batch order and step rngs.
    template: the starting TrainState, with the recipe's optimizer.
    method: the retrain method that trains it from a fresh init.
    data: {'retain': SplitData}, the images and labels it is trained on.
    epochs: training epochs.
    batch_size: training batch size.
    prep: normalisation and augmentation of the recipe.
  """
  kind: str
  name: str
  directory: str
  recipe: dict
  seed: int
  template: Any
  method: base.Method
  data: dict
  epochs: int
  batch_size: int
  prep: host_batches.Preprocessing


def model_seed(seed: int, model_index: int) -> int:
  """The training seed of the `model_index`-th model of seed `seed`.

  Model 0 is the run's own model (its seed is `seed`); the others, made for
  many-model measures (mu_jax/forgetting_quality.py), get seeds of their
  own stream.
  """
  if not model_index:
    return seed
  return int(np.random.SeedSequence([seed, model_index]).generate_state(1)[0]
             % 2**31)


def classifier_job(exp: Experiment, kind: str,
                   split: splits_lib.Split | None = None,
                   model_index: int = 0) -> TrainingJob:
  """Describes the original model (all data) or the retrain model.

  The one place that says what each kind trains on, and so which checkpoint
  folder holds it: every caller (the run, the suite, forgetting quality,
  the benchmarks) finds the same models.

  Args:
    exp: the experiment; its config gives the recipe (`config.train`).
    kind: 'original' (the whole train set, folder tag 'all') or 'retrain'
      (`split.retain`, tagged with the split's name and train digest).
    split: the forget / retain split; needed for 'retrain' only.
    model_index: 0 for the run's model; k > 0 for another model of the same
      data and recipe, trained from its own seed (`model_seed`) into a
      folder of its own.
  """
  images, labels = exp.dataset.train_images, exp.dataset.train_labels
  if kind == 'original':
    split_tag = ('all', 'all')
  else:
    images, labels = images[split.retain], labels[split.retain]
    split_tag = (split.name, split.train_digest())
  config = exp.config
  seed = model_seed(config.seed, model_index)
  data = {'retain': host_batches.split_data(images, labels)}
  batch, epochs = config.train.batch_size, config.train.epochs
  tx = optim.make_optimizer(config.train.optim, len(labels) // batch, epochs)
  template = exp.new_state(tx, jax.random.key(seed))
  recipe = json.loads(json.dumps({  # Tuples become lists, as in JSON.
      'dataset_fingerprint': exp.dataset.fingerprint(),
      'split': split_tag[1], 'model': models.recipe(config.model),
      'train': config.train.to_dict(), 'seed': seed}))
  # The folder is keyed by content: the recipe (data fingerprint, split,
  # model, training, seed) hashed into its name, so that models of other
  # data or recipes (the smoke config's, an npz of one's own) get folders of
  # their own instead of being refused in one folder.
  name = (f'{exp.dataset.name}_{models.tag(config.model)}_{split_tag[0]}'
          f'_s{config.seed}' + (f'_m{model_index}' if model_index else '')
          + f'-{atomic_files.content_key(recipe, 8)}')
  method = retrain.make(
      ml_collections.ConfigDict({'augment': config.train.augment}),
      exp.context(data, {'retain': batch}, epochs))
  return TrainingJob(
      kind=kind, name=name, directory=os.path.join(config.checkpoint_dir, name),
      recipe=recipe, seed=seed, template=template, method=method,
      data=data, epochs=epochs, batch_size=batch,
      prep=exp.prep(config.train.augment))


def train_job(exp: Experiment, job: TrainingJob):
  """Trains or reuses the model that `job` (`classifier_job`) describes."""
  return train_or_reuse(exp, job.kind, job.name, job.recipe, job.method,
                        job.template, job.data, job.epochs, job.batch_size,
                        exp.config.train.augment, seed=job.seed)


def _train_classifier(exp: Experiment, kind: str, split: splits_lib.Split):
  """Trains or reuses the original (or `--config.init_from`) or retrain."""
  job = classifier_job(exp, kind, split)
  if kind == 'original' and exp.config.init_from:
    return _restore_given(exp, job.template, exp.config.init_from)
  return train_job(exp, job)


def train_classifiers(exp: Experiment, split: splits_lib.Split):
  """The original and retrain models of `split`, trained or reused.

  Returns:
    (original, original_info, retrained, retrain_info); an info dict holds
    'seconds', 'reused', 'checkpoint' and 'history'.
  """
  original, original_info = _train_classifier(exp, 'original', split)
  retrained, retrain_info = _train_classifier(exp, 'retrain', split)
  return original, original_info, retrained, retrain_info


def _restore_given(exp: Experiment, template, directory: str):
  """Loads a finished original-model checkpoint named by --config.init_from."""
  if not os.path.isdir(directory):
    raise checkpoint_lib.CheckpointError(
        f'--config.init_from={directory}: no such checkpoint folder')
  checkpointer = checkpoint_lib.Checkpointer(directory)
  try:
    meta = checkpointer.latest_meta()
    if meta is None or not meta.get('done'):
      raise checkpoint_lib.CheckpointError(
          f'--config.init_from={directory} holds no finished training run')
    recipe = meta.get('recipe')
    recipe = recipe if isinstance(recipe, dict) else {}
    if recipe.get('split', 'all') != 'all':
      raise checkpoint_lib.CheckpointError(
          f'--config.init_from={directory} holds a retrain model (trained '
          'without a forget set), not an original one; use a folder named '
          '<dataset>_<model>_all_s<seed>-<key>')
    if recipe.get('dataset_fingerprint') not in (None,
                                                 exp.dataset.fingerprint()):
      logging.warning('--config.init_from=%s was trained on other data than '
                      'this run uses; its forget set may not be in it',
                      directory)
    state, _, meta = checkpointer.restore(
        jax.device_put(template, parallel.replicated(exp.mesh)))
  finally:
    checkpointer.close()
  return state, {'seconds': meta['run_seconds'], 'reused': True,
                 'checkpoint': directory, 'history': meta.get('history', [])}
