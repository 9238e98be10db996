"""The training driver: runs any `Method` over a device mesh.

It owns everything methods must not do: jit compilation (once per phase, ahead
of time, so compile time is measured apart from run time), shardings and buffer
donation, host batching, augmentation and normalisation inside the compiled
step, NaN checks, progress bars and per-epoch checkpoints that a killed run
resumes from.

Batches are drawn per split from a deterministic stream: the k-th batch of a
split is position k mod P of pass k div P (P = full batches per pass), and each
pass is a fresh permutation seeded by (seed, split, pass). A resumed run
therefore sees exactly the batches the uninterrupted run would have seen.
"""

import dataclasses
import functools
import time
import zlib
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from mu_jax import augment
from mu_jax import checkpoint as checkpoint_lib
from mu_jax import parallel
from mu_jax.methods import base

PyTree = Any
# One split on the host: {'image': uint8 [N, H, W, C], 'label': int [N], and
# any other per-sample arrays a method needs (e.g. 'is_forget': f32 [N])}.
SplitData = Mapping[str, np.ndarray]


class TrainingError(RuntimeError):
  """Training diverged or was configured impossibly."""


class Preprocessing(NamedTuple):
  """Normalisation constants and the training-time augmentation."""
  mean: tuple[float, ...]
  std: tuple[float, ...]
  crop_padding: int = 0
  flip: bool = False


@dataclasses.dataclass
class Result:
  """What a run produced.

  Attributes:
    state: the trained state.
    method_state: the method's final state (teachers, masks...).
    history: one dict of mean metrics per epoch (those of a resumed run's
      earlier processes included, from the checkpoint).
    run_seconds: wall time of prepare plus all steps, compile excluded
      (the unlearning run time, RTE, for methods); for a resumed run, the
      time of the earlier processes is added from the checkpoint.
    compile_seconds: ahead-of-time compilation of the phases.
    resumed_from_epoch: epoch a checkpoint put us at (0 if none).
  """
  state: Any
  method_state: Any
  history: list[dict[str, float]]
  run_seconds: float
  compile_seconds: float
  resumed_from_epoch: int = 0


def _split_seed(seed: int, split: str, epoch_pass: int) -> list[int]:
  return [seed, zlib.crc32(split.encode()), epoch_pass]


class BatchStream:
  """Deterministic, resumable stream of index batches over one split."""

  def __init__(self, split: str, size: int, batch_size: int, seed: int,
               position: int = 0):
    if batch_size > size:
      raise TrainingError(
          f'batch size {batch_size} is larger than the {split} split '
          f'({size} samples); lower the batch size')
    self.split, self.size, self.batch_size, self.seed = (split, size,
                                                         batch_size, seed)
    self.per_pass = size // batch_size
    self.position = position
    self._perm_pass, self._perm = -1, None

  def next(self) -> np.ndarray:
    epoch_pass, k = divmod(self.position, self.per_pass)
    if epoch_pass != self._perm_pass:
      rng = np.random.default_rng(_split_seed(self.seed, self.split,
                                              epoch_pass))
      self._perm, self._perm_pass = rng.permutation(self.size), epoch_pass
    self.position += 1
    return self._perm[k * self.batch_size:(k + 1) * self.batch_size]


def phase_step(phase: base.Phase, prep: Preprocessing):
  """`phase.update` with preprocessing in front: the function the driver jits.

  Returns:
    step(state, method_state, raw_batches, rng) -> phase.update's result;
    raw batches hold uint8 images, normalised (and, if `phase.augment`,
    cropped and flipped) inside the step.
  """

  def step(state, method_state, raw_batches, rng):
    aug_rng, update_rng = jax.random.split(rng)
    batches = {}
    for i, (split, raw) in enumerate(sorted(raw_batches.items())):
      split_rng = jax.random.fold_in(aug_rng, i) if phase.augment else None
      image = augment.preprocess(
          raw['image'], split_rng, mean=prep.mean, std=prep.std,
          crop_padding=prep.crop_padding if phase.augment else 0,
          flip=prep.flip and phase.augment)
      batches[split] = {**raw, 'image': image}
    return phase.update(state, method_state, batches, update_rng)

  return step


def _compiled_step(phase: base.Phase, prep: Preprocessing, mesh, example):
  """Jits `phase_step` for the mesh."""
  step = phase_step(phase, prep)
  replicated = parallel.replicated(mesh)
  jitted = jax.jit(step, donate_argnums=(0,),
                   out_shardings=(replicated, replicated, replicated))
  return jitted.lower(*example).compile()


