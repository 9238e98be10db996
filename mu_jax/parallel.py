"""Data parallelism over a device mesh: `jax.jit` with `NamedSharding`s.

One code path for one CPU, N (fake) CPU devices, several GPUs or a TPU slice:
the state is replicated, every batch is split along the 'data' axis, and XLA
inserts the gradient all-reduce. BatchNorm statistics are global over the
batch, exactly as on one device.
"""

import os
import sys
import threading

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from mu_jax import errors

DATA_AXIS = 'data'
# Host devices on a multi-core CPU when nothing else says how many. One XLA
# CPU device keeps about 1.6 of 2 cores busy; two, each running half of the
# batch, use both (docs/PERFORMANCE.md: 1.2x to 1.45x train steps, 2 cores).
DEFAULT_CPU_DEVICES = 2
# Where compiled programs persist between processes (skips most of the
# ~1-2 s per phase that AOT compilation costs on CPU); under the user's cache.
DEFAULT_CACHE_DIR = os.path.join('~', '.cache', 'mu_jax', 'xla')
# XLA's CPU backend hands convolutions to YNNPACK by default. That is the
# faster choice for the ResNets' 3x3 convolutions over many channels, but for
# the small CNN XLA's older Eigen kernels are 1.2x (two devices) to 1.5x (one
# device) faster on whole train steps: YNNPACK computes its kernel gradients
# (a 14x14 or 28x28 window with the batch as the feature axis) at a third of
# the speed of its forward convolutions (docs/PERFORMANCE.md). 'eigen' keeps
# YNNPACK for matrix products (XLA's default) and takes it off convolutions.
_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
CPU_CONVOLUTION_FLAGS = {'ynnpack': '', 'eigen': f'{_YNN_FLAG}=individual_dot'}
# The host devices of one process meet in every all-reduce; XLA aborts the
# process when one of them has not arrived after 40 s. On a CPU shared with
# other jobs a device thread can be starved that long: a robustness grid run
# beside the test suite and two other runs on 2 cores was killed mid-run
# ("Termination timeout for all reduce ... of 40 seconds exceeded"). A stuck
# collective is a bug rather than a busy machine only after much longer.
_COLLECTIVE_TIMEOUT_FLAG = '--xla_cpu_collective_call_terminate_timeout_seconds'
COLLECTIVE_TIMEOUT_SECONDS = 1800


def cpu_convolutions_for(model_name: str, setting: str = 'auto') -> str:
  """config.mesh.cpu_convolutions resolved for a model: 'eigen' or 'ynnpack'.

  'auto' is the faster library for the mu_jax model (measured); 'eigen' and
  'ynnpack' are kept as given.
  """
  if setting not in ('auto', *CPU_CONVOLUTION_FLAGS):
    raise errors.ConfigError(
        f'--config.mesh.cpu_convolutions={setting!r}: choose '
        f"auto, {', '.join(sorted(CPU_CONVOLUTION_FLAGS))}")
  if setting != 'auto':
    return setting
  return 'eigen' if model_name == 'cnn' else 'ynnpack'


def configure_host(cpu_devices: int = -1, cache_dir: str | None = None,
                   cpu_convolutions: str = 'ynnpack'):
  """Process-wide JAX settings for speed; call before any JAX computation.

  Entry points (main.py, the benchmarks) call it; library code never does,
  so tests and notebooks keep their own settings.

  Args:
    cpu_devices: host (CPU) devices XLA creates; -1 picks
      `DEFAULT_CPU_DEVICES` on a machine with that many cores unless
      JAX_NUM_CPU_DEVICES or XLA_FLAGS already choose; 0 leaves JAX's
      default. Accelerators are unaffected: on a GPU or TPU host the mesh
      uses those, and the CPU devices stay idle.
    cache_dir: the persistent compilation cache; None = $JAX_COMPILATION_
      CACHE_DIR if set, else `DEFAULT_CACHE_DIR`; '' turns it off.
    cpu_convolutions: 'ynnpack' (XLA's default) or 'eigen', the kernels XLA's
      CPU backend runs convolutions with (`cpu_convolutions_for` picks one per
      model); a YNNPACK setting already in XLA_FLAGS wins. GPUs and TPUs
      ignore it.

  It also gives the host devices' collectives `COLLECTIVE_TIMEOUT_SECONDS`
  instead of XLA's 40 before a late device aborts the process (unless
  XLA_FLAGS sets it).
  """
  if cpu_convolutions not in CPU_CONVOLUTION_FLAGS:
    raise errors.ConfigError(
        f'cpu_convolutions={cpu_convolutions!r}: choose one of '
        f'{sorted(CPU_CONVOLUTION_FLAGS)}')
  xla_flags = os.environ.get('XLA_FLAGS', '')
  if CPU_CONVOLUTION_FLAGS[cpu_convolutions] and _YNN_FLAG not in xla_flags:
    # Read when the CPU backend starts, so this must precede it like the
    # device count below.
    os.environ['XLA_FLAGS'] = ' '.join(
        filter(None, [xla_flags, CPU_CONVOLUTION_FLAGS[cpu_convolutions]]))
  if _COLLECTIVE_TIMEOUT_FLAG not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = ' '.join(filter(None, [
        os.environ.get('XLA_FLAGS', ''),
        f'{_COLLECTIVE_TIMEOUT_FLAG}={COLLECTIVE_TIMEOUT_SECONDS}']))
  if cpu_devices < 0:
    chosen_elsewhere = ('JAX_NUM_CPU_DEVICES' in os.environ or
                        'force_host_platform_device_count' in
                        os.environ.get('XLA_FLAGS', ''))
    cores = os.cpu_count() or 1
    cpu_devices = (0 if chosen_elsewhere or cores < DEFAULT_CPU_DEVICES
                   else DEFAULT_CPU_DEVICES)
  try:
    if cpu_devices > 0:
      jax.config.update('jax_num_cpu_devices', cpu_devices)
  except RuntimeError:
    # The backend already exists (e.g. in a test process): keep its devices.
    logging.warning('JAX is already initialised; keeping %d devices',
                    jax.device_count())
  if cache_dir is None:
    cache_dir = os.environ.get('JAX_COMPILATION_CACHE_DIR',
                               DEFAULT_CACHE_DIR)
  if cache_dir:
    jax.config.update('jax_compilation_cache_dir',
                      os.path.expanduser(cache_dir))
    # Every phase is worth caching: even 0.3 s compiles recur per run.
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


