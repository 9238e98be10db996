"""The training driver: runs any `Method` over a device mesh.

It owns everything methods must not do: jit compilation (once per phase, ahead
of time, so compile time is measured apart from run time), shardings and buffer
donation, host batching, augmentation and normalisation inside the compiled
step, NaN checks, progress bars and per-epoch checkpoints that a killed run
resumes from. Two things it does for speed without changing what a method
computes: a step made of parts (`Phase.update` as a tuple, e.g. NegGrad+'s
forget and retain gradients) runs as one program per part on CPUs
(`parallel.separate_programs`), and frozen teachers' outputs
(`Method.frozen`) are computed once per split that the steps see
un-augmented, instead of at every step.

Batches are drawn per split from a deterministic stream: the k-th batch of a
split is position k mod P of pass k div P (P = full batches per pass), and each
pass is a fresh permutation seeded by (seed, split, pass). A resumed run
therefore sees exactly the batches the uninterrupted run would have seen.
"""

import dataclasses
import time
import zlib
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from mu_jax import augment
from mu_jax import checkpoint as checkpoint_lib
from mu_jax import errors
from mu_jax import parallel
from mu_jax.methods import base

PyTree = Any
# One split on the host: {'image': uint8 [N, H, W, C], 'label': int [N], and
# any other per-sample arrays a method needs (e.g. 'is_forget': f32 [N])}.
SplitData = Mapping[str, np.ndarray]


class TrainingError(errors.MuJaxError, RuntimeError):
  """Training diverged or was configured impossibly."""


class DivergenceError(TrainingError):
  """The loss or the weights became NaN or infinite.

  Attributes:
    compile_seconds: compilation time of the run that diverged.
  """
  compile_seconds: float = 0.0


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
    compile_seconds: ahead-of-time compilation of the phases, plus what
      prepare, the frozen outputs and the monitor compiled on first use
      (`parallel.compile_seconds`).
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


def phase_step(phase: base.Phase, prep: Preprocessing, update=None):
  """`update` with preprocessing in front: the function the driver jits.

  Args:
    phase: the phase (its augmentation setting).
    prep: normalisation and augmentation.
    update: one of the phase's parts; None for `phase.update` itself.

  Returns:
    step(state, method_state, raw_batches, rng) -> the update's result;
    raw batches hold uint8 images, normalised (and, if `phase.augment`,
    cropped and flipped) inside the step. Splits without images (e.g. a
    GAN's feature vectors) pass through as they are.
  """
  update = phase.update if update is None else update

  def step(state, method_state, raw_batches, rng):
    aug_rng, update_rng = jax.random.split(rng)
    batches = {}
    for i, (split, raw) in enumerate(sorted(raw_batches.items())):
      if 'image' not in raw:
        batches[split] = raw
        continue
      split_rng = jax.random.fold_in(aug_rng, i) if phase.augment else None
      image = augment.preprocess(
          raw['image'], split_rng, mean=prep.mean, std=prep.std,
          crop_padding=prep.crop_padding if phase.augment else 0,
          flip=prep.flip and phase.augment)
      batches[split] = {**raw, 'image': image}
    return update(state, method_state, batches, update_rng)

  return step


def _parts(phase: base.Phase, mesh) -> tuple[base.UpdateFn, ...]:
  """The programs of one step of `phase`: its parts on CPUs, else one."""
  if not isinstance(phase.update, tuple):
    return (phase.update,)
  if parallel.separate_programs(mesh):
    return phase.update

  def chained(state, method_state, batches, rng):
    metrics = {}
    for part in phase.update:
      state, method_state, part_metrics = part(state, method_state, batches,
                                               rng)
      metrics.update(part_metrics)
    return state, method_state, metrics

  return (chained,)


