"""The training driver: runs any `Method` over a device mesh.

It owns everything methods must not do: compilation (once per phase, ahead of
time, so compile time is measured apart from run time: mu_jax/step_programs.py),
shardings and buffer donation, augmentation and normalisation inside the
compiled step, NaN checks, progress bars and per-epoch checkpoints that a
killed run resumes from. Its batches come from mu_jax/host_batches.py
(deterministic per-split streams, so a resumed run sees the batches the
uninterrupted run would have seen).

Two things it does for speed without changing what a method computes: a step
made of parts (`Phase.update` as a tuple, e.g. NegGrad+'s forget and retain
gradients) runs as one program per part on CPUs
(`parallel.separate_programs`), and frozen teachers' outputs
(`Method.frozen`) are computed once per split that the steps see
un-augmented, instead of at every step (mu_jax/teacher_outputs.py).
"""

import dataclasses
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from mu_jax import checkpoint as checkpoint_lib
from mu_jax import errors
from mu_jax import host_batches
from mu_jax import parallel
from mu_jax import step_programs
from mu_jax import teacher_outputs
from mu_jax.methods import base


class TrainingError(errors.MuJaxError, RuntimeError):
  """Training diverged or was configured impossibly."""


class DivergenceError(TrainingError):
  """The loss or the weights became NaN or infinite.

  Attributes:
    compile_seconds: compilation time of the run that diverged.
  """
  compile_seconds: float = 0.0


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


@dataclasses.dataclass
class Run:
  """One training run of a group (`run_group`).

  Attributes:
    state: its starting TrainState (copied, never donated).
    data: split name -> `host_batches.SplitData`, its data on the host.
    seed: seeds its prepare, batch order and per-step rngs.
    checkpointer: if given, saves every epoch and resumes from the newest
      complete checkpoint it holds.
    checkpoint_meta: extra JSON metadata stored with each checkpoint.
    log_metrics: `(step, {name: value})`, called with every step's metrics
      (e.g. `report.EventLog`, TensorBoard event files).
  """
  state: Any
  data: Mapping[str, host_batches.SplitData]
  seed: int
  checkpointer: checkpoint_lib.Checkpointer | None = None
  checkpoint_meta: Mapping[str, Any] | None = None
  log_metrics: Callable[[int, Mapping[str, float]], None] | None = None


def run(method: base.Method, state,
        data: Mapping[str, host_batches.SplitData], *, epochs: int,
        batch_size: Mapping[str, int], seed: int,
        prep: host_batches.Preprocessing, mesh, desc: str = 'train',
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
    checkpointer, checkpoint_meta, log_metrics: see `Run`.
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
               desc=desc, compile_cache=compile_cache).train(_Hooks(
                   on_epoch_end, on_step_end, every_steps, monitor,
                   checks_per_epoch))[0]


def run_group(method: base.Method, runs: Sequence[Run], *, epochs: int,
              batch_size: Mapping[str, int],
              prep: host_batches.Preprocessing, mesh,
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
               prep=prep, mesh=mesh, desc=desc).train(_Hooks())


class _Hooks(NamedTuple):
  """The callbacks of `run` (see there); a group (`run_group`) takes none."""
  on_epoch_end: Callable[[int, Any, Any], None] | None = None
  on_step_end: Callable[[int, Any, Any], None] | None = None
  every_steps: int = 1
  monitor: Callable[[float, int, Any, Any], None] | None = None
  checks_per_epoch: int = 1