def _check_finite(metrics: Mapping[str, Any], desc: str, step: int):
  for name, value in metrics.items():
    if not np.isfinite(value):
      raise TrainingError(
          f'{desc}: {name} became {value} at step {step}; the run diverged, '
          'lower the learning rate (--lr or --config.*.optim.lr)')


def run(method: base.Method, state, data: Mapping[str, SplitData], *,
        epochs: int, batch_size: Mapping[str, int], seed: int,
        prep: Preprocessing, mesh, desc: str = 'train',
        checkpointer: checkpoint_lib.Checkpointer | None = None,
        checkpoint_meta: Mapping[str, Any] | None = None,
        on_epoch_end: Callable[[int, Any, Any], None] | None = None,
        on_step_end: Callable[[int, Any, Any], None] | None = None,
        every_steps: int = 1,
        ) -> Result:
  """Runs `method` for `epochs` epochs starting from `state`.

  Args:
    method: the method (its phases name the splits they consume).
    state: the starting TrainState (e.g. the original model). It is copied,
      never donated, so the caller may keep using it.
    data: split name -> (uint8 images, int labels) on the host.
    epochs: number of epochs; `method.plan(e)` gives each epoch's steps.
    batch_size: split name -> batch size (a multiple of the device count).
    seed: seeds prepare, the batch order and per-step rngs.
    prep: normalisation and augmentation.
    mesh: the device mesh; the state is replicated, batches are split.
    desc: progress-bar and error-message label.
    checkpointer: if given, saves every epoch and resumes from the newest
      complete checkpoint it holds.
    checkpoint_meta: extra JSON metadata stored with each checkpoint.
    on_epoch_end: `(epoch, state, method_state)` callback (tests, plots).
    on_step_end: `(step, state, method_state)` callback after every
      `every_steps`-th step (`step` counts the steps done, from 1), e.g. the
      suite's accuracy-over-steps curves. Its time is left out of
      `run_seconds`, so that measuring a run does not change its RTE. It must
      not keep `state`: the next step donates its buffers.
    every_steps: period of `on_step_end`, in steps.

  Returns:
    A `Result`.
  """
  replicated = parallel.replicated(mesh)
  batch_sharding = parallel.batch_sharded(mesh)
  splits = sorted({s for p in method.phases.values() for s in p.splits})
  for split in splits:
    if split not in data:
      raise TrainingError(f'{desc}: the method needs split {split!r}')
    parallel.check_batch_size(batch_size[split], mesh, f'{split}')

  start = time.perf_counter()
  rng = jax.random.key(seed)
  prepare_rng, loop_rng = jax.random.split(rng)
  # A real copy: `state` is donated to the compiled steps below.
  state = jax.tree.map(jnp.copy, jax.device_put(state, replicated))
  state, method_state = method.prepare(prepare_rng, state)
  # prepare may create new arrays (fresh inits, teachers) on one device.
  state, method_state = jax.device_put((state, method_state), replicated)

  positions = {s: 0 for s in splits}
  first_epoch, previous_seconds, history = 0, 0.0, []
  if checkpointer is not None and checkpointer.latest_meta() is not None:
    state, method_state, meta = checkpointer.restore(state, method_state)
    first_epoch = meta['epoch']
    positions.update(meta['positions'])
    previous_seconds = meta.get('run_seconds', 0.0)
    history = list(meta.get('history', []))
  streams = {s: BatchStream(s, len(data[s]['label']), batch_size[s], seed,
                            positions[s]) for s in splits}

  def host_batches(phase):
    out = {}
    for split in phase.splits:
      idx = streams[split].next()
      out[split] = {k: v[idx] for k, v in data[split].items()}
    return jax.device_put(out, batch_sharding)

  run_seconds = time.perf_counter() - start
  compile_start = time.perf_counter()
  steps = {}
  for name, phase in method.phases.items():
    example = {s: {k: jax.ShapeDtypeStruct(
        (batch_size[s], *v.shape[1:]), v.dtype, sharding=batch_sharding)
                   for k, v in data[s].items()} for s in phase.splits}
    steps[name] = _compiled_step(phase, prep, mesh,
                                 (state, method_state, example, loop_rng))
  compile_seconds = time.perf_counter() - compile_start

  start = time.perf_counter()
  hook_seconds = 0.0  # Time in on_step_end, left out of run_seconds.
  total = sum(n for e in range(first_epoch, epochs) for _, n in method.plan(e))
  global_step = sum(n for e in range(first_epoch) for _, n in method.plan(e))
  with tqdm.tqdm(total=total, desc=desc, unit='step', mininterval=2.0,
                 dynamic_ncols=True) as bar:
    for epoch in range(first_epoch, epochs):
      sums, counts, pending = {}, {}, None
      for phase_name, num_steps in method.plan(epoch):
        phase = method.phases[phase_name]
        for _ in range(num_steps):
          step_rng = jax.random.fold_in(loop_rng, global_step)
          state, method_state, metrics = steps[phase_name](
              state, method_state, host_batches(phase), step_rng)
          # Read the previous step's metrics while this one runs.
          if pending is not None:
            _accumulate(pending, sums, counts, desc, global_step)
          pending = (phase_name, metrics)
          global_step += 1
          bar.update()
          if on_step_end is not None and global_step % every_steps == 0:
            # Waiting for the step is training time; only the hook is not.
            jax.block_until_ready(state)
            hook_start = time.perf_counter()
            on_step_end(global_step, state, method_state)
            hook_seconds += time.perf_counter() - hook_start
      if pending is not None:
        _accumulate(pending, sums, counts, desc, global_step)
      # A finite loss can hide non-finite weights (e.g. the last step's
      # update); never save or hand on such a model.
      _check_params_finite(state.params, desc, global_step)
      epoch_metrics = {k: sums[k] / counts[k] for k in sums}
      history.append(epoch_metrics)
      bar.set_postfix({k: f'{v:.3g}' for k, v in epoch_metrics.items()},
                      refresh=False)
      if on_epoch_end is not None:
        on_epoch_end(epoch, state, method_state)
      if checkpointer is not None:
        jax.block_until_ready(state)
        meta = dict(checkpoint_meta or {}, epoch=epoch + 1,
                    epochs=epochs, done=epoch + 1 == epochs,
                    positions={s: streams[s].position for s in splits},
                    history=history,
                    run_seconds=previous_seconds + run_seconds +
                    time.perf_counter() - start - hook_seconds)
        checkpointer.save(global_step, state, method_state, meta)
  jax.block_until_ready(state)
  run_seconds += time.perf_counter() - start - hook_seconds
  return Result(state, method_state, history, previous_seconds + run_seconds,
                compile_seconds, first_epoch)