def _compiled_steps(phase: base.Phase, prep: Preprocessing, mesh, example,
                    group: bool) -> tuple[Any, ...]:
  """Jits the programs of one step of `phase` for the mesh: each takes
  (state, method_state, batches, loop_rng, step), with the step's rng
  `fold_in(loop_rng, step)` made inside.

  In a group the programs are vmapped over the runs' leading axis (their
  states, batches and rngs); the step count is shared.
  """
  compiled = []
  for update in _parts(phase, mesh):
    driver_step = phase_step(phase, prep, update)

    def step(state, method_state, raw_batches, loop_rng, global_step,
             driver_step=driver_step):
      return driver_step(state, method_state, raw_batches,
                         jax.random.fold_in(loop_rng, global_step))

    if group:
      step = jax.vmap(step, in_axes=(0, 0, 0, 0, None))
    replicated = parallel.replicated(mesh)
    jitted = jax.jit(step, donate_argnums=(0,),
                     out_shardings=(replicated, replicated, replicated))
    compiled.append(jitted.lower(*example).compile())
  return tuple(compiled)


def _frozen_pays(split_size: int, rows_seen: int) -> bool:
  """Whether precomputing frozen outputs over a split beats the steps.

  Precomputing is one teacher forward pass per sample of the split; the
  steps would make one per row of every batch they draw from it.
  """
  return rows_seen >= split_size


def check_points(plan, checks_per_epoch: int) -> frozenset[int]:
  """The steps of an epoch (counted from 1) after which a monitor looks.

  The epoch's end, and in an epoch of a single phase `checks_per_epoch`
  evenly spaced steps; an epoch of several phases (e.g. forget then
  repair) is looked at only once all of them have run.
  """
  total = sum(n for _, n in plan)
  if len(plan) != 1 or total == 0:
    return frozenset({total})
  return frozenset(max(1, round(k * total / checks_per_epoch))
                   for k in range(1, checks_per_epoch + 1))


def _check_finite(metrics: Mapping[str, Any], desc: str, step: int):
  for name, value in metrics.items():
    if not np.isfinite(value):
      raise DivergenceError(
          f'{desc}: {name} became {value} at step {step}; the run diverged, '
          'lower the learning rate (--lr or --config.*.optim.lr)')


@dataclasses.dataclass
class Run:
  """One training run of a group (`run_group`).

  Attributes:
    state: its starting TrainState (copied, never donated).
    data: split name -> `SplitData`, its data on the host.
    seed: seeds its prepare, batch order and per-step rngs.
    checkpointer: if given, saves every epoch and resumes from the newest
      complete checkpoint it holds.
    checkpoint_meta: extra JSON metadata stored with each checkpoint.
    log_metrics: `(step, {name: value})`, called with every step's metrics
      (e.g. `report.EventLog`, TensorBoard event files).
  """
  state: Any
  data: Mapping[str, SplitData]
  seed: int
  checkpointer: checkpoint_lib.Checkpointer | None = None
  checkpoint_meta: Mapping[str, Any] | None = None
  log_metrics: Callable[[int, Mapping[str, float]], None] | None = None


