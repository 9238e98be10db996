"""Unlearn a Flax classifier of your own: mu_jax as a library.

  import mu_jax
  result = mu_jax.unlearn(model, variables, forget=(xf, yf),
                          retain=(xr, yr), val=(xv, yv), method='salun',
                          mode='random')
  result.variables  # the unlearned weights: {'params': ..., 'batch_stats': ...}
  result.outcome    # 'forgotten', 'not_forgotten' or 'kept_original'
  result.report     # the guard's checks and decisions, accuracies before/after
  mu_jax.evaluate(model, result.variables, forget=(xf, yf), retain=(xr, yr),
                  test=(xt, yt), retrain_variables=None)  # UA, RA, TA, MIA

What goes in:
* `model`: any `flax.linen.Module` whose `__call__(images)` returns logits
  [N, classes]. If `__call__` takes `train` (BatchNorm, as the flax
  examples write it) it gets train=True while unlearning and False to
  measure; `training`, and `deterministic` (= not train), are understood too.
  It may return `(logits, features)` instead, features [N, D] being the
  penultimate layer: the optional hook that the self-supervised terms
  (`loss_weight` > 0) need.
* `variables`: the model's variables, as `model.init` makes them.
* Images [N, H, W, C] in the model's own preprocessing. They reach the model
  as float32, unchanged: the API never renormalises. Integer labels in
  [0, classes).
* `val`: held-out data the model never trained on, the guard rails'
  yardstick (mu_jax/guard.py): in random mode forget accuracy should end
  near val's, in both modes val accuracy (of the remaining classes) must
  not drop.

The unlearning is the CLI's (`unlearning.unlearn`): the same methods,
configs, guard rails and reports. The CLI-only parts are forget-set
augmentation (`data_augment`: simple and arpl make uint8 pixel images,
opengan needs mu_jax's own classifier head) and the original and retrain
models, which here are yours.
"""

import dataclasses
import hashlib
import inspect
import os
import shutil
import tempfile
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from mu_jax import data as data_lib
from mu_jax import errors
from mu_jax import evaluation as evaluate_lib
from mu_jax import experiment
from mu_jax import methods
from mu_jax import parallel
from mu_jax import splits as splits_lib
from mu_jax import state as state_lib
from mu_jax import unlearning as unlearn_lib

PyTree = Any
Pair = tuple[Any, Any]  # (images, labels)

# The keyword a model's `__call__` may take for train / eval behaviour, and
# its value when mu_jax trains.
_TRAIN_KEYWORDS = {'train': True, 'training': True, 'deterministic': False}
# How many examples of forget and retain the chance-level check measures.
_CHANCE_CHECK_SAMPLES = 1000


class InputError(errors.MuJaxError, ValueError):
  """Bad input to `unlearn` or `evaluate`; the message names the argument."""


@dataclasses.dataclass(frozen=True)
class Result:
  """What `unlearn` hands back.

  Attributes:
    variables: the unlearned variables, in the structure `variables` had.
    outcome: the guard rails' verdict: 'forgotten', 'not_forgotten' (the
      target was not met within the budget; the closest model is returned)
      or 'kept_original' (every attempt did more harm than good: these are
      the original variables). None when the guard is disabled.
    report: the method, the split's sizes, the unlearning's run time, the
      guard's checks and decisions, and forget / retain / val accuracy
      before and after (measured on the data given: no oracle).
  """
  variables: PyTree
  outcome: str | None
  report: dict[str, Any]

  @property
  def forgotten(self) -> bool:
    """True unless the guard rails report a missed target."""
    return self.outcome in (None, 'forgotten')


class _Classifier(nn.Module):
  """A user's classifier in mu_jax's calling convention: `(images, train)
  -> (logits, features)`, features None when the model returns logits only.
  Its variables are the user's, one level down under 'model'."""
  model: nn.Module
  train_keyword: str | None

  @nn.compact
  def __call__(self, images, train: bool = False):
    kwargs = {}
    if self.train_keyword is not None:
      kwargs[self.train_keyword] = (
          train if _TRAIN_KEYWORDS[self.train_keyword] else not train)
    out = self.model(images, **kwargs)
    if isinstance(out, (tuple, list)):
      return out[0], out[1]
    return out, None


