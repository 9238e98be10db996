"""One experiment's shared pieces: checked config, mesh, data, split.

`setup(config)` checks and normalises the config, joins the processes of a
multi-host run, builds the device mesh and loads the data; `make_split`
draws the forget / retain / test / validation split; an `Experiment` holds
what every stage of a run shares (model factory, mesh, preprocessing, the
methods' `Context`).
"""

import math
import os

import ml_collections
import numpy as np
from absl import logging

from mu_jax import augmentation
from mu_jax import checkpoint as checkpoint_lib
from mu_jax import data as data_lib
from mu_jax import errors
from mu_jax import evaluation
from mu_jax import guard
from mu_jax import host_batches
from mu_jax import methods
from mu_jax import models
from mu_jax import optim
from mu_jax import parallel
from mu_jax import report
from mu_jax import splits as splits_lib
from mu_jax import state as state_lib
from mu_jax.methods import base

SUPERVISED_MODES = ('simple', 'original')
DATA_AUGMENTS = ('none', 'simple', 'opengan', 'arpl')
ConfigError = errors.ConfigError


def check_config(config: ml_collections.ConfigDict):
  """Canonical spellings (original CLI aliases) and up-front checks."""
  with config.unlocked():
    config.split.mode = splits_lib.canonical_mode(config.split.mode)
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
  _check_numbers(config)
  made_for = config.method.get('mode', config.split.mode)
  if made_for != config.split.mode:
    logging.warning(
        'config.method holds %s settings chosen for %s forgetting, but this '
        'run forgets in %s mode (configs/%s.py:method(%r) has that mode\'s)',
        config.method.name, made_for, config.split.mode,
        methods.canonical_name(config.method.name), config.split.mode)


def _check_numbers(config: ml_collections.ConfigDict):
  """Refuses valid-looking numbers that would silently run the wrong thing."""
  if not (isinstance(config.seed, int) and 0 <= config.seed < 2**32):
    # jax.random.key(2**32) is key(0): larger seeds would repeat others.
    raise ConfigError(f'seed is {config.seed}; it must be a whole number in '
                      f'[0, {2**32 - 1}]')
  learning_rates = [('--config.train.optim.lr', config.train.optim.lr)]
  if methods.canonical_name(config.method.name) != 'retrain':
    # retrain trains with config.train; its method section is unused.
    learning_rates.append(('--lr (--config.method.optim.lr)',
                           config.method.optim.lr))
  for what, lr in learning_rates:
    if not (math.isfinite(lr) and lr > 0):
      raise ConfigError(
          f'{what} is {lr}; it must be a positive number (0 leaves the '
          'model as it is, a negative one climbs the loss it should '
          'descend)')
  for what, section in (('train', config.train.optim),
                        ('method', config.method.optim)):
    # Checked again where the optimizer is made; here before any training.
    if str(section.get('name', 'sgd')).lower() not in optim.OPTIMIZERS:
      raise ConfigError(f'--config.{what}.optim.name is {section.name!r}; '
                        f'choose one of {", ".join(optim.OPTIMIZERS)}')
    if section.get('schedule', 'constant') not in optim.SCHEDULES:
      raise ConfigError(f'--config.{what}.optim.schedule is '
                        f'{section.schedule!r}; choose one of '
                        f'{", ".join(optim.SCHEDULES)}')
  if config.mesh.num_devices < 0:
    raise ConfigError(f'--config.mesh.num_devices is '
                      f'{config.mesh.num_devices}; use 0 for all devices or '
                      'a positive count')
  for what in ('max_train', 'max_test'):
    if config.data[what] < 0:
      raise ConfigError(f'--config.data.{what} is {config.data[what]}; use 0 '
                        'for all images or a positive count')
  if config.split.forget_num < 0:
    # 0 means "use forget_fraction", so a negative count would silently
    # forget that fraction instead.
    raise ConfigError(
        f'--config.split.forget_num is {config.split.forget_num}; use a '
        'positive count, or 0 to forget --config.split.forget_fraction of '
        'the train set')
  guard_config = config.guard
  if (guard_config.enabled
      and methods.canonical_name(config.method.name) != 'retrain'):
    # The guard rails (mu_jax/guard.py) start after training the original
    # and retrain models: check their settings now.
    guard.check_config(guard_config)
    if config.split.mode == 'random' and config.split.val_fraction <= 0:
      raise ConfigError(
          'the guard rails of random forgetting compare forget accuracy with '
          'held-out accuracy and need a validation set: set '
          '--config.split.val_fraction > 0, or --config.guard.enabled=False')


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

  def __init__(self, config, dataset, mesh, events_dir: str = '',
               model=None):
    """Args: config, dataset, mesh; events_dir: where per-step metrics go as
    TensorBoard event files ('' = nowhere); model: the Flax module, by
    default `config.model`'s (mu_jax/api.py passes a user's own)."""
    self.config, self.dataset, self.mesh = config, dataset, mesh
    self.events_dir = events_dir
    self.model = (model if model is not None else
                  models.create(config.model, dataset.num_classes))
    self.image_shape = dataset.train_images.shape[1:]

  def init_variables(self, rng):
    variables = dict(self.model.init(
        rng, np.zeros((1, *self.image_shape), np.float32)))
    params = variables.pop('params')
    return params, variables

  def new_state(self, tx, rng):
    return state_lib.create(self.model, tx, self.image_shape, rng)

  def prep(self, augment: bool) -> host_batches.Preprocessing:
    c = self.config.train
    return host_batches.Preprocessing(
        self.dataset.mean, self.dataset.std,
        crop_padding=c.crop_padding if augment else 0,
        flip=c.flip and augment)

  def event_log(self, name: str, learning_rate=None) -> report.EventLog | None:
    """Event files for one training run under `events_dir` (or None).

    `learning_rate`: `step -> lr`, logged with every step's metrics. None on
    processes other than the first of a multi-process run: process 0 writes
    the run's files.
    """
    if not self.events_dir or not parallel.is_main_process():
      return None
    return report.EventLog(os.path.join(self.events_dir, name),
                           learning_rate)

  def evaluate(self, state, split: splits_lib.Split,
               desc: str = 'eval') -> dict[str, float]:
    """`evaluation.row` of `state` on this experiment's data and mesh."""
    return evaluation.row(state, self.dataset, split, mesh=self.mesh,
                        batch_size=self.config.eval.batch_size, desc=desc)

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
        iterate=lambda s: host_batches.iterate_in_order(
            data[s], batch_size.get(s, self.config.eval.batch_size),
            eval_prep, self.mesh))