# Seconds after which the coordination service of a multi-process run counts
# a silent process as dead and fails the others' barriers (JAX's default is
# 100); a crashed process closes its connections at once, so this bounds only
# the wait for a vanished host or one that died inside a barrier.
HEARTBEAT_TIMEOUT_SECONDS = 30
# How long a process that failed waits in `jax.distributed.shutdown` for the
# others before it exits anyway (`end_process`): errors of the config or the
# data reach every process within it, and then all end cleanly; a process
# that fails alone leaves after it, and the others' next collective fails.
SHUTDOWN_GRACE_SECONDS = 10
# Words of the errors a collective or barrier raises when another process of
# the run died or became unreachable (Gloo, the coordination service).
_PEER_FAILURE_MARKERS = ('Gloo', 'Connection closed by peer',
                         'Connection reset by peer', 'heartbeat',
                         'Barrier failed', 'barrier has failed',
                         'coordination service', 'Socket closed')


def initialize_distributed(coordinator_address: str = '',
                           num_processes: int = 0, process_id: int = -1,
                           heartbeat_timeout_seconds: int = (
                               HEARTBEAT_TIMEOUT_SECONDS)):
  """Multi-host start-up; call before any JAX computation.

  With no address on a TPU pod or a SLURM/Open MPI cluster, JAX discovers
  the cluster itself; otherwise pass all three. CPU processes exchange
  their collectives over Gloo (unless JAX_CPU_COLLECTIVES_IMPLEMENTATION
  chooses another). Calling it again in a process that joined is a no-op.

  Raises:
    errors.ConfigError: the processes could not be joined (an unreachable
      or busy coordinator address, a bad process id...).
  """
  if jax.distributed.is_initialized():
    return
  kwargs = dict(heartbeat_timeout_seconds=int(heartbeat_timeout_seconds))
  if coordinator_address:
    kwargs.update(coordinator_address=coordinator_address,
                  num_processes=num_processes, process_id=process_id)
  if not os.environ.get('JAX_CPU_COLLECTIVES_IMPLEMENTATION'):
    # Without a collectives implementation a CPU process cannot run a
    # computation that spans processes (JAX 0.10 defaults to Gloo; older
    # versions to none).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(**kwargs)
  except (RuntimeError, ValueError, TypeError) as e:
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise errors.ConfigError(
        'cannot join the processes of the distributed run '
        f'({first_line[:300]}); check --config.distributed.coordinator_'
        'address, num_processes and process_id, or leave them empty on a '
        'SLURM cluster or TPU pod') from e
  logging.info('process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def is_distributed() -> bool:
  """Whether this process is one of several joined by jax.distributed."""
  return jax.distributed.is_initialized() and jax.process_count() > 1


def is_main_process() -> bool:
  """Whether this process writes the run's files: the only one, or process 0.

  Every process of a multi-process run computes everything (each takes part
  in every collective), and process 0 alone writes reports, plots, event
  files, saved splits and stores (Orbax coordinates checkpoints itself).
  """
  return not jax.distributed.is_initialized() or jax.process_index() == 0


def sync(name: str) -> None:
  """Waits until every process has reached `sync(name)`; a no-op for one.

  A collective: every process must call it, in the same order as its other
  collectives.
  """
  if is_distributed():
    multihost_utils.sync_global_devices(name)


def from_main_process(text: str) -> str:
  """`text` as process 0 has it; every process of a run must call it.

  For the paths a run's processes must agree on (Orbax writes one folder
  together), where each process was given its own (e.g. --workdir); in a
  single process, `text` itself.
  """
  if not is_distributed():
    return text
  size = 4096  # PATH_MAX: a path never needs more.
  data = np.frombuffer(text.encode()[:size].ljust(size, b'\0'), np.uint8)
  out = np.asarray(multihost_utils.broadcast_one_to_all(data))
  return bytes(out.astype(np.uint8)).rstrip(b'\0').decode()


def put(tree, sharding: jax.sharding.Sharding):
  """Host (numpy) arrays as global `jax.Array`s laid out by `sharding`.

  Each process places only the shards its own devices hold, cut from the
  full array it holds (every process draws the same global batch), so it
  works for one process and for many, with no cross-process traffic or
  check; for one process the result equals `jax.device_put`'s.
  """

  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding,
                                        lambda index: x[index])

  return jax.tree.map(one, tree)