def _train_keyword(model: nn.Module) -> str | None:
  parameters = inspect.signature(type(model).__call__).parameters
  return next((k for k in _TRAIN_KEYWORDS if k in parameters), None)


def _nest(variables: Mapping[str, PyTree]) -> dict[str, PyTree]:
  return {collection: {'model': tree}
          for collection, tree in variables.items()}


def _unnest(variables: Mapping[str, PyTree]) -> dict[str, PyTree]:
  return {collection: tree['model'] for collection, tree in variables.items()}


def _check_model(model, variables) -> str | None:
  if not isinstance(model, nn.Module):
    raise InputError(f'model: expected a flax.linen.Module, got '
                     f'{type(model).__name__}')
  if not isinstance(variables, Mapping) or 'params' not in variables:
    raise InputError("variables: expected what model.init returns, a "
                     "mapping with 'params' (and e.g. 'batch_stats')")
  return _train_keyword(model)


def _pair(name: str, pair) -> tuple[np.ndarray, np.ndarray]:
  """(float32 images [N, H, W, C], int32 labels [N]) from a user's pair."""
  if not isinstance(pair, (tuple, list)) or len(pair) != 2:
    raise InputError(f'{name}: expected a pair (images, labels)')
  images, labels = np.asarray(pair[0]), np.asarray(pair[1])
  if images.ndim != 4 or not (np.issubdtype(images.dtype, np.number)
                              and not np.iscomplexobj(images)):
    raise InputError(f'{name}: images must be a real-valued [N, H, W, C] '
                     f'array, got {images.dtype} {images.shape}')
  if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype,
                                                           np.integer):
    raise InputError(f'{name}: labels must be an integer [N] array with N = '
                     f'{len(images)} (one per image), got {labels.dtype} '
                     f'{labels.shape}')
  if not len(labels):
    raise InputError(f'{name}: no examples')
  images = images.astype(np.float32)
  if not np.all(np.isfinite(images)):
    raise InputError(f'{name}: images hold NaN or infinite values')
  return images, labels.astype(np.int32)


def _probe(model, keyword, variables,
           images: np.ndarray) -> tuple[int, bool]:
  """(the model's class count, whether it returns features), from its
  output on one image."""
  try:
    out, features = _Classifier(model, keyword).apply(
        _nest(variables), images[:1], train=False)
  except Exception as e:  # pylint: disable=broad-except
    raise InputError(f'model: applying it to one image of shape '
                     f'{images.shape[1:]} with these variables failed: '
                     f'{str(e).splitlines()[0]}') from e
  if getattr(out, 'ndim', 0) != 2 or out.shape[0] != 1 or out.shape[1] < 2:
    raise InputError(
        f'model: its output must be logits [N, classes] (or a pair '
        f'(logits, features)), got shape {getattr(out, "shape", None)} for '
        'N = 1')
  return int(out.shape[1]), features is not None


def _check_labels(name: str, labels: np.ndarray, num_classes: int):
  if labels.min() < 0 or labels.max() >= num_classes:
    raise InputError(f'{name}: labels lie in [{labels.min()}, '
                     f'{labels.max()}], but the model has {num_classes} '
                     f'outputs (classes 0..{num_classes - 1})')


def _row_digests(images: np.ndarray) -> set[bytes]:
  return {hashlib.sha256(row.tobytes()).digest() for row in images}


def _check_disjoint(first: str, a: np.ndarray, second: str, b: np.ndarray):
  shared = len(_row_digests(a) & _row_digests(b))
  if shared:
    raise InputError(
        f'{second}: {shared} of its images are also in {first}; {second} '
        'must be data the model never trained on')