def setup(config: ml_collections.ConfigDict):
  """Checks and normalises `config`, builds the mesh and loads the data.

  Returns:
    (dataset, mesh).
  """
  if config.distributed.enabled:
    # Joined before the checks: a process whose config is refused then
    # ends the others through the coordination service (cli._fail) instead
    # of leaving them waiting for it at start-up (5 minutes, then an abort).
    parallel.initialize_distributed(
        config.distributed.coordinator_address,
        config.distributed.num_processes, config.distributed.process_id,
        config.distributed.get('heartbeat_timeout_seconds',
                               parallel.HEARTBEAT_TIMEOUT_SECONDS))
  if not config.checkpoint_dir:
    config.checkpoint_dir = checkpoint_lib.default_directory()
  check_config(config)
  # Checkpoints without checksums are refused unless the user allows them.
  checkpoint_lib.allow_unverified(
      config.get('checkpoint', {}).get('allow_unverified', False))
  mesh = parallel.make_mesh(config.mesh.num_devices)
  for what, size in (('train', config.train.batch_size),
                     ('method', config.method.batch_size),
                     ('eval', config.eval.batch_size)):
    parallel.check_batch_size(size, mesh, f'--config.{what}.batch_size:')
  dataset = _load_data(config)
  # What the loader resolved (an .npz path is source npz, named after its
  # file) labels the run's folders and report.
  config.data.name = dataset.name
  if config.data.path.endswith('.npz'):
    config.data.source = 'npz'
  models.check_image_shape(config.model, dataset.train_images.shape[1:],
                           config.data.path or dataset.name)
  return dataset, mesh


def make_split(config: ml_collections.ConfigDict,
               dataset: data_lib.Dataset) -> splits_lib.Split:
  """The forget / retain / test split of `config.split` and `config.seed`.

  With `--saved_data_path`, only process 0 of a multi-process run saves it
  (the others draw the same split, or read the saved one).
  """
  count = config.split.get('class_wise_count', 0)
  if config.split.mode == 'class_wise' and count:
    classes = tuple(config.split.forget_classes)
    have = int(np.isin(dataset.train_labels, classes).sum())
    if have != count:
      names = ', '.join(map(str, classes))
      raise ConfigError(
          f'--num_indexes_to_replace {count}: class {names} has {have} train '
          'images and mu_jax forgets whole classes; drop the flag or set it '
          f'to {have}')
  return splits_lib.get_split(
      dataset.train_labels, dataset.test_labels, dataset.num_classes,
      dataset.fingerprint(), mode=config.split.mode,
      forget_num=config.split.forget_num,
      forget_fraction=config.split.forget_fraction,
      forget_classes=tuple(config.split.forget_classes), seed=config.seed,
      val_fraction=config.split.val_fraction,
      saved_data_path=config.split.saved_data_path,
      save=parallel.is_main_process())