def _host(x) -> np.ndarray:
  if (isinstance(x, jax.Array) and not x.is_fully_addressable
      and not x.is_fully_replicated):
    return multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(x)


def to_host(tree):
  """Arrays as numpy, whole, on every process.

  A batch-sharded output of a multi-process run has parts on other
  processes' devices: those are gathered (a collective, so every process
  must call it); replicated and local arrays are read as they are.
  """
  return jax.tree.map(_host, tree)


def peer_failure(error: BaseException) -> bool:
  """Whether `error` says another process of this run failed or vanished.

  What a collective (Gloo: "Connection closed by peer") or a coordination
  barrier (a missed heartbeat) raises in the processes that survive one
  that died.
  """
  if not jax.distributed.is_initialized() or isinstance(error,
                                                        errors.MuJaxError):
    return False
  text = str(error)
  return any(marker in text for marker in _PEER_FAILURE_MARKERS)


def end_process(status: int, wait_for_others: bool = True) -> None:
  """Exits with `status`; in a multi-process run, without hanging the others.

  A single process (or one that never joined others) simply exits. A joined
  process that failed waits up to `SHUTDOWN_GRACE_SECONDS` in
  `jax.distributed.shutdown` for the others (all of them arrive when an
  error of the config or the data hit every process, and all end cleanly),
  then leaves without the exit handlers, whose shutdown would block for
  minutes; its closed connections make the collectives of the processes
  still running fail at once, and they end through here too
  (`wait_for_others=False` when they learned it that way: the failed
  process is gone, there is nothing to wait for).
  """
  sys.stdout.flush()
  sys.stderr.flush()
  if not jax.distributed.is_initialized():
    sys.exit(status)
  logging.flush()
  if wait_for_others:
    # Shutdown waits at a barrier for every process; leave after the grace
    # period even if some never come (they are still computing).
    timer = threading.Timer(SHUTDOWN_GRACE_SECONDS, os._exit, (status,))
    timer.daemon = True
    timer.start()
    try:
      jax.distributed.shutdown()
    except Exception:  # pylint: disable=broad-except
      pass  # The others are gone already: nothing left to shut down.
  os._exit(status)  # pylint: disable=protected-access


def _devices() -> list[jax.Device]:
  """jax.devices(), with a backend that cannot start as a ConfigError.

  JAX starts its backends on first use. A platform named in JAX_PLATFORMS
  (or jax_platforms) that this machine lacks fails there: with an
  AssertionError and no message for 'cuda' without a visible NVIDIA GPU,
  with a RuntimeError for one whose library is missing or unknown.
  """
  try:
    return jax.devices()
  except (AssertionError, RuntimeError) as e:
    platforms = jax.config.jax_platforms
    if not platforms:
      raise  # JAX chose the backend itself: not the user's setting.
    # JAX's own advice (set JAX_PLATFORMS='') is replaced by ours.
    reason = (str(e).split(' (set JAX_PLATFORMS')[0].strip()
              or 'no device of that kind is visible')
    raise errors.ConfigError(
        f'JAX_PLATFORMS={platforms!r}: no such backend on this machine '
        f'({reason}); unset JAX_PLATFORMS (or set it to cpu) to use the '
        'devices this machine has, or install the backend (jax[cuda12] for '
        'an NVIDIA GPU, jax[tpu] for a TPU)') from e