def _check_not_at_chance(name, state, images, labels, chance, mesh,
                         batch_size):
  """Refuses data on which the model is no better than `chance` (the
  majority class's share of the training data): the likely cause is a
  preprocessing the model was not trained with."""
  rng = np.random.default_rng(0)
  pick = rng.permutation(len(labels))[:_CHANCE_CHECK_SAMPLES]
  correct = _per_example(state, images[pick], labels[pick], mesh,
                         batch_size)['correct']
  # Three standard errors above the majority-class rate.
  if correct.mean() <= chance + 3 * np.sqrt(chance * (1 - chance) / len(pick)):
    raise InputError(
        f'{name}: the model is at chance on it ({100 * correct.mean():.1f} % '
        f'right, majority class {100 * chance:.1f} %); are the images in the '
        "model's own preprocessing? (check_chance=False skips this check)")


def _per_example(state, images, labels, mesh, batch_size):
  channels = images.shape[-1]
  return evaluate_lib.per_example(
      state, images, labels, mean=(0.0,) * channels, std=(1.0,) * channels,
      mesh=mesh, batch_size=batch_size, desc='measure')


def _state(classifier: _Classifier, variables) -> state_lib.TrainState:
  nested = _nest(variables)
  params = nested.pop('params')
  tx = optax.identity()  # Each method sets its own (`with_optimizer`).
  return state_lib.TrainState(step=jnp.zeros((), jnp.int32),
                              params=params, model_state=nested,
                              opt_state=tx.init(params),
                              apply_fn=classifier.apply, tx=tx)


def _variables(state: state_lib.TrainState) -> dict[str, PyTree]:
  return jax.device_get(_unnest({'params': state.params,
                                 **state.model_state}))


def _check_shipped_configs(module) -> None:
  """Raises InputError if `module` (configs.default) is not mu_jax's own."""
  shipped = os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')
  found = os.path.dirname(os.path.abspath(module.__file__))
  if os.path.realpath(found) != os.path.realpath(shipped):
    raise InputError(
        f"config: the package 'configs' imported from {found} is not "
        f"mu_jax's ({shipped}); rename your own 'configs' package or pass "
        'config= yourself')


def default_config(method: str = 'salun',
                   mode: str = 'random') -> ml_collections.ConfigDict:
  """The config `unlearn` uses when given none: configs/default.py's, with
  `method`'s defaults for `mode` (configs/<method>.py) from its table of
  sections, which is then dropped, as the CLI does.

  The one place the library reads `configs/`: the defaults are data that
  ship beside the `mu_jax` package, and the rest of the library takes its
  config from the caller. A caller's own top-level `configs` package would
  shadow them, so the import is checked to be the one installed with mu_jax.
  """
  from configs import default  # pylint: disable=g-import-not-at-top
  _check_shipped_configs(default)
  config = default.get_config()
  config.split.mode = splits_lib.canonical_mode(mode)
  config.method = methods.section(config, method, config.split.mode)
  del config.method_configs
  return config


def _checked_config(config, method: str, mode: str):
  method = methods.canonical_name(method)
  if method not in methods.AVAILABLE:
    raise InputError(f'method: unknown {method!r}; choose one of '
                     f'{", ".join(methods.AVAILABLE)}')
  mode = splits_lib.canonical_mode(mode)
  if mode not in splits_lib.MODES:
    raise InputError(f'mode: {mode!r} is not one of '
                     f'{", ".join(splits_lib.MODES)}')
  if config is None:
    config = default_config(method, mode)
  else:
    config = config.copy_and_resolve_references()
    config.split.mode = mode
    if 'method_configs' in config:
      # As the CLI's --method and --mode: the method's section for the
      # mode from the config's table, unless config.method is already it.
      if (methods.canonical_name(config.method.name) != method
          or config.method.get('mode', mode) != mode):
        config.method = methods.section(config, method, mode)
      del config.method_configs
    elif methods.canonical_name(config.method.name) != method:
      raise InputError(f'config: its method section is for '
                       f'{config.method.name!r}, but method={method!r}')
  if config.method.data_augment not in ('', 'none'):
    raise InputError(
        f'config: data_augment={config.method.data_augment!r} is for the '
        "CLI's uint8 datasets; through the API use 'none'")
  if method == 'retrain':
    # The gold standard: a fresh model with the training recipe, no guard.
    train = config.train
    config.method.update(epochs=train.epochs, batch_size=train.batch_size,
                         augment=train.augment)
    config.method.optim = train.optim.copy_and_resolve_references()
    config.guard.enabled = False
  # `val` is given, not drawn from a test set; a positive fraction tells
  # check_config that the guard rails have one.
  config.split.val_fraction = 0.5
  experiment.check_config(config)
  return config


