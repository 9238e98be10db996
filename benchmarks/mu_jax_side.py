"""mu_jax's side of the benchmark: train-step throughput and method run time.

Everything goes through the public driver, so the numbers include what a user
pays: host batching, the per-step metrics read-back and the checks of
`train.run`, and for methods `unlearning.unlearn` (splits, prepare, compile).

`method_workload` also describes each method's work (epochs, phases, steps,
batch sizes, optimizer, loss hyperparameters) as plain Python values, so that
the PyTorch reference repeats exactly the same work.
"""

import copy
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from configs import default
from mu_jax import experiment
from mu_jax import host_batches
from mu_jax import methods
from mu_jax import models
from mu_jax import optim
from mu_jax import parallel
from mu_jax import report
from mu_jax import state as state_lib
from mu_jax import train
from mu_jax import unlearning
from mu_jax.methods import base



def default_methods() -> tuple[str, ...]:
  """The methods whose run time the benchmark measures by default: every
  unlearning method (retrain is the training recipe, measured by the step),
  from the registry (mu_jax/methods/)."""
  return tuple(methods.unlearning_methods())

# Hyperparameters the PyTorch loops read from the method's config.
_LOSS_FIELDS = ('alpha', 'gamma', 'temperature', 'mask_ratio', 'loop',
                'retain_weight', 'variant', 'different_label')


# Dense bfloat16 peak FLOP/s per chip, from the vendors' data sheets (no
# sparsity), matched in order against `jax.Device.device_kind`. Used only to
# report a bfloat16 step as a fraction of peak.
PEAK_BF16_FLOPS = (('H100 PCIe', 756e12), ('H100', 989e12), ('H200', 989e12),
                   ('A100', 312e12), ('TPU v4', 275e12), ('TPU v5 lite', 197e12),
                   ('TPU v5e', 197e12), ('TPU v5p', 459e12), ('TPU v6', 918e12))


def peak_bf16_flops(device_kind: str) -> float | None:
  """A chip's dense bfloat16 peak FLOP/s, or None if unknown (CPUs)."""
  return next((peak for name, peak in PEAK_BF16_FLOPS
               if name.lower() in device_kind.lower()), None)


def device_summary() -> dict[str, Any]:
  """Platform, device kind and count, e.g. for the table header."""
  return report.device_info()