def run(method: base.Method, state, data: Mapping[str, SplitData], *,
        epochs: int, batch_size: Mapping[str, int], seed: int,
        prep: Preprocessing, mesh, desc: str = 'train',
        checkpointer: checkpoint_lib.Checkpointer | None = None,
        checkpoint_meta: Mapping[str, Any] | None = None,
        on_epoch_end: Callable[[int, Any, Any], None] | None = None,
        on_step_end: Callable[[int, Any, Any], None] | None = None,
        every_steps: int = 1,
        monitor: Callable[[float, int, Any, Any], None] | None = None,
        checks_per_epoch: int = 1,
        log_metrics: Callable[[int, Mapping[str, float]], None] | None = None,
        compile_cache: dict | None = None) -> Result:
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
    monitor: `(epoch, step, state, method_state)` called at the
      `check_points` of every epoch (`epoch` counts epochs done, fractional
      within one; `step` the steps done), after the NaN checks. Its time
      counts as run time: it is part of the method (e.g. the guard rails).
      It must not keep `state`'s buffers: the next step donates them.
    checks_per_epoch: see `check_points`.
    log_metrics: see `Run`.
    compile_cache: a dict shared by runs of the same method (the guard
      rails' attempts): a program compiled for one run is reused by the
      next whose state, batches and optimizer have the same structure,
      shapes and static fields (e.g. a learning rate held in the optimizer
      state, `optim.lr_scale`), instead of compiled again.

  Returns:
    A `Result`.

  Raises:
    DivergenceError: a loss or the weights became NaN or infinite.
    TrainingError: the data or batch sizes do not fit the method.
  """
  return _Loop(method, [Run(state, data, seed, checkpointer,
                            checkpoint_meta, log_metrics)],
               epochs=epochs, batch_size=batch_size, prep=prep, mesh=mesh,
               desc=desc, compile_cache=compile_cache).train(
                   on_epoch_end=on_epoch_end,
                                on_step_end=on_step_end,
                                every_steps=every_steps, monitor=monitor,
                                checks_per_epoch=checks_per_epoch)[0]


def run_group(method: base.Method, runs: Sequence[Run], *, epochs: int,
              batch_size: Mapping[str, int], prep: Preprocessing, mesh,
              desc: str = 'train') -> list[Result]:
  """Runs `method` once per `Run`, all in one vmapped program.

  N runs of a small model pay the per-step costs N times (host batching,
  dispatch, reading metrics back) and leave most of an accelerator idle;
  here every step advances all of them. Each run follows exactly the
  schedule `run` gives it (initialisation, batch order, augmentation and
  step rngs come from its own seed), so the weights equal those of N calls
  of `run` up to float rounding. The runs must have the same shapes (the
  same recipe and data sizes) and, when resumed, stand at the same epoch.
  Each run's `run_seconds` is the group's time divided by N.

  Whether this is faster depends on the hardware: XLA turns a vmapped
  convolution (different weights per run) into a grouped convolution, which
  GPUs run well but XLA's CPU backend computes as one dense convolution N
  times as large (`tools/bench_multiseed.py` measures both).

  Returns:
    One `Result` per run, in order.

  Raises:
    DivergenceError: a run's loss or weights became NaN or infinite.
    TrainingError: the runs do not fit together, or the data the method.
  """
  return _Loop(method, runs, epochs=epochs, batch_size=batch_size,
               prep=prep, mesh=mesh, desc=desc).train()


class _Loop:
  """The training loop of `run` (one run) and `run_group` (vmapped runs)."""

  def __init__(self, method: base.Method, runs: Sequence[Run], *,
               epochs: int, batch_size: Mapping[str, int],
               prep: Preprocessing, mesh, desc: str,
               compile_cache: dict | None = None):
    self.method, self.runs, self.epochs = method, list(runs), epochs
    self.compile_cache = {} if compile_cache is None else compile_cache
    self.batch_size, self.prep, self.mesh, self.desc = (batch_size, prep,
                                                        mesh, desc)
    self.group = len(self.runs) > 1
    self.splits = sorted({s for p in method.phases.values()
                          for s in p.splits})
    for split in self.splits:
      for r in self.runs:
        if split not in r.data:
          raise TrainingError(f'{desc}: the method needs split {split!r}')
      parallel.check_batch_size(batch_size[split], mesh, f'{split}')

  def _desc(self, i: int) -> str:
    return f'{self.desc} (seed {self.runs[i].seed})' if self.group else (
        self.desc)

  def _start(self):
    """Prepares (or restores) every run; stacks them in a group."""
    replicated = parallel.replicated(self.mesh)
    states, method_states, self.loop_rngs = [], [], []
    self.first_epoch, self.previous, self.histories = None, [], []
    self.streams, self.data = [], []
    for r in self.runs:
      prepare_rng, loop_rng = jax.random.split(jax.random.key(r.seed))
      # A real copy: the state is donated to the compiled steps.
      state = jax.tree.map(jnp.copy, jax.device_put(r.state, replicated))
      state, method_state = self.method.prepare(prepare_rng, state)
      # prepare may create new arrays (fresh inits, teachers) on one device.
      state, method_state = jax.device_put((state, method_state), replicated)
      positions, epoch, previous, history = {s: 0 for s in self.splits}, 0, (
          0.0), []
      if (r.checkpointer is not None
          and r.checkpointer.latest_meta() is not None):
        state, method_state, meta = r.checkpointer.restore(state,
                                                           method_state)
        epoch, previous = meta['epoch'], meta.get('run_seconds', 0.0)
        positions.update(meta['positions'])
        history = list(meta.get('history', []))
      if self.first_epoch not in (None, epoch):
        raise TrainingError(f'{self.desc}: runs of one group must resume at '
                            'the same epoch')
      self.first_epoch = epoch
      self.data.append(self._with_frozen(r.data, state, method_state))
      self.previous.append(previous)
      self.histories.append(history)
      self.streams.append({s: BatchStream(s, len(r.data[s]['label']),
                                          self.batch_size[s], r.seed,
                                          positions[s])
                           for s in self.splits})
      if self.group:
        # Static fields of stacked pytrees must be equal, not equivalent:
        # the first run's optimizer and apply function serve all.
        state = state.replace(tx=self.runs[0].state.tx,
                              apply_fn=self.runs[0].state.apply_fn)
      states.append(state)
      method_states.append(method_state)
      self.loop_rngs.append(loop_rng)
    if not self.group:
      return states[0], method_states[0], self.loop_rngs[0]
    stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
    return stack(states), stack(method_states), jnp.stack(self.loop_rngs)

  def _frozen_splits(self, data) -> list[str]:
    """Splits whose frozen outputs are worth computing before the steps:
    seen only without augmentation, and over at least a pass (`_frozen_pays`)
    in the epochs left."""
    rows, augmented = {s: 0 for s in self.splits}, set()
    for epoch in range(self.first_epoch, self.epochs):
      for name, num_steps in self.method.plan(epoch):
        phase = self.method.phases[name]
        for split in phase.splits:
          rows[split] += num_steps * self.batch_size[split]
          if phase.augment:
            augmented.add(split)
    return [s for s in self.splits
            if s not in augmented and 'image' in data[s]
            and _frozen_pays(len(data[s]['label']), rows[s])]

  def _with_frozen(self, data, state, method_state):
    """`data` plus the method's frozen outputs (`Method.frozen`) as
    per-sample arrays of the splits `_frozen_splits` picks."""
    frozen = self.method.frozen
    splits = [] if frozen is None else self._frozen_splits(data)
    if not splits:
      return data
    data = dict(data)
    program, rows = None, None
    for split in splits:
      outputs = []
      for batch in iterate_in_order(data[split], self.batch_size[split],
                                    self.prep, self.mesh):
        if program is None or batch['image'].shape != rows:
          rows = batch['image'].shape
          program = self._cached(
              ('frozen', state, method_state, batch['image']),
              lambda: jax.jit(frozen, out_shardings=parallel.replicated(
                  self.mesh)).lower(state, method_state,
                                    batch['image']).compile())
        outputs.append(parallel.to_host(program(state, method_state,
                                                batch['image'])))
      n = len(data[split]['label'])
      data[split] = {**data[split], **{
          base.FROZEN_PREFIX + name: np.concatenate(
              [o[name] for o in outputs])[:n] for name in outputs[0]}}
    return data

  def _unstacked(self, tree, i: int):
    return jax.tree.map(lambda x: x[i], tree) if self.group else tree

  def _host_batches(self, phase):
    per_run = []
    for data, streams in zip(self.data, self.streams):
      out = {}
      for split in phase.splits:
        idx = streams[split].next()
        out[split] = {k: v[idx] for k, v in data[split].items()}
      per_run.append(out)
    batches = per_run[0] if not self.group else jax.tree.map(
        lambda *x: np.stack(x), *per_run)
    # Every process draws the same global batch (the streams are
    # deterministic) and places the rows of its own devices.
    return parallel.put(batches, self.batch_sharding)

  def _compile(self, state, method_state, loop_rng):
    lead = (len(self.runs),) if self.group else ()
    data = self.data[0]
    steps = {}
    for name, phase in self.method.phases.items():
      example = {s: {k: jax.ShapeDtypeStruct(
          (*lead, self.batch_size[s], *v.shape[1:]), v.dtype,
          sharding=self.batch_sharding)
                     for k, v in data[s].items()} for s in phase.splits}
      args = (state, method_state, example, loop_rng, jnp.int32(0))
      steps[name] = self._cached(
          (name, *args), lambda phase=phase, args=args: _compiled_steps(
              phase, self.prep, self.mesh, args, self.group))
    return steps

  def _cached(self, key_tree, compile_fn):
    """`compile_fn()`, or what it returned for arguments of the same
    structure, shapes, dtypes and static fields (`compile_cache`)."""
    leaves, treedef = jax.tree.flatten(key_tree)
    key = (treedef, tuple(
        leaf if isinstance(leaf, str) else
        (tuple(leaf.shape), str(leaf.dtype)) for leaf in leaves))
    if key not in self.compile_cache:
      self.compile_cache[key] = compile_fn()
    return self.compile_cache[key]

  def _accumulate(self, pending, sums, counts):
    step, phase_name, metrics = pending
    values = jax.device_get(metrics)
    prefix = '' if phase_name == 'main' else f'{phase_name}/'
    for i, r in enumerate(self.runs):
      run_values = {prefix + k: float(v[i] if self.group else v)
                    for k, v in values.items()}
      _check_finite(run_values, f'{self._desc(i)} ({phase_name})', step)
      if r.log_metrics is not None:
        r.log_metrics(step, run_values)
      for k, v in run_values.items():
        sums[i][k] = sums[i].get(k, 0.0) + v
        counts[i][k] = counts[i].get(k, 0) + 1

  def _check_params(self, state, step):
    for i in range(len(self.runs)):
      _check_params_finite(self._unstacked(state.params, i), self._desc(i),
                           step)

  def train(self, *, on_epoch_end=None, on_step_end=None, every_steps=1,
            monitor=None, checks_per_epoch=1) -> list[Result]:
    """Trains every run to `epochs`; one `Result` per run."""
    if self.group and (on_epoch_end or on_step_end or monitor):
      raise TrainingError(f'{self.desc}: callbacks take one run, not a group')
    self.batch_sharding = parallel.batch_sharded(
        self.mesh, leading_axes=1 if self.group else 0)
    start, compiled_before = time.perf_counter(), parallel.compile_seconds()
    state, method_state, loop_rng = self._start()
    # What prepare and the frozen outputs compiled is compile time, not RTE.
    prepare_compile = parallel.compile_seconds() - compiled_before
    run_seconds = time.perf_counter() - start - prepare_compile
    compile_start = time.perf_counter()
    steps = self._compile(state, method_state, loop_rng)
    compile_seconds = time.perf_counter() - compile_start + prepare_compile

    method, n = self.method, len(self.runs)
    start = time.perf_counter()
    # Time in on_step_end and in the monitor's compiles: not run time.
    hook_seconds = 0.0
    first, epochs = self.first_epoch, self.epochs
    total = sum(k for e in range(first, epochs) for _, k in method.plan(e))
    global_step = sum(k for e in range(first) for _, k in method.plan(e))
    try:
      with tqdm.tqdm(total=total, desc=self.desc + (f' x{n}' if self.group
                                                     else ''),
                     unit='step', mininterval=2.0, dynamic_ncols=True) as bar:
        for epoch in range(first, epochs):
          plan = method.plan(epoch)
          looks = (check_points(plan, checks_per_epoch) if monitor else
                   frozenset())
          epoch_steps = sum(k for _, k in plan)
          sums, counts = [{} for _ in range(n)], [{} for _ in range(n)]
          pending, done = None, 0
          for phase_name, num_steps in plan:
            phase = method.phases[phase_name]
            for _ in range(num_steps):
              batches, metrics = self._host_batches(phase), {}
              for program in steps[phase_name]:
                state, method_state, part_metrics = program(
                    state, method_state, batches, loop_rng,
                    jnp.int32(global_step))
                metrics.update(part_metrics)
              global_step += 1
              # Read the previous step's metrics while this one runs.
              if pending is not None:
                self._accumulate(pending, sums, counts)
              pending = (global_step, phase_name, metrics)
              done += 1
              bar.update()
              if on_step_end is not None and global_step % every_steps == 0:
                # Waiting for the step is training time; only the hook is
                # not.
                jax.block_until_ready(state)
                hook_start = time.perf_counter()
                on_step_end(global_step, state, method_state)
                hook_seconds += time.perf_counter() - hook_start
              if done in looks:
                self._accumulate(pending, sums, counts)
                pending = None
                self._check_params(state, global_step)
                compiled_before = parallel.compile_seconds()
                monitor(epoch + done / epoch_steps, global_step, state,
                        method_state)
                # The monitor's first-use compiles are compile time too.
                monitor_compile = parallel.compile_seconds() - compiled_before
                hook_seconds += monitor_compile
                compile_seconds += monitor_compile
          if pending is not None:
            self._accumulate(pending, sums, counts)
          # A finite loss can hide non-finite weights (e.g. the last step's
          # update); never save or hand on such a model.
          self._check_params(state, global_step)
          for i in range(n):
            self.histories[i].append({k: sums[i][k] / counts[i][k]
                                      for k in sums[i]})
          bar.set_postfix({k: f'{v:.3g}'
                           for k, v in self.histories[0][-1].items()},
                          refresh=False)
          if on_epoch_end is not None:
            on_epoch_end(epoch, state, method_state)
          if any(r.checkpointer for r in self.runs):
            jax.block_until_ready(state)
            elapsed = (run_seconds + time.perf_counter() - start -
                       hook_seconds) / n
            for i, r in enumerate(self.runs):
              if r.checkpointer is None:
                continue
              meta = dict(r.checkpoint_meta or {}, epoch=epoch + 1,
                          epochs=epochs, done=epoch + 1 == epochs,
                          positions={s: self.streams[i][s].position
                                     for s in self.splits},
                          history=self.histories[i],
                          run_seconds=self.previous[i] + elapsed)
              r.checkpointer.save(global_step, self._unstacked(state, i),
                                  self._unstacked(method_state, i), meta)
    except DivergenceError as e:
      e.compile_seconds = compile_seconds
      raise
    jax.block_until_ready(state)
    run_seconds = (run_seconds + time.perf_counter() - start -
                   hook_seconds) / n
    return [Result(self._unstacked(state, i),
                   self._unstacked(method_state, i), self.histories[i],
                   self.previous[i] + run_seconds, compile_seconds, first)
            for i in range(n)]


def _check_params_finite(params, desc: str, step: int):
  finite = jax.tree.reduce(
      jnp.logical_and, jax.tree.map(lambda x: jnp.all(jnp.isfinite(x)),
                                    params), True)
  if not bool(finite):
    raise DivergenceError(
        f'{desc}: the weights became NaN or infinite by step {step}; the run '
        'diverged, lower the learning rate (--lr or --config.*.optim.lr)')


def split_data(images: np.ndarray, labels: np.ndarray, **extra) -> SplitData:
  """Builds a `SplitData` dict (labels as int32, the dtype steps expect)."""
  return {'image': images, 'label': labels.astype(np.int32), **extra}


# Compiled once per (mean, std), not per call of `iterate_in_order`.
_normalize = parallel.compile_function(augment.normalize,
                                       static_argnames=('mean', 'std'))


def iterate_in_order(data: SplitData, batch_size: int, prep: Preprocessing,
                     mesh):
  """Yields normalised, device-placed batches over a split, once, in order.

  Every batch has `batch_size` rows (rounded up to a multiple of the device
  count) and a 'mask' of real rows (1.0) and padding (0.0): the last one is
  padded by repeating its last row, so that one compiled program serves
  every batch and no caller pads on the host. Each process places only its
  devices' rows (`parallel.put`).
  """
  sharding = parallel.batch_sharded(mesh)
  rows = batch_size + (-batch_size) % mesh.devices.size
  n = len(data['label'])
  for start in range(0, n, batch_size):
    batch = {k: v[start:start + batch_size] for k, v in data.items()}
    real = len(batch['label'])
    pad = rows - real
    if pad:
      batch = {k: np.concatenate([v, np.repeat(v[-1:], pad, 0)])
               for k, v in batch.items()}
    batch['mask'] = np.concatenate([np.ones(real, np.float32),
                                    np.zeros(pad, np.float32)])
    batch = parallel.put(batch, sharding)
    batch['image'] = _normalize(batch['image'], mean=tuple(prep.mean),
                                std=tuple(prep.std))
    yield batch