class _EpochMetrics:
  """One epoch's step metrics of every run: each step's are read back while
  the next step runs, NaN-checked, logged and summed into the epoch's means."""

  def __init__(self, runs: Sequence[Run], group: bool,
               desc: Callable[[int], str]):
    self.runs, self.group, self.desc = runs, group, desc
    self.sums, self.counts = [{} for _ in runs], [{} for _ in runs]
    self.pending = None

  def add(self, step: int, phase_name: str, metrics):
    """Takes a step's metrics (device arrays); reads the previous step's."""
    self.flush()
    self.pending = (step, phase_name, metrics)

  def flush(self):
    """Reads back the metrics of the step not read yet, if any."""
    if self.pending is None:
      return
    step, phase_name, metrics = self.pending
    self.pending = None
    values = jax.device_get(metrics)
    prefix = '' if phase_name == 'main' else f'{phase_name}/'
    for i, r in enumerate(self.runs):
      run_values = {prefix + k: float(v[i] if self.group else v)
                    for k, v in values.items()}
      for name, value in run_values.items():
        if not np.isfinite(value):
          raise DivergenceError(
              f'{self.desc(i)} ({phase_name}): {name} became {value} at step '
              f'{step}; the run diverged, lower the learning rate (--lr or '
              '--config.*.optim.lr)')
      if r.log_metrics is not None:
        r.log_metrics(step, run_values)
      for k, v in run_values.items():
        self.sums[i][k] = self.sums[i].get(k, 0.0) + v
        self.counts[i][k] = self.counts[i].get(k, 0) + 1

  def means(self) -> list[dict[str, float]]:
    return [{k: sums[k] / counts[k] for k in sums}
            for sums, counts in zip(self.sums, self.counts)]


