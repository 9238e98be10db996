"""One experiment end to end: data, split, original and retrained models,
unlearning, evaluation and the report.

`run(config, workdir)` is what `main.py` calls; it is importable so that
notebooks and tests run experiments the same way. Its steps (`setup`,
`make_split`, `classifier_job`, `train_classifiers`, `unlearn`,
`evaluate_row`) are public for drivers that run many experiments, such as the
benchmark suite (mu_jax/suite.py).
"""

import json
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import ml_collections
import numpy as np
from absl import logging

from mu_jax import augmentation
from mu_jax import checkpoint as checkpoint_lib
from mu_jax import data as data_lib
from mu_jax import evaluate
from mu_jax import methods
from mu_jax import models
from mu_jax import optim
from mu_jax import parallel
from mu_jax import report
from mu_jax import self_supervised
from mu_jax import splits as splits_lib
from mu_jax import state as state_lib
from mu_jax import train
from mu_jax.methods import base
from mu_jax.methods import retrain

SUPERVISED_MODES = ('simple', 'original')
DATA_AUGMENTS = ('none', 'simple', 'opengan', 'arpl')


class ConfigError(ValueError):
  """The configuration asks for something impossible or not built."""


def normalize_config(config: ml_collections.ConfigDict):
  """Canonical spellings (original CLI aliases) and up-front checks."""
  with config.unlocked():
    if config.split.mode == 'classwise':
      config.split.mode = 'class_wise'
    augment_name = str(config.method.data_augment)
    if augment_name.lower() in ('', 'none'):
      augment_name = 'none'
    if augment_name == 'aplr':
      logging.warning("--data_augment aplr is read as 'arpl' (the original "
                      "README's spelling)")
      augment_name = 'arpl'
    config.method.data_augment = augment_name
  methods.get(config.method.name)  # Unknown or unbuilt method: fail now.
  if config.split.mode not in splits_lib.MODES:
    raise ConfigError(f'unknown mode {config.split.mode!r}; choose one of '
                      f'{", ".join(splits_lib.MODES)} (or classwise)')
  if config.method.supervised_mode not in SUPERVISED_MODES:
    raise ConfigError(
        f'unknown supervised_mode {config.method.supervised_mode!r}; choose '
        f'one of {", ".join(SUPERVISED_MODES)}')
  if config.method.loss_weight and not getattr(
      methods.get(config.method.name), 'SELF_SUPERVISED', False):
    raise ConfigError(
        f'method {config.method.name!r} takes no self-supervised term; use '
        '--loss_weight 0 (bad_teaching and scrub take one)')
  if config.method.data_augment not in DATA_AUGMENTS:
    raise ConfigError(f'unknown data_augment {config.method.data_augment!r};'
                      f' choose one of {", ".join(DATA_AUGMENTS)}')
  if (config.method.data_augment in augmentation.FEATURE_AUGMENTS
      and not getattr(methods.get(config.method.name), 'FEATURE_AUGMENT',
                      False)):
    raise ConfigError(
        f'--data_augment {config.method.data_augment} works inside the '
        'losses of bad_teaching and scrub only; method '
        f'{config.method.name!r} cannot use it (use simple or arpl, which '
        'add forget samples)')
  if (config.method.data_augment in augmentation.SAMPLE_AUGMENTS
      and config.method.augment_num < 0):
    raise ConfigError(f'augment_num is {config.method.augment_num}; it must '
                      'be at least 0')
  for what, value in (('train.epochs', config.train.epochs),
                      ('method.epochs', config.method.epochs)):
    if value < 1:
      raise ConfigError(f'{what} is {value}; it must be at least 1')


def _load_data(config):
  dataset = data_lib.load(config.data)
  if config.data.max_train or config.data.max_test:
    # The embedded set is shuffled, so a prefix stays roughly stratified.
    n_train = config.data.max_train or len(dataset.train_labels)
    n_test = config.data.max_test or len(dataset.test_labels)
    dataset = data_lib.Dataset(
        name=dataset.name, train_images=dataset.train_images[:n_train],
        train_labels=dataset.train_labels[:n_train],
        test_images=dataset.test_images[:n_test],
        test_labels=dataset.test_labels[:n_test],
        num_classes=dataset.num_classes, mean=dataset.mean, std=dataset.std)
  return dataset