def unlearn(model: nn.Module, variables: Mapping[str, PyTree], *,
            forget: Pair, retain: Pair, val: Pair, method: str = 'salun',
            mode: str = 'random',
            config: ml_collections.ConfigDict | None = None,
            check_chance: bool = True) -> Result:
  """Makes `model` forget `forget`, keeping what it knows of `retain`.

  Args:
    model: a flax.linen classifier (see the module docstring).
    variables: its trained variables.
    forget: (images, labels) to forget. In class_wise mode, every train
      example of the classes to forget.
    retain: (images, labels) to keep: the rest of the training data, or a
      sample of it.
    val: (images, labels) the model never trained on.
    method: a method of mu_jax/methods (or an alias: 'SalUn', 'RL', ...).
    mode: 'random' (examples) or 'class_wise' (the classes of `forget`).
    config: a configs/default.py-style config (None: `default_config`);
      its method, guard, ssl, train (the budget's retrain recipe), eval and
      mesh sections are used, its data and split sections are not. With
      its table of sections (`config.method_configs`), `method` and `mode`
      pick the section from it, as the CLI's --method and --mode do.
    check_chance: refuse forget / retain data on which the model is at
      chance (the usual sign of a preprocessing mismatch).

  Returns:
    A `Result`. The run logs NOT FORGOTTEN when the guard rails' target was
    not met; `result.outcome` says so too.

  Raises:
    InputError: bad input, in one line naming the argument.
    errors.ConfigError: a bad config field.
  """
  keyword = _check_model(model, variables)
  config = _checked_config(config, method, mode)
  method = methods.canonical_name(method)
  mode = config.split.mode
  pairs = {name: _pair(name, pair) for name, pair in
           (('forget', forget), ('retain', retain), ('val', val))}
  shapes = {name: images.shape[1:] for name, (images, _) in pairs.items()}
  if len(set(shapes.values())) > 1:
    raise InputError(f'val: images of forget, retain and val must have one '
                     f'shape, got {shapes}')
  num_classes, has_features = _probe(model, keyword, variables,
                                     pairs['val'][0])
  for name, (_, labels) in pairs.items():
    _check_labels(name, labels, num_classes)
  (xf, yf), (xr, yr), (xv, yv) = pairs.values()
  _check_disjoint('forget', xf, 'val', xv)
  forget_classes = ()
  if mode == 'class_wise':
    forget_classes = tuple(int(c) for c in np.unique(yf))
    if np.isin(yr, forget_classes).any():
      raise InputError(
          f'retain: it has examples of classes {forget_classes}, which '
          'class_wise mode forgets whole; drop them or use mode random')
  if config.method.loss_weight and not has_features:
    raise InputError(
        'model: the self-supervised term (loss_weight > 0) needs features: '
        'make __call__ return (logits, penultimate features)')

  mesh = parallel.make_mesh(config.mesh.num_devices)
  for what in ('method', 'eval', 'train'):
    parallel.check_batch_size(config[what].batch_size, mesh,
                              f'config.{what}.batch_size:')
  classifier = _Classifier(model, keyword)
  original = _state(classifier, variables)
  batch = config.eval.batch_size
  if check_chance:
    # Chance is the training data's majority class: a class-wise forget set
    # is one class, which a model predicting it everywhere gets right.
    chance = np.bincount(np.concatenate([yf, yr])).max() / (len(yf) + len(yr))
    for name, (images, labels) in (('retain', (xr, yr)),
                                   ('forget', (xf, yf))):
      _check_not_at_chance(name, original, images, labels, chance, mesh,
                           batch)

  in_forget = np.isin(yv, forget_classes)
  channels = xv.shape[-1]
  dataset = data_lib.Dataset(
      name='api', train_images=np.concatenate([xf, xr]),
      train_labels=np.concatenate([yf, yr]), test_images=xv, test_labels=yv,
      num_classes=num_classes, mean=(0.0,) * channels, std=(1.0,) * channels)
  split = splits_lib.Split(
      mode=mode, seed=config.seed, forget=np.arange(len(yf)),
      retain=np.arange(len(yf), len(yf) + len(yr)), test=np.zeros(0, int),
      forget_test=np.flatnonzero(in_forget), forget_classes=forget_classes,
      val=np.flatnonzero(~in_forget))
  if not len(split.val):
    raise InputError('val: it has no example outside the classes to forget')
  # The SimCLR encoder of a self-supervised term is cached by recipe, which
  # cannot describe a user's model: it lives in a folder of this call only.
  scratch = tempfile.mkdtemp(prefix='mu_jax_api_')
  try:
    config.checkpoint_dir = scratch
    exp = experiment.Experiment(config, dataset, mesh, model=classifier)
    unlearned, info, _ = unlearn_lib.unlearn(exp, original, split)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)

  def accuracies(state):
    return {name: float(100 * _per_example(state, x, y, mesh,
                                           batch)['correct'].mean())
            for name, (x, y) in (('forget', (xf, yf)), ('retain', (xr, yr)),
                                 ('val', (xv[split.val], yv[split.val])))}

  outcome = info['guard'].get('outcome')
  if outcome not in (None, 'forgotten'):
    logging.warning('%s', info['guard']['headline'])
  if info['guard'].get('caveat'):
    logging.warning('%s', info['guard']['caveat'])
  report = {'method': method, 'mode': mode, 'forget_classes': forget_classes,
            'sizes': {'forget': len(yf), 'retain': len(yr), 'val': len(yv)},
            'num_classes': num_classes, 'outcome': outcome,
            'before': accuracies(original), 'after': accuracies(unlearned),
            'unlearn': info, 'config': config.to_dict()}
  return Result(variables=_variables(unlearned), outcome=outcome,
                report=report)