class _Loop:
  """The training loop of `run` (one run) and `run_group` (vmapped runs)."""

  def __init__(self, method: base.Method, runs: Sequence[Run], *,
               epochs: int, batch_size: Mapping[str, int],
               prep: host_batches.Preprocessing, mesh, desc: str,
               compile_cache: dict | None = None):
    self.method, self.runs, self.epochs = method, list(runs), epochs
    self.compile_cache = {} if compile_cache is None else compile_cache
    self.batch_size, self.prep, self.mesh, self.desc = (batch_size, prep,
                                                        mesh, desc)
    self.group = len(self.runs) > 1
    self.batch_sharding = parallel.batch_sharded(
        mesh, leading_axes=1 if self.group else 0)
    self.splits = sorted({s for p in method.phases.values()
                          for s in p.splits})
    for split in self.splits:
      for r in self.runs:
        if split not in r.data:
          raise TrainingError(f'{desc}: the method needs split {split!r}')
      parallel.check_batch_size(batch_size[split], mesh, f'{split}')
    for r in self.runs:
      for split in self.splits:
        size = len(r.data[split]['label'])
        if batch_size[split] > size:
          raise TrainingError(
              f'batch size {batch_size[split]} is larger than the {split} '
              f'split ({size} samples); lower the batch size')

  def _desc(self, i: int) -> str:
    return f'{self.desc} (seed {self.runs[i].seed})' if self.group else (
        self.desc)

  def train(self, hooks: _Hooks) -> list[Result]:
    """Trains every run to `epochs`; one `Result` per run."""
    if self.group and (hooks.on_epoch_end or hooks.on_step_end
                       or hooks.monitor):
      raise TrainingError(f'{self.desc}: callbacks take one run, not a group')
    self.hooks = hooks
    state, method_state = self._start_and_compile()
    total = sum(k for e in range(self.first_epoch, self.epochs)
                for _, k in self.method.plan(e))
    try:
      with tqdm.tqdm(total=total, desc=self.desc + (
          f' x{len(self.runs)}' if self.group else ''), unit='step',
                     mininterval=2.0, dynamic_ncols=True) as bar:
        for epoch in range(self.first_epoch, self.epochs):
          state, method_state, means = self._epoch(epoch, state,
                                                   method_state, bar)
          self._end_epoch(epoch, state, method_state, means, bar)
    except DivergenceError as e:
      e.compile_seconds = self.compile_seconds
      raise
    jax.block_until_ready(state)
    run_seconds = self._run_seconds() / len(self.runs)
    return [Result(self._unstacked(state, i),
                   self._unstacked(method_state, i), self.histories[i],
                   self.previous[i] + run_seconds, self.compile_seconds,
                   self.first_epoch)
            for i in range(len(self.runs))]

  def _start_and_compile(self):
    """Prepares the runs and compiles their steps; starts the clocks.

    Run time (RTE) is prepare plus the steps; what prepare and the frozen
    outputs compiled on first use counts as compile time, with the steps'
    ahead-of-time compiles.
    """
    start, compiled_before = time.perf_counter(), parallel.compile_seconds()
    state, method_state, self.loop_rng = self._start()
    prepare_compile = parallel.compile_seconds() - compiled_before
    self.prepare_seconds = time.perf_counter() - start - prepare_compile
    compile_start = time.perf_counter()
    self.steps = step_programs.compile_phases(
        self.method, self.prep, self.mesh, state=state,
        method_state=method_state, loop_rng=self.loop_rng, data=self.data[0],
        batch_size=self.batch_size, batch_sharding=self.batch_sharding,
        num_runs=len(self.runs), compile_cache=self.compile_cache)
    self.compile_seconds = (time.perf_counter() - compile_start +
                            prepare_compile)
    self.global_step = sum(k for e in range(self.first_epoch)
                           for _, k in self.method.plan(e))
    # Time in on_step_end and in the monitor's compiles: not run time.
    self.steps_start, self.hook_seconds = time.perf_counter(), 0.0
    return state, method_state

  def _run_seconds(self) -> float:
    """Run time of all runs so far: prepare, then the steps less hooks."""
    return (self.prepare_seconds + time.perf_counter() - self.steps_start -
            self.hook_seconds)

  def _prepare(self, r: Run):
    """A run's prepared (state, method_state, loop rng) and the checkpoint
    metadata it resumes from ({'epoch': 0, ...} for a fresh start)."""
    replicated = parallel.replicated(self.mesh)
    prepare_rng, loop_rng = jax.random.split(jax.random.key(r.seed))
    # A real copy: the state is donated to the compiled steps.
    state = jax.tree.map(jnp.copy, jax.device_put(r.state, replicated))
    state, method_state = self.method.prepare(prepare_rng, state)
    # prepare may create new arrays (fresh inits, teachers) on one device.
    state, method_state = jax.device_put((state, method_state), replicated)
    meta = {'epoch': 0, 'positions': {}}
    if (r.checkpointer is not None
        and r.checkpointer.latest_meta() is not None):
      state, method_state, meta = r.checkpointer.restore(state, method_state)
    return state, method_state, loop_rng, meta

  def _start(self):
    """Prepares (or restores) every run; stacks them in a group."""
    states, method_states, loop_rngs = [], [], []
    self.first_epoch, self.previous, self.histories = None, [], []
    self.streams, self.data = [], []
    for r in self.runs:
      state, method_state, loop_rng, meta = self._prepare(r)
      if self.first_epoch not in (None, meta['epoch']):
        raise TrainingError(f'{self.desc}: runs of one group must resume at '
                            'the same epoch')
      self.first_epoch = meta['epoch']
      self.data.append(teacher_outputs.with_frozen_outputs(
          self.method, r.data, state, method_state,
          first_epoch=self.first_epoch, epochs=self.epochs,
          batch_size=self.batch_size, prep=self.prep, mesh=self.mesh,
          compile_cache=self.compile_cache))
      self.previous.append(meta.get('run_seconds', 0.0))
      self.histories.append(list(meta.get('history', [])))
      positions = {**{s: 0 for s in self.splits}, **meta['positions']}
      self.streams.append({s: host_batches.BatchStream(
          s, len(r.data[s]['label']), self.batch_size[s], r.seed,
          positions[s]) for s in self.splits})
      if self.group:
        # Static fields of stacked pytrees must be equal, not equivalent:
        # the first run's optimizer and apply function serve all.
        state = state.replace(tx=self.runs[0].state.tx,
                              apply_fn=self.runs[0].state.apply_fn)
      states.append(state)
      method_states.append(method_state)
      loop_rngs.append(loop_rng)
    if not self.group:
      return states[0], method_states[0], loop_rngs[0]
    stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
    return stack(states), stack(method_states), jnp.stack(loop_rngs)

  def _epoch(self, epoch: int, state, method_state, bar):
    """Runs one epoch's steps; returns the states and each run's means."""
    plan = self.method.plan(epoch)
    looks = (check_points(plan, self.hooks.checks_per_epoch)
             if self.hooks.monitor else frozenset())
    epoch_steps = sum(k for _, k in plan)
    metrics, done = _EpochMetrics(self.runs, self.group, self._desc), 0
    for phase_name, num_steps in plan:
      for _ in range(num_steps):
        state, method_state = self._step(phase_name, state, method_state,
                                         metrics)
        done += 1
        bar.update()
        self._after_step(state, method_state)
        if done in looks:
          metrics.flush()
          self._look(epoch + done / epoch_steps, state, method_state)
    metrics.flush()
    # A finite loss can hide non-finite weights (e.g. the last step's
    # update); never save or hand on such a model.
    self._check_params(state)
    return state, method_state, metrics.means()

  def _step(self, phase_name: str, state, method_state,
            metrics: _EpochMetrics):
    """One step of a phase: its programs on the next batches."""
    batches = host_batches.draw(
        self.data, self.streams, self.method.phases[phase_name].splits,
        self.batch_sharding, self.group)
    step_metrics = {}
    for program in self.steps[phase_name]:
      state, method_state, part_metrics = program(
          state, method_state, batches, self.loop_rng,
          jnp.int32(self.global_step))
      step_metrics.update(part_metrics)
    self.global_step += 1
    # Read the previous step's metrics while this one runs.
    metrics.add(self.global_step, phase_name, step_metrics)
    return state, method_state

  def _after_step(self, state, method_state):
    """Calls `on_step_end` every `every_steps` steps, outside run time."""
    hooks = self.hooks
    if (hooks.on_step_end is not None
        and self.global_step % hooks.every_steps == 0):
      # Waiting for the step is training time; only the hook is not.
      jax.block_until_ready(state)
      hook_start = time.perf_counter()
      hooks.on_step_end(self.global_step, state, method_state)
      self.hook_seconds += time.perf_counter() - hook_start

  def _look(self, epoch: float, state, method_state):
    """The monitor's look at a check point, after the NaN checks."""
    self._check_params(state)
    compiled_before = parallel.compile_seconds()
    self.hooks.monitor(epoch, self.global_step, state, method_state)
    # The monitor's first-use compiles are compile time too.
    monitor_compile = parallel.compile_seconds() - compiled_before
    self.hook_seconds += monitor_compile
    self.compile_seconds += monitor_compile

  def _end_epoch(self, epoch: int, state, method_state, means, bar):
    """Records the epoch's means, calls `on_epoch_end`, saves checkpoints."""
    for history, run_means in zip(self.histories, means):
      history.append(run_means)
    bar.set_postfix({k: f'{v:.3g}' for k, v in self.histories[0][-1].items()},
                    refresh=False)
    if self.hooks.on_epoch_end is not None:
      self.hooks.on_epoch_end(epoch, state, method_state)
    if any(r.checkpointer for r in self.runs):
      self._save(epoch, state, method_state)

  def _save(self, epoch: int, state, method_state):
    """Saves the epoch of every run that has a checkpointer, with where its
    streams stand and its run time so far, for a resume."""
    jax.block_until_ready(state)
    elapsed = self._run_seconds() / len(self.runs)
    for i, r in enumerate(self.runs):
      if r.checkpointer is None:
        continue
      meta = dict(r.checkpoint_meta or {}, epoch=epoch + 1,
                  epochs=self.epochs, done=epoch + 1 == self.epochs,
                  positions={s: self.streams[i][s].position
                             for s in self.splits},
                  history=self.histories[i],
                  run_seconds=self.previous[i] + elapsed)
      r.checkpointer.save(self.global_step, self._unstacked(state, i),
                          self._unstacked(method_state, i), meta)

  def _unstacked(self, tree, i: int):
    return jax.tree.map(lambda x: x[i], tree) if self.group else tree

  def _check_params(self, state):
    """Raises a DivergenceError if a run's weights are no longer finite."""
    for i in range(len(self.runs)):
      finite = jax.tree.reduce(jnp.logical_and, jax.tree.map(
          lambda x: jnp.all(jnp.isfinite(x)),
          self._unstacked(state.params, i)), True)
      if not bool(finite):
        raise DivergenceError(
            f'{self._desc(i)}: the weights became NaN or infinite by step '
            f'{self.global_step}; the run diverged, lower the learning rate '
            '(--lr or --config.*.optim.lr)')