class Experiment:
  """Shared pieces of one run: model factory, mesh, preprocessing."""

  def __init__(self, config, dataset, mesh):
    self.config, self.dataset, self.mesh = config, dataset, mesh
    self.model = models.create(config.model, dataset.num_classes)
    self.image_shape = dataset.train_images.shape[1:]

  def init_variables(self, rng):
    variables = dict(self.model.init(
        rng, np.zeros((1, *self.image_shape), np.float32)))
    params = variables.pop('params')
    return params, variables

  def new_state(self, tx, rng):
    return state_lib.create(self.model, tx, self.image_shape, rng)

  def prep(self, augment: bool) -> train.Preprocessing:
    c = self.config.train
    return train.Preprocessing(
        self.dataset.mean, self.dataset.std,
        crop_padding=c.crop_padding if augment else 0,
        flip=c.flip and augment)

  def context(self, data, batch_size, epochs, simclr=None,
              feature_augment=None) -> base.Context:
    eval_prep = self.prep(False)
    return base.Context(
        mean=tuple(self.dataset.mean), std=tuple(self.dataset.std),
        simclr=simclr, feature_augment=feature_augment,
        num_classes=self.dataset.num_classes, epochs=epochs,
        steps_per_epoch={s: len(d['label']) // batch_size.get(s, 1)
                         for s, d in data.items()},
        batch_size=dict(batch_size), init_variables=self.init_variables,
        iterate=lambda s: train.iterate_in_order(
            data[s], batch_size.get(s, self.config.eval.batch_size),
            eval_prep, self.mesh))


def _train_or_restore(exp: Experiment, kind: str, name: str, recipe: dict,
                      method_fn, template, data, epochs: int, batch: int,
                      augment: bool) -> tuple[Any, dict[str, Any]]:
  """Trains a model with its checkpoint folder `name`, or reuses it.

  A finished checkpoint trained with the same `recipe` is restored; an
  unfinished one is resumed; one with another recipe is refused.

  Returns:
    (state, info) with info = {'seconds', 'reused', 'checkpoint', 'history'}.
  """
  directory = os.path.join(exp.config.checkpoint_dir, name)
  recipe = json.loads(json.dumps(recipe))  # Tuples become lists, as in JSON.
  checkpointer = checkpoint_lib.Checkpointer(directory)
  try:
    meta = checkpointer.latest_meta()
    if meta is not None and meta.get('recipe') != recipe:
      raise checkpoint_lib.CheckpointError(
          f'{directory} holds a {kind} model trained with another recipe, '
          'split or dataset; delete it or set --config.checkpoint_dir')
    if meta is not None and meta.get('done'):
      state, _, meta = checkpointer.restore(
          jax.device_put(template, parallel.replicated(exp.mesh)))
      logging.info('reusing the %s model in %s', kind, directory)
      return state, {'seconds': meta['run_seconds'], 'reused': True,
                     'checkpoint': directory, 'history': meta['history']}
    ctx = exp.context(data, {'retain': batch}, epochs)
    result = train.run(
        method_fn(ctx), template, data, epochs=epochs,
        batch_size={'retain': batch}, seed=exp.config.seed,
        prep=exp.prep(augment), mesh=exp.mesh, desc=f'train {kind}',
        checkpointer=checkpointer, checkpoint_meta={'recipe': recipe})
  finally:
    checkpointer.close()
  return result.state, {'seconds': result.run_seconds, 'reused': False,
                        'compile_seconds': result.compile_seconds,
                        'resumed_from_epoch': result.resumed_from_epoch,
                        'checkpoint': directory, 'history': result.history}