def _check_params_finite(params, desc: str, step: int):
  finite = jax.tree.reduce(
      jnp.logical_and, jax.tree.map(lambda x: jnp.all(jnp.isfinite(x)),
                                    params), True)
  if not bool(finite):
    raise TrainingError(
        f'{desc}: the weights became NaN or infinite by step {step}; the run '
        'diverged, lower the learning rate (--lr or --config.*.optim.lr)')


def _accumulate(pending, sums, counts, desc, step):
  phase_name, metrics = pending
  values = jax.device_get(metrics)
  _check_finite(values, f'{desc} ({phase_name})', step)
  prefix = '' if phase_name == 'main' else f'{phase_name}/'
  for k, v in values.items():
    sums[prefix + k] = sums.get(prefix + k, 0.0) + float(v)
    counts[prefix + k] = counts.get(prefix + k, 0) + 1


def split_data(images: np.ndarray, labels: np.ndarray, **extra) -> SplitData:
  """Builds a `SplitData` dict (labels as int32, the dtype steps expect)."""
  return {'image': images, 'label': labels.astype(np.int32), **extra}


def iterate_in_order(data: SplitData, batch_size: int, prep: Preprocessing,
                     mesh):
  """Yields normalised, device-placed batches over a split, once, in order.

  The last batch is padded (by repeating its last row) to a multiple of the
  device count and carries a 'mask' of real rows (1.0) and padding (0.0).
  """
  n_dev = mesh.devices.size
  sharding = parallel.batch_sharded(mesh)
  normalize = jax.jit(functools.partial(augment.normalize, mean=prep.mean,
                                        std=prep.std))
  n = len(data['label'])
  for start in range(0, n, batch_size):
    batch = {k: v[start:start + batch_size] for k, v in data.items()}
    real = len(batch['label'])
    pad = (-real) % n_dev
    if pad:
      batch = {k: np.concatenate([v, np.repeat(v[-1:], pad, 0)])
               for k, v in batch.items()}
    batch['mask'] = np.concatenate([np.ones(real, np.float32),
                                    np.zeros(pad, np.float32)])
    batch = jax.device_put(batch, sharding)
    batch['image'] = normalize(batch['image'])
    yield batch