def evaluate(model: nn.Module, variables: Mapping[str, PyTree], *,
             forget: Pair, retain: Pair, test: Pair,
             retrain_variables: Mapping[str, PyTree] | None = None,
             batch_size: int = 512) -> dict[str, Any]:
  """The standard row of one model, as the unlearning literature reports it.

  Args:
    model, variables: the classifier and its (unlearned) variables.
    forget, retain: (images, labels) of the forget and retain sets.
    test: (images, labels) of test data (class-wise: of the other classes).
    retrain_variables: a model retrained without `forget`; adds its row as
      'retrain' and 'avg_gap' (the mean |difference| of UA, RA, TA and
      MIA-efficacy, SalUn's Avg. Gap).
    batch_size: evaluation batch (a multiple of the device count).

  Returns:
    forget_acc, unlearn_acc (UA), retain_acc (RA), test_acc (TA),
    mia_efficacy and mia_loss_auc (mu_jax/evaluation.py), in percent.
  """
  keyword = _check_model(model, variables)
  pairs = {name: _pair(name, pair) for name, pair in
           (('forget', forget), ('retain', retain), ('test', test))}
  (xf, yf), (xr, yr), (xt, yt) = pairs.values()
  num_classes, _ = _probe(model, keyword, variables, xt)
  for name, (_, labels) in pairs.items():
    _check_labels(name, labels, num_classes)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(batch_size, mesh, 'batch_size:')
  split = splits_lib.Split(
      mode='random', seed=0, forget=np.arange(len(yf)),
      retain=np.arange(len(yf), len(yf) + len(yr)), test=np.arange(len(yt)),
      forget_test=np.zeros(0, int), forget_classes=())
  classifier = _Classifier(model, keyword)

  def row(variables):
    outputs = [_per_example(_state(classifier, variables), x, y, mesh,
                            batch_size)
               for x, y in ((np.concatenate([xf, xr]),
                             np.concatenate([yf, yr])), (xt, yt))]
    return evaluate_lib.metrics(*outputs, split)

  result = row(variables)
  if retrain_variables is not None:
    _check_model(model, retrain_variables)
    result['retrain'] = row(retrain_variables)
    result['avg_gap'] = evaluate_lib.avg_gap(result, result['retrain'])
  return result