class TrainingJob(NamedTuple):
  """One classifier of the training recipe: the original or a retrain model.

  Attributes:
    kind: 'original' or 'retrain'.
    name: checkpoint folder name, `<dataset>_<model>_<split>_s<seed>`.
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
  prep: train.Preprocessing


def classifier_job(exp: Experiment, kind: str, images, labels,
                   split_tag: tuple[str, str]) -> TrainingJob:
  """Describes the original model (all data) or the retrain model.

  Args:
    exp: the experiment; its config gives the recipe (`config.train`).
    kind: 'original' or 'retrain'.
    images: uint8 [N, H, W, C] training images.
    labels: int [N] labels.
    split_tag: (name, digest) of the training data: ('all', 'all') or the
      split's; the name goes into the checkpoint folder's name.
  """
  config = exp.config
  data = {'retain': train.split_data(images, labels)}
  batch, epochs = config.train.batch_size, config.train.epochs
  tx = optim.make_optimizer(config.train.optim, len(labels) // batch, epochs)
  template = exp.new_state(tx, jax.random.key(config.seed))
  recipe = json.loads(json.dumps({  # Tuples become lists, as in JSON.
      'dataset_fingerprint': exp.dataset.fingerprint(),
      'split': split_tag[1], 'model': models.recipe(config.model),
      'train': config.train.to_dict(), 'seed': config.seed}))
  name = (f'{exp.dataset.name}_{models.tag(config.model)}_{split_tag[0]}'
          f'_s{config.seed}')
  method = retrain.make(
      ml_collections.ConfigDict({'augment': config.train.augment}),
      exp.context(data, {'retain': batch}, epochs))
  return TrainingJob(
      kind=kind, name=name, directory=os.path.join(config.checkpoint_dir, name),
      recipe=recipe, seed=config.seed, template=template, method=method,
      data=data, epochs=epochs, batch_size=batch,
      prep=exp.prep(config.train.augment))


def _train_classifier(exp: Experiment, kind: str, images, labels,
                      split_tag: tuple[str, str]):
  """Trains or reuses the model that `classifier_job` describes."""
  job = classifier_job(exp, kind, images, labels, split_tag)
  if kind == 'original' and exp.config.init_from:
    return _restore_given(exp, job.template, exp.config.init_from)
  return _train_or_restore(exp, kind, job.name, job.recipe,
                           lambda ctx: job.method, job.template, job.data,
                           job.epochs, job.batch_size,
                           exp.config.train.augment)


def train_classifiers(exp: Experiment, split: splits_lib.Split):
  """The original and retrain models of `split`, trained or reused.

  Returns:
    (original, original_info, retrained, retrain_info); an info dict holds
    'seconds', 'reused', 'checkpoint' and 'history'.
  """
  images, labels = exp.dataset.train_images, exp.dataset.train_labels
  original, original_info = _train_classifier(
      exp, 'original', images, labels, ('all', 'all'))
  retrained, retrain_info = _train_classifier(
      exp, 'retrain', images[split.retain], labels[split.retain],
      (split.name, split.digest()))
  return original, original_info, retrained, retrain_info


def _pretrain_simclr(exp: Experiment):
  """The SimCLR encoder (classifier backbone + projection head), all data."""
  config, dataset = exp.config, exp.dataset
  ssl = config.ssl
  model = self_supervised.SimCLRModel(exp.model, ssl.out_dim)
  steps = len(dataset.train_labels) // ssl.batch_size
  tx = optim.make_optimizer(ssl.optim, steps, ssl.epochs)
  template = state_lib.create(model, tx, exp.image_shape,
                              jax.random.key(config.seed))
  recipe = {'dataset_fingerprint': dataset.fingerprint(),
            'model': models.recipe(config.model), 'ssl': ssl.to_dict(),
            'seed': config.seed}
  name = f'{dataset.name}_{models.tag(config.model)}_simclr_s{config.seed}'
  data = {'retain': train.split_data(dataset.train_images,
                                     dataset.train_labels)}
  method_fn = lambda ctx: self_supervised.simclr_method(
      ssl, ctx, dataset.mean, dataset.std)
  return _train_or_restore(exp, 'simclr', name, recipe, method_fn, template,
                           data, ssl.epochs, ssl.batch_size, augment=False)


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
    state, _, meta = checkpointer.restore(
        jax.device_put(template, parallel.replicated(exp.mesh)))
  finally:
    checkpointer.close()
  return state, {'seconds': meta['run_seconds'], 'reused': True,
                 'checkpoint': directory, 'history': meta.get('history', [])}


def fit_forget_batch(batch_size: int, num_forget: int,
                     num_devices: int) -> int:
  """The forget batch size, clamped to a forget set smaller than it.

  Instance-wise requests are often tiny (tens of samples) while the methods'
  forget batches are sized for hundreds (SCRUB's is 256); one batch of the
  whole forget set is what the method would see anyway, so the batch is
  lowered to the forget set's size (a multiple of the device count) with a
  warning instead of failing. Retain and mixed batches keep the driver's
  'larger than its split' error: there a too-large batch is a mistake.

  Args:
    batch_size: the configured forget batch size.
    num_forget: samples in the (possibly augmented) forget split.
    num_devices: devices the batch is split over.

  Returns:
    `batch_size`, or the largest multiple of `num_devices` <= `num_forget`
    when that is smaller (unchanged when the forget set has fewer samples
    than devices, so the driver reports it).
  """
  fitted = num_forget - num_forget % num_devices
  if batch_size <= num_forget or fitted < 1:
    return batch_size
  logging.warning('forget batch size %d is larger than the forget set (%d '
                  'samples); using %d', batch_size, num_forget, fitted)
  return fitted


def _unlearn(exp: Experiment, original, data, simclr=None, *,
             feature_augment=None,
             on_step_end: Callable[[int, Any, Any], None] | None = None,
             every_steps: int = 1) -> tuple[Any, dict[str, Any]]:
  """Runs the configured unlearning method from the original model."""
  config = exp.config.method
  module = methods.get(config.name)
  size = config.batch_size
  batch_size = {'forget': config.get('forget_batch_size', 0) or size,
                'retain': config.get('retain_batch_size', 0) or size,
                'mixed': size}
  batch_size['forget'] = fit_forget_batch(
      batch_size['forget'], len(data['forget']['label']),
      exp.mesh.devices.size)
  ctx = exp.context(data, batch_size, config.epochs, simclr, feature_augment)
  method = module.make(config, ctx)
  steps_per_epoch = sum(n for _, n in method.plan(0))
  tx = optim.make_optimizer(config.optim, max(1, steps_per_epoch),
                            config.epochs)
  result = train.run(
      method, original.with_optimizer(tx), data, epochs=config.epochs,
      batch_size=batch_size, seed=exp.config.seed,
      prep=exp.prep(config.augment), mesh=exp.mesh,
      desc=f'unlearn ({methods.canonical_name(config.name)})',
      on_step_end=on_step_end, every_steps=every_steps)
  return result.state, {'seconds': result.run_seconds,
                        'compile_seconds': result.compile_seconds,
                        'history': result.history}


def _augment_forget(exp: Experiment, data: dict,
                    info: dict | None = None) -> dict:
  """Appends --data_augment's extra samples to 'forget' and 'mixed'.

  Extra samples are flagged is_forget=1 in 'mixed'; 'retain' and the
  evaluation's forget set are untouched. The generator's info (training
  time, reuse, checkpoint, losses) is added to `info` when given.
  """
  forget = data['forget']
  images, labels, augment_info = augmentation.extra_forget(
      exp.config, exp.dataset, forget['image'], forget['label'])
  if info is not None:
    info.update(augment_info)
  if not len(labels):
    return data
  logging.info('forget set augmented (%s): %d + %d samples',
               augment_info.get('augment'), len(forget['label']),
               len(labels))
  mixed = data['mixed']
  return {**data,
          'forget': train.split_data(
              np.concatenate([forget['image'], images]),
              np.concatenate([forget['label'], labels])),
          'mixed': train.split_data(
              np.concatenate([mixed['image'], images]),
              np.concatenate([mixed['label'], labels]),
              is_forget=np.concatenate([
                  mixed['is_forget'], np.ones(len(labels), np.float32)]))}


def unlearn(exp: Experiment, original, split: splits_lib.Split, *,
            on_step_end: Callable[[int, Any, Any], None] | None = None,
            every_steps: int = 1):
  """Unlearns `split.forget` from `original` with `exp.config.method`.

  Args:
    exp: the experiment.
    original: the original model's TrainState (not modified).
    split: the forget / retain split.
    on_step_end: see `train.run`.
    every_steps: see `train.run`.

  Returns:
    (state, info, simclr_info): info holds 'seconds' (RTE),
    'compile_seconds', 'history' and 'augmentation' (`augmentation_report`);
    simclr_info is the SimCLR encoder's training info when the method takes
    a self-supervised term, else None.
  """
  images, labels = exp.dataset.train_images, exp.dataset.train_labels
  is_forget = np.zeros(len(labels), np.float32)
  is_forget[split.forget] = 1.0
  data = {'forget': train.split_data(images[split.forget],
                                     labels[split.forget]),
          'retain': train.split_data(images[split.retain],
                                     labels[split.retain]),
          # The whole train set flagged per sample, for methods that mix
          # forget and retain samples in one batch (the original project).
          'mixed': train.split_data(images, labels, is_forget=is_forget)}
  augment_info = {}
  data = _augment_forget(exp, data, augment_info)
  feature_augment = None
  if exp.config.method.data_augment == 'opengan':
    feature_augment, augment_info = augmentation.feature_hook(
        exp.config, exp.dataset, original, images[split.forget],
        split.digest(), split.name)
  simclr, simclr_info = None, None
  if exp.config.method.loss_weight:
    simclr_state, simclr_info = _pretrain_simclr(exp)
    simclr = (simclr_state.apply_fn,
              {'params': simclr_state.params, **simclr_state.model_state},
              exp.config.ssl.unlearn_temperature)
  state, info = _unlearn(exp, original, data, simclr,
                         feature_augment=feature_augment,
                         on_step_end=on_step_end, every_steps=every_steps)
  info['augmentation'] = augmentation_report(
      exp.config.method, len(data['forget']['label']) - len(split.forget),
      augment_info)
  return state, info, simclr_info


def augmentation_report(method_config: ml_collections.ConfigDict,
                        num_augmented: int, info: dict) -> dict:
  """The report's 'augmentation' entry.

  Args:
    method_config: config.method (data_augment, augment_num).
    num_augmented: extra samples added to the forget set (0 for opengan,
      which substitutes features inside the loss instead).
    info: the generator's training info ({} without a generator).

  Returns:
    {'method', 'augment_num', 'num_augmented', 'generator_seconds' (its
    training time; that of the run that trained it when reused),
    'generator_reused', 'checkpoint', 'history'}.
  """
  name = method_config.data_augment
  return {'method': name,
          # As configured; opengan does not use it (neither did the original).
          'augment_num': (int(method_config.augment_num)
                          if name != 'none' else None),
          'num_augmented': int(num_augmented),
          'generator_seconds': info.get('seconds'),
          'generator_reused': info.get('reused'),
          'checkpoint': info.get('checkpoint'),
          'history': info.get('history')}


def evaluate_row(exp: Experiment, state, split: splits_lib.Split,
                 desc: str = 'eval') -> dict[str, float]:
  """UA, RA, TA, MIA... of one model (`evaluate.metrics` on train and test)."""
  dataset = exp.dataset
  outputs = [evaluate.per_example(
      state, x, y, mean=dataset.mean, std=dataset.std, mesh=exp.mesh,
      batch_size=exp.config.eval.batch_size, desc=desc)
             for x, y in ((dataset.train_images, dataset.train_labels),
                          (dataset.test_images, dataset.test_labels))]
  return evaluate.metrics(*outputs, split)


def setup(config: ml_collections.ConfigDict):
  """Checks and normalises `config`, builds the mesh and loads the data.

  Returns:
    (dataset, mesh).
  """
  normalize_config(config)
  if config.distributed.enabled:
    parallel.initialize_distributed(config.distributed.coordinator_address,
                                    config.distributed.num_processes,
                                    config.distributed.process_id)
  mesh = parallel.make_mesh(config.mesh.num_devices)
  for what, size in (('train', config.train.batch_size),
                     ('method', config.method.batch_size),
                     ('eval', config.eval.batch_size)):
    parallel.check_batch_size(size, mesh, f'--config.{what}.batch_size:')
  return _load_data(config), mesh


def make_split(config: ml_collections.ConfigDict,
               dataset: data_lib.Dataset) -> splits_lib.Split:
  """The forget / retain / test split of `config.split` and `config.seed`."""
  return splits_lib.get_split(
      dataset.train_labels, dataset.test_labels, dataset.num_classes,
      dataset.fingerprint(), mode=config.split.mode,
      forget_num=config.split.forget_num,
      forget_fraction=config.split.forget_fraction,
      forget_classes=tuple(config.split.forget_classes), seed=config.seed,
      saved_data_path=config.split.saved_data_path)


def default_workdir(config, split: splits_lib.Split) -> str:
  method = methods.canonical_name(config.method.name)
  return os.path.join('runs', f'{config.data.name}_{config.model.name}',
                      f'{method}_{split.name}_s{config.seed}')


def run(config: ml_collections.ConfigDict, workdir: str = '') -> dict:
  """Runs one experiment and writes `workdir/report.json`.

  Args:
    config: see configs/default.py.
    workdir: output folder; '' = runs/<dataset>_<model>/<method>_<split>_s<seed>.

  Returns:
    The report (also written to `workdir/report.json`).
  """
  total_start = time.perf_counter()
  dataset, mesh = setup(config)
  split = make_split(config, dataset)
  workdir = workdir or default_workdir(config, split)
  logging.info('dataset %s: %d train / %d test; split %s: %d forget, %d '
               'retain; %d device(s); workdir %s', dataset.name,
               len(dataset.train_labels), len(dataset.test_labels),
               split.name, len(split.forget), len(split.retain),
               mesh.devices.size, workdir)
  exp = Experiment(config, dataset, mesh)
  labels = dataset.train_labels

  original, original_info, retrained, retrain_info = train_classifiers(
      exp, split)

  method_name = methods.canonical_name(config.method.name)
  simclr_info = None
  if method_name == 'retrain':
    logging.info('retrain uses the training recipe (config.train); --lr and '
                 '--epoches apply to unlearning methods only')
    unlearned, unlearn_info = retrained, {
        'seconds': retrain_info['seconds'], 'compile_seconds': None,
        'history': retrain_info['history'],
        'augmentation': augmentation_report(config.method, 0, {})}
  else:
    unlearned, unlearn_info, simclr_info = unlearn(exp, original, split)

  eval_start = time.perf_counter()
  rows = {}
  for key, state in (('original', original), ('retrain', retrained),
                     ('unlearned', unlearned)):
    rows[key] = evaluate_row(exp, state, split, f'eval {key}')
  for key in ('original', 'unlearned'):
    rows[key]['avg_gap'] = evaluate.avg_gap(rows[key], rows['retrain'])
  rows['retrain']['avg_gap'] = 0.0
  eval_seconds = time.perf_counter() - eval_start

  payload = {
      'config': json.loads(config.to_json()),
      'dataset': {'name': dataset.name, 'fingerprint': dataset.fingerprint(),
                  'train': int(len(labels)),
                  'test': int(len(dataset.test_labels)),
                  'num_classes': dataset.num_classes},
      'split': {'mode': split.mode, 'name': split.name,
                'digest': split.digest(), 'forget': int(len(split.forget)),
                'retain': int(len(split.retain)), 'test': int(len(split.test)),
                'forget_test': int(len(split.forget_test)),
                'forget_classes': list(split.forget_classes)},
      'workdir': workdir,
      'method': method_name,
      'augmentation': unlearn_info['augmentation'],
      'metrics': rows,
      'timings': {
          'original_train_seconds': original_info['seconds'],
          'original_reused': original_info['reused'],
          'retrain_seconds': retrain_info['seconds'],
          'retrain_reused': retrain_info['reused'],
          'unlearn_seconds': unlearn_info['seconds'],
          'unlearn_compile_seconds': unlearn_info['compile_seconds'],
          'simclr_pretrain_seconds': simclr_info and simclr_info['seconds'],
          'eval_seconds': eval_seconds,
          'total_seconds': time.perf_counter() - total_start},
      'history': {'original': original_info['history'],
                  'retrain': retrain_info['history'],
                  'unlearned': unlearn_info['history']},
      'checkpoints': {'original': original_info['checkpoint'],
                      'retrain': retrain_info['checkpoint'],
                      'simclr': simclr_info and simclr_info['checkpoint']},
      'versions': report.versions(),
      'device': report.device_info(),
  }
  table = report.format_table(
      {'original': rows['original'], 'retrain': rows['retrain'],
       f'unlearned ({method_name})': rows['unlearned']},
      {'original': original_info['seconds'],
       'retrain': retrain_info['seconds'],
       f'unlearned ({method_name})': unlearn_info['seconds']})
  payload['table'] = table
  report.write_json(os.path.join(workdir, 'report.json'), payload)
  return payload