def synthetic_data(n: int, shape: tuple[int, ...], num_classes: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Random uint8 images and int32 labels (speed does not depend on them)."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, *shape), np.uint8)
  labels = rng.integers(0, num_classes, n).astype(np.int32)
  return images, labels


def recipe_optimizer() -> ml_collections.ConfigDict:
  """The training recipe's SGD (configs/default.py) at a constant rate.

  Constant so that the PyTorch reference's plain `torch.optim.SGD` does the
  same arithmetic per step.
  """
  optim_config = copy.deepcopy(default.get_config().train.optim)
  optim_config.schedule = 'constant'
  return optim_config


def _model(model_name: str, num_classes: int, width: int, dtype: str):
  return models.create(ml_collections.ConfigDict(
      {'name': model_name, 'width': width, 'max_pool': False,
       'dtype': dtype}), num_classes)


def step_flops(model_name: str, batch_size: int, shape: tuple[int, ...], *,
               num_classes: int = 10, width: int = 32,
               dtype: str = 'float32') -> float:
  """FLOPs of one train step's forward and backward pass (XLA's count).

  From XLA's cost analysis of the compiled loss gradient on one device; the
  optimizer's element-wise update is left out (under 0.1 % for these models).
  """
  model = _model(model_name, num_classes, width, dtype)
  x = jax.ShapeDtypeStruct((batch_size, *shape), np.float32)
  y = jax.ShapeDtypeStruct((batch_size,), np.int32)
  variables = jax.eval_shape(model.init, jax.random.key(0),
                             jax.ShapeDtypeStruct((1, *shape), np.float32))

  def loss(variables, x, y):
    logits, _ = model.apply(variables, x, train=True,
                            mutable=['batch_stats'])[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  cost = jax.jit(jax.grad(loss)).lower(variables, x, y).compile(
      ).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def step_throughput(model_name: str, batch_size: int,
                    shape: tuple[int, ...], *, steps: int, warmup: int,
                    num_classes: int = 10, width: int = 32,
                    dtype: str = 'float32',
                    seed: int = 0) -> dict[str, Any]:
  """Times supervised train steps of `model_name` through `train.run`.

  Args:
    model_name: a `mu_jax.models` name (cnn, resnet8, resnet20, resnet18).
    batch_size: global batch, split over all devices of the mesh.
    shape: image shape [H, W, C].
    steps: timed steps (after `warmup` untimed ones).
    warmup: steps left out of the statistics.
    num_classes: classifier outputs.
    width: the CNN's width.
    dtype: 'float32', or 'bfloat16' for mixed precision (config.model.dtype).
    seed: seeds data and initialisation.

  Returns:
    {'img_per_s' (median step), 'step_seconds' (all timed steps),
    'compile_seconds', 'devices'}.
  """
  mesh = parallel.make_mesh()
  model = _model(model_name, num_classes, width, dtype)
  tx = optim.make_optimizer(recipe_optimizer(), warmup + steps, 1)
  state = state_lib.create(model, tx, shape, jax.random.key(seed))
  images, labels = synthetic_data((warmup + steps + 1) * batch_size, shape,
                                  num_classes, seed)
  method = base.single_phase(base.supervised_update('retain'), ('retain',),
                             warmup + steps + 1)
  marks = []

  def mark(step, state, method_state):
    # The driver waits for the step before calling: a mark per finished step.
    del step, state, method_state
    marks.append(time.perf_counter())

  channels = shape[-1]
  result = train.run(
      method, state, {'retain': host_batches.split_data(images, labels)},
      epochs=1, batch_size={'retain': batch_size}, seed=seed,
      prep=host_batches.Preprocessing((127.5,) * channels,
                                      (64.0,) * channels),
      mesh=mesh, desc=f'step {model_name}', on_step_end=mark)
  seconds = np.diff(marks)[warmup:]
  return {'img_per_s': float(batch_size / np.median(seconds)),
          'step_seconds': [float(s) for s in seconds],
          'compile_seconds': float(result.compile_seconds),
          'devices': int(mesh.devices.size)}


def default_config(method: str,
                   variant: str | None = None) -> ml_collections.ConfigDict:
  """configs/default.py (or its `variant`) with `method`'s own defaults."""
  config = default.get_config(variant)
  config.method = default.method_config(method, config.split.mode,
                                        smoke=config.smoke)
  # The method itself, as the PyTorch reference runs it: the guard rails'
  # checks and retries would make the time depend on the data.
  config.guard.enabled = False
  return config


class Experiment:
  """The default experiment's data and split, loaded once for all methods."""

  def __init__(self, variant: str | None = None):
    self.variant = variant
    config = default_config('finetune', variant)
    self.dataset, self.mesh = experiment.setup(config)
    self.split = experiment.make_split(config, self.dataset)

  def exp(self, method: str) -> experiment.Experiment:
    config = default_config(method, self.variant)
    experiment.check_config(config)
    return experiment.Experiment(config, self.dataset, self.mesh)

  def original(self, exp: experiment.Experiment):
    """A random-init 'original' model: the work per step is the same."""
    tx = optim.make_optimizer(exp.config.train.optim, 1, 1)
    return exp.new_state(tx, jax.random.key(exp.config.seed))


def method_workload(bench: Experiment, method: str) -> dict[str, Any]:
  """What `unlearning.unlearn` will run for `method`, as plain values.

  Returns:
    {'method', 'epochs', 'plan' (per epoch, [(phase, steps)]), 'phases'
    (phase -> splits), 'batch_size' (split -> size), 'optim' (name, lr,
    momentum, weight_decay, schedule), 'hparams' (loss settings),
    'model' (name, width), 'num_classes', 'split' (forget / retain indices)}.
  """
  exp = bench.exp(method)
  config = exp.config.method
  size = config.batch_size
  # The batch sizes unlearning.run_method gives the driver.
  batch_size = {'forget': config.get('forget_batch_size', 0) or size,
                'retain': config.get('retain_batch_size', 0) or size,
                'mixed': size}
  batch_size['forget'] = unlearning.fit_forget_batch(
      batch_size['forget'], len(bench.split.forget), bench.mesh)
  n = {'forget': len(bench.split.forget), 'retain': len(bench.split.retain),
       'mixed': len(bench.dataset.train_labels)}
  data = {s: {'label': np.zeros(n[s], np.int32)} for s in n}
  ctx = exp.context(data, batch_size, config.epochs)
  made = methods.get(config.name).make(config, ctx)
  return {
      'method': method,
      'epochs': int(config.epochs),
      'plan': [[(p, int(k)) for p, k in made.plan(e)]
               for e in range(config.epochs)],
      'phases': {name: list(phase.splits)
                 for name, phase in made.phases.items()},
      'batch_size': batch_size,
      'optim': {k: config.optim.get(k) for k in
                ('name', 'lr', 'momentum', 'weight_decay', 'schedule')},
      'hparams': {k: config.get(k) for k in _LOSS_FIELDS if k in config},
      'model': {'name': exp.config.model.name,
                'width': exp.config.model.width},
      'num_classes': bench.dataset.num_classes,
      'eval_batch_size': exp.config.eval.batch_size,
      'split': {'forget': np.asarray(bench.split.forget),
                'retain': np.asarray(bench.split.retain)},
  }


def method_run(bench: Experiment, method: str) -> dict[str, Any]:
  """Runs `method` once through `unlearning.unlearn` and times it.

  Returns:
    {'wall_seconds' (the whole call: data, prepare, compile, steps),
    'rte_seconds' (the driver's run time, compile excluded, as reports
    give it), 'compile_seconds', 'steps'}.
  """
  exp = bench.exp(method)
  original = bench.original(exp)
  jax.block_until_ready(original)
  start = time.perf_counter()
  state, info, _ = unlearning.unlearn(exp, original, bench.split)
  jax.block_until_ready(state)
  wall = time.perf_counter() - start
  return {'wall_seconds': wall, 'rte_seconds': float(info['seconds']),
          'compile_seconds': float(info['compile_seconds']),
          'steps': int(state.step)}