def make_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
  """A 1-D mesh over the first `num_devices` devices (0 = all)."""
  devices = _devices()
  if num_devices < 0:
    raise errors.ConfigError(f'--config.mesh.num_devices={num_devices}: use 0 '
                             'for all devices or a positive count')
  if num_devices:
    if num_devices > len(devices):
      raise errors.ConfigError(
          f'--config.mesh.num_devices={num_devices} but only '
          f'{len(devices)} devices are visible')
    devices = devices[:num_devices]
  # Auto axis types: explicit sharding mode (the make_mesh default) would
  # demand out_sharding annotations inside method code (e.g. gathers).
  return jax.sharding.Mesh(
      np.asarray(devices), (DATA_AXIS,),
      axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: jax.sharding.Mesh) -> jax.NamedSharding:
  return jax.NamedSharding(mesh, jax.P())


def batch_sharded(mesh: jax.sharding.Mesh,
                  leading_axes: int = 0) -> jax.NamedSharding:
  """Batches split over the mesh along their batch axis.

  Args:
    mesh: the device mesh.
    leading_axes: axes before the batch axis (e.g. 1 for the stacked batches
      of several runs, [runs, batch, ...]).
  """
  return jax.NamedSharding(mesh, jax.P(*([None] * leading_axes), DATA_AXIS))


def check_batch_size(batch_size: int, mesh: jax.sharding.Mesh, what: str):
  """Raises a ConfigError unless `batch_size` splits evenly over the mesh."""
  n = mesh.devices.size
  if batch_size <= 0 or batch_size % n:
    raise errors.ConfigError(
        f'{what} batch size {batch_size} is not a positive multiple of the '
        f'{n} devices; choose a multiple of {n}')


def fit_batch_size(batch_size: int, available: int, mesh) -> int:
  """`batch_size`, lowered to fit a split of `available` samples.

  To the largest multiple of the device count that is at most `available`
  (unchanged when even that is 0, so that the driver reports the split as
  too small).
  """
  num_devices = mesh.devices.size
  fitted = available - available % num_devices
  if batch_size <= available or fitted < 1:
    return batch_size
  return fitted


# JAX's monitoring events that time compilation: tracing, lowering to MLIR,
# and the backend's compile (or load from the persistent cache).
_COMPILE_EVENTS = frozenset({
    '/jax/core/compile/jaxpr_trace_duration',
    '/jax/core/compile/jaxpr_to_mlir_module_duration',
    '/jax/core/compile/backend_compile_duration'})
_compile_clock = {'seconds': 0.0, 'listening': False}


def _on_duration_event(event: str, duration: float, **kwargs):
  del kwargs
  if event in _COMPILE_EVENTS:
    _compile_clock['seconds'] += duration


def compile_seconds() -> float:
  """Seconds this process has spent compiling since the first call.

  Read twice around a piece of work, the difference is its compilation
  (tracing, lowering, compiling or loading from the cache), including the
  programs jitted on first use, such as a method's one-off passes in
  `prepare`: the driver moves that time from run time (RTE) to compile time.
  """
  if not _compile_clock['listening']:
    jax.monitoring.register_event_duration_secs_listener(_on_duration_event)
    _compile_clock['listening'] = True
  return _compile_clock['seconds']


def separate_programs(mesh) -> bool:
  """Whether a step's parts (`Phase.update` as a tuple) run as one program each.

  On CPUs: XLA's CPU runtime runs the independent passes of one program
  concurrently, and on a few cores they fight over the cores and the cache
  (NegGrad+'s forget and retain gradients: 91-98 ms in one program, 65-67 ms
  as two, docs/PERFORMANCE.md). Accelerators run one program per step, which
  saves the dispatches and the copy of the running gradient sum.
  """
  return mesh.devices.flat[0].platform == 'cpu'


def compile_function(fun, **jit_kwargs):
  """`jax.jit`, for every program mu_jax compiles: the one place that does.

  The training steps (mu_jax/step_programs.py) and frozen teachers' passes
  (mu_jax/teacher_outputs.py), compiled ahead of time for `train.run`,
  evaluation, features, sampling and one-off passes in a method's `prepare`
  (`Context.compile`) all compile through here. Arguments are `jax.jit`'s.
  """
  return jax.jit(fun, **jit_kwargs)


def cached_program(cache: dict, key_tree, compile_fn):
  """`compile_fn()`, or what it returned for a `key_tree` of the same
  structure, shapes, dtypes and static fields.

  `key_tree` holds the example arguments of an ahead-of-time compiled
  program (strings in it name the program): runs that share `cache` (e.g.
  the guard rails' attempts) compile each program once.
  """
  leaves, treedef = jax.tree.flatten(key_tree)
  key = (treedef, tuple(
      leaf if isinstance(leaf, str) else
      (tuple(leaf.shape), str(leaf.dtype)) for leaf in leaves))
  if key not in cache:
    cache[key] = compile_fn()
  return cache[key]
