"""One prepared run for a lent GPU: ResNet-18 on CIFAR-shaped data, 8 minutes.

  python -m benchmarks.accelerator --out runs/accelerator     # on the GPU
  python -m benchmarks.accelerator --dry_run --out /tmp/acc   # CPU, < 1 min

Writes DIR/accelerator.json and DIR/accelerator.md (tables ready to paste
into docs/PERFORMANCE.md), after every measurement, so that a run cut short
still leaves what it measured. Sections, in the order they run:

- torch: the PyTorch twin of the train step (benchmarks/torch_reference.py
  models, the same SGD), eager, channels_last and NCHW, float32 and
  bfloat16 autocast, in a child process started before JAX touches the GPU
  (no shared CUDA context or libraries, all memory free). Skipped with a note
  when torch or CUDA is absent (--dry_run runs it on the CPU instead).
- step: mu_jax's ResNet-18 train step (`mu_jax_side.step_throughput`,
  through `train.run`) at each --batch_sizes and --dtypes (config.model.dtype):
  median img/s after warm-up, compile time, XLA's FLOP count per step
  (`mu_jax_side.step_flops`), achieved FLOP/s and the share of the chips'
  dense bfloat16 peak (`mu_jax_side.PEAK_BF16_FLOPS`), and mu_jax / PyTorch.
- epoch: one epoch of original training (configs/cifar10_resnet18.py's
  recipe: batch 256, crop and flip, SGD) over 50,000 random uint8 images
  through `train.run`, host feeding included, per --epoch_dtypes (the first
  before the methods, the others after them).
- methods: every unlearning method's RTE through `unlearning.unlearn` on the
  paper recipe (`paper_method(name, 'random')`) with its epochs cut to
  --method_epochs, from a random-init ResNet-18 'original' on the same
  synthetic data (the accuracies are meaningless; only time is measured).

Time budget (--budget_s, default 8 minutes, counted from the script's start):
before each measurement the script skips it (recorded as skipped, with the
reason) if the longest measurement of its kind so far would not fit in what
is left; a measurement still running at the budget is stopped (SIGALRM, at
the next Python instruction after an XLA compile or step) and recorded as
skipped, and so is everything after it. The JSON says what ran, what was
shortened and what was skipped.
"""

import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

from absl import app
from absl import flags
from absl import logging
import numpy as np

_START = time.perf_counter()  # The budget counts from here.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What the two modes measure. Flags given on the command line override them.
FULL = {
    'model': 'resnet18', 'width': 32, 'shape': (32, 32, 3), 'num_classes': 10,
    'batch_sizes': (512, 1024), 'dtypes': ('float32', 'bfloat16'),
    'steps': 30, 'warmup': 5, 'epoch_images': 50_000, 'test_images': 10_000,
    'epoch_dtypes': ('float32', 'bfloat16'), 'method_epochs': 1,
    'method_dtype': 'float32', 'torch_formats': ('channels_last', 'nchw'),
    'torch_share': 0.25, 'dry_run': False, 'allow_cpu': False,
}
# Tiny, for a CPU: the small CNN (the ResNets compile for several seconds per
# program on two cores), 8x8x3 images, a few hundred of them, 1-2 steps per
# measurement; the methods take configs/cifar10_resnet18.py's smoke variant
# (one epoch, batch 32).
DRY_RUN = dict(FULL, model='cnn', width=8, shape=(8, 8, 3), batch_sizes=(16,),
               steps=2, warmup=1, epoch_images=320, test_images=80,
               torch_share=0.5, dry_run=True)
# The target for the bfloat16 ResNet-18 step on an H100/H200.
GOAL_IMG_PER_S = 30_000
# XLA:CPU compiles the small programs of the dry run 3-5x faster with these
# (1.5 -> 0.3-0.7 s per train step on two loaded cores); not for timings.
DRY_RUN_XLA_FLAGS = ('--xla_backend_optimization_level=0',
                     '--xla_llvm_disable_expensive_passes=true',
                     '--xla_cpu_use_fusion_emitters=false')
# Seconds kept for writing the outputs after the last measurement.
_RESERVE_S = 5.0
SECTIONS = ('torch', 'step', 'epoch', 'methods')

_FLAGS = {}


def define_flags():
  """The script's flags; defined only when it runs as a script, so that the
  module imports beside benchmarks.run (which has its own --out)."""
  if _FLAGS:
    return
  _FLAGS.update(
      out=flags.DEFINE_string('out', 'runs/accelerator',
                              'Folder for accelerator.json and .md.'),
      dry_run=flags.DEFINE_bool(
          'dry_run', False, 'Tiny sizes for a CPU: checks every code path '
          'in well under a minute.'),
      budget_s=flags.DEFINE_float('budget_s', 480.0,
                                  'Time budget in seconds (see above).'),
      batch_sizes=flags.DEFINE_list('batch_sizes', None,
                                    'Train-step batches (default 512,1024).'),
      dtypes=flags.DEFINE_list('dtypes', None,
                               'Train-step dtypes (float32,bfloat16).'),
      steps=flags.DEFINE_integer('steps', None, 'Timed steps (30).'),
      warmup=flags.DEFINE_integer('warmup', None, 'Untimed steps (5).'),
      epoch_images=flags.DEFINE_integer('epoch_images', None,
                                        'Synthetic train images (50000).'),
      epoch_dtypes=flags.DEFINE_list(
          'epoch_dtypes', None, 'Dtypes of the epoch (float32,bfloat16; '
          "'' skips the epoch)."),
      methods=flags.DEFINE_list(
          'methods', None, "Unlearning methods to time (default all; '' "
          'skips them).'),
      method_epochs=flags.DEFINE_integer(
          'method_epochs', None, "Cap on each recipe's epochs (1)."),
      method_dtype=flags.DEFINE_enum(
          'method_dtype', None, ['float32', 'bfloat16'],
          "The methods' config.model.dtype (float32, the papers')."),
      no_torch=flags.DEFINE_bool('no_torch', False, 'Skip PyTorch.'),
      allow_cpu=flags.DEFINE_bool(
          'allow_cpu', False, 'Measure full sizes even when JAX sees no '
          'accelerator (by default they are skipped: hours on a CPU).'),
      cache_dir=flags.DEFINE_string(
          'cache_dir', '', "JAX's persistent compilation cache; '' = off, "
          'so that compile times are cold.'),
  )


def settings_from_flags() -> dict[str, Any]:
  """FULL or DRY_RUN, with the flags given on the command line applied."""
  values = dict(DRY_RUN if _FLAGS['dry_run'].value else FULL)
  for name in ('batch_sizes', 'dtypes', 'epoch_dtypes'):
    if _FLAGS[name].present:
      values[name] = tuple(v for v in _FLAGS[name].value if v)
  values['batch_sizes'] = tuple(int(b) for b in values['batch_sizes'])
  for name in ('steps', 'warmup', 'epoch_images', 'method_epochs',
               'method_dtype'):
    if _FLAGS[name].present:
      values[name] = _FLAGS[name].value
  from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
  values['methods'] = (tuple(m for m in _FLAGS['methods'].value if m)
                       if _FLAGS['methods'].present
                       else mu_jax_side.default_methods())
  values['dry_run'] = _FLAGS['dry_run'].value
  values['allow_cpu'] = _FLAGS['allow_cpu'].value
  return values


class OverBudget(BaseException):
  """The time budget ran out while a measurement was running.

  A BaseException, as KeyboardInterrupt, so that no `except Exception` on
  the way (ours or the library's) swallows it.
  """


class Budget:
  """Elapsed time against the budget; per-kind estimates from measurements."""

  def __init__(self, seconds: float, start: float = _START,
               reserve: float = _RESERVE_S):
    self.seconds, self.start, self.reserve = seconds, start, reserve
    self.estimates: dict[str, float] = {}
    self.exhausted = False
    self.blocked: str | None = None  # Set: every measurement is skipped.

  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def left(self) -> float:
    """Seconds left for measurements (the output's reserve kept back)."""
    return self.seconds - self.reserve - self.elapsed()

  def why_not(self, kind: str) -> str | None:
    """None if a measurement of `kind` fits, else why it is skipped."""
    if self.blocked:
      return self.blocked
    if self.exhausted:
      return 'time budget exhausted by an earlier measurement'
    need = self.estimates.get(kind, 0.0)
    if self.left() <= 0 or need > self.left():
      return (f'time budget: {self.elapsed():.0f} s of {self.seconds:.0f} s '
              f'used, this needs ~{need:.0f} s')
    return None

  def record(self, kind: str, seconds: float):
    self.estimates[kind] = max(self.estimates.get(kind, 0.0), seconds)

  @contextlib.contextmanager
  def hard_limit(self):
    """Raises OverBudget inside the block once the budget is spent."""
    if not hasattr(signal, 'setitimer'):
      yield
      return

    def on_alarm(signum, frame):
      del signum, frame
      raise OverBudget()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(self.left(), 0.01))
    try:
      yield
    finally:
      signal.setitimer(signal.ITIMER_REAL, 0)
      signal.signal(signal.SIGALRM, previous)


def measure(budget: Budget, kind: str, row: dict[str, Any],
            fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
  """Runs `fn` under the budget; its dict goes into `row` with a 'status'.

  'ok', 'skipped' (with 'reason': the budget) or 'error' (with 'error').
  """
  reason = budget.why_not(kind)
  if reason:
    row.update(status='skipped', reason=reason)
    return row
  start = time.perf_counter()
  try:
    with budget.hard_limit():
      result = fn()
    row.update(result)
    row['status'] = 'ok'
    budget.record(kind, time.perf_counter() - start)
  except OverBudget:
    budget.exhausted = True
    row.update(status='skipped', reason=(
        f'stopped at the time budget after {time.perf_counter() - start:.0f}'
        ' s'))
  except Exception as e:  # pylint: disable=broad-except
    # One failed measurement (out of memory, a backend error) must not cost
    # the rest of a one-shot GPU run; it is recorded and the exit code says.
    traceback.print_exc()
    row.update(status='error', error=f'{type(e).__name__}: {e}'[:2000])
  row['seconds'] = time.perf_counter() - start
  return row


# --- PyTorch, in a child process ------------------------------------------


def torch_steps(torch, ref, model_name: str, x, y, batch_size: int,
                dtype: str, channels_last: bool, optim_spec: dict, *,
                steps: int, warmup: int, shape: tuple[int, ...],
                num_classes: int, width: int,
                device: str) -> dict[str, Any]:
  """`torch_reference.step_throughput` on `device`, with bfloat16 autocast.

  The data `x` (normalised, in the memory format) and `y` are already on the
  device, as a dataset in memory; each step gathers its batch, runs forward
  and backward under autocast (for bfloat16), steps the optimizer and reads
  the loss back (a sync, as the driver's metrics read-back).
  """
  from torch.nn import functional as F  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = ref.make_model(model_name, num_classes, width, shape,
                         channels_last).to(device)
  opt = ref.make_optimizer(model.parameters(), optim_spec)
  model.train()
  order = torch.randperm(len(y), device=device)
  times = []
  for k in range(warmup + steps):
    start = time.perf_counter()
    idx = order[k * batch_size:(k + 1) * batch_size]
    opt.zero_grad()
    with torch.autocast(device_type=device, dtype=torch.bfloat16,
                        enabled=dtype == 'bfloat16'):
      loss = F.cross_entropy(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
    loss.item()
    times.append(time.perf_counter() - start)
  seconds = np.asarray(times[warmup:])
  return {'img_per_s': float(batch_size / np.median(seconds)),
          'step_seconds': [float(s) for s in seconds]}


def torch_child(spec_path: str, out_path: str):
  """The PyTorch section; runs in its own process (see `run_torch`)."""
  with open(spec_path) as f:
    spec = json.load(f)
  deadline = time.perf_counter() + spec['seconds']
  out = {'status': 'ok', 'rows': [], 'notes': []}

  # mu_jax.atomic_files needs numpy only: this process never imports JAX.
  from mu_jax import atomic_files  # pylint: disable=g-import-not-at-top

  def write():  # Whole, so the parent reads the rows measured so far.
    atomic_files.write_json(out_path, out)

  try:
    import torch  # pylint: disable=g-import-not-at-top
    # pylint: disable-next=g-import-not-at-top
    from benchmarks import torch_reference as ref
  except ImportError as e:
    out.update(status='skipped', notes=[f'torch is not installed ({e})'])
    write()
    return
  out['versions'] = {'torch': torch.__version__, 'cuda': torch.version.cuda}
  if torch.cuda.is_available():
    device = 'cuda'
    torch.backends.cudnn.benchmark = True
    out['versions']['cudnn'] = torch.backends.cudnn.version()
    out['device'] = torch.cuda.get_device_name(0)
    out['notes'].append(
        'cudnn.benchmark=True (favours PyTorch); TF32 for float32 '
        f'convolutions {torch.backends.cudnn.allow_tf32}, matmuls '
        f'{torch.backends.cuda.matmul.allow_tf32} (PyTorch defaults)')
  elif spec['allow_cpu']:
    device = 'cpu'
    out['device'] = 'cpu'
    out['notes'].append('no CUDA: run on the CPU to check the code path '
                        '(--dry_run); not a GPU figure')
  else:
    out.update(status='skipped', notes=[
        f'CUDA is not available to torch {torch.__version__} (built for '
        f'CUDA {torch.version.cuda}); no PyTorch GPU figures'])
    write()
    return
  write()
  shape = tuple(spec['shape'])
  longest = 0.0
  for batch in spec['batch_sizes']:
    rng = np.random.default_rng(0)
    n = (spec['warmup'] + spec['steps']) * batch
    images = rng.integers(0, 256, (n, *shape), np.uint8)
    y = torch.from_numpy(rng.integers(0, spec['num_classes'], n).astype(
        np.int64)).to(device)
    for memory_format in spec['formats']:
      channels_last = memory_format == 'channels_last'
      x = ref.to_tensor(images, channels_last).to(device)
      for dtype in spec['dtypes']:
        row = {'batch_size': batch, 'dtype': dtype,
               'memory_format': memory_format}
        out['rows'].append(row)
        if deadline - time.perf_counter() < longest:
          row.update(status='skipped', reason='time budget (PyTorch share)')
          write()
          continue
        start = time.perf_counter()
        try:
          row.update(torch_steps(
              torch, ref, spec['model'], x, y, batch, dtype, channels_last,
              spec['optim'], steps=spec['steps'], warmup=spec['warmup'],
              shape=shape, num_classes=spec['num_classes'],
              width=spec['width'], device=device))
          row['status'] = 'ok'
        except Exception as e:  # pylint: disable=broad-except
          traceback.print_exc()
          row.update(status='error', error=f'{type(e).__name__}: {e}'[:2000])
        row['seconds'] = time.perf_counter() - start
        longest = max(longest, row['seconds'])
        write()
      del x
      if device == 'cuda':
        torch.cuda.empty_cache()
  write()


def run_torch(settings: dict, budget: Budget, out_dir: str) -> dict[str, Any]:
  """The PyTorch section, in a child process with a share of the budget."""
  if _FLAGS and _FLAGS['no_torch'].value:
    return {'status': 'skipped', 'rows': [], 'notes': ['--no_torch']}
  if importlib.util.find_spec('torch') is None:
    return {'status': 'skipped', 'rows': [],
            'notes': ['torch is not installed; no PyTorch figures']}
  reason = budget.why_not('torch')
  if reason:
    return {'status': 'skipped', 'rows': [], 'notes': [reason]}
  from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
  seconds = max(1.0, settings['torch_share'] * budget.left())
  spec = {'model': settings['model'], 'width': settings['width'],
          'shape': settings['shape'],
          'num_classes': settings['num_classes'],
          'batch_sizes': settings['batch_sizes'], 'dtypes': settings['dtypes'],
          'formats': settings['torch_formats'], 'steps': settings['steps'],
          'warmup': settings['warmup'],
          'optim': mu_jax_side.recipe_optimizer().to_dict(),
          'allow_cpu': settings['dry_run'], 'seconds': seconds}
  with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
    spec_path = os.path.join(tmp, 'spec.json')
    out_path = os.path.join(tmp, 'torch.json')
    with open(spec_path, 'w') as f:
      json.dump(spec, f)
    failed = stopped = None
    try:
      proc = subprocess.run(
          [sys.executable, '-c', 'import sys; from benchmarks import '
           'accelerator; accelerator.torch_child(*sys.argv[1:])', spec_path,
           out_path], cwd=_ROOT, capture_output=True, text=True,
          timeout=seconds + 30)
      if proc.returncode:
        failed = (f'PyTorch process exited {proc.returncode}: '
                  f'{proc.stderr[-1500:]}')
    except subprocess.TimeoutExpired:
      stopped = (f'PyTorch process stopped at its share of the budget '
                 f'({seconds + 30:.0f} s)')
    result = {'status': 'error', 'rows': [], 'notes': []}
    if os.path.exists(out_path):
      with open(out_path) as f:
        result = json.load(f)
  for row in result['rows']:  # The one running when it ended.
    if 'status' not in row:
      row.update(status='error', error=failed) if failed else row.update(
          status='skipped', reason=stopped or 'PyTorch process ended')
  result['notes'] += [n for n in (failed, stopped) if n]
  if failed and result['status'] == 'ok':
    result['status'] = 'error'
  return result


# --- mu_jax ----------------------------------------------------------------


def _synthetic_dataset(settings: dict):
  """A CIFAR-shaped `Dataset` of random uint8 images and labels."""
  from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
  from mu_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  shape, classes = settings['shape'], settings['num_classes']
  train = mu_jax_side.synthetic_data(settings['epoch_images'], shape,
                                     classes, seed=0)
  test = mu_jax_side.synthetic_data(settings['test_images'], shape, classes,
                                    seed=1)
  return data_lib.Dataset(
      name='cifar10_synthetic', train_images=train[0], train_labels=train[1],
      test_images=test[0], test_labels=test[1], num_classes=classes,
      # CIFAR-10's (mu_jax/data.py); speed does not depend on them.
      mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))


def experiment_config(settings: dict, method: str, dtype: str, workdir: str):
  """configs/cifar10_resnet18.py for `method` (its paper recipe, random
  forgetting), shortened: epochs cut to `method_epochs`, guard rails off."""
  from configs import cifar10_resnet18  # pylint: disable=g-import-not-at-top
  variant = f'{method},smoke' if settings['dry_run'] else method
  config = cifar10_resnet18.get_config(variant)
  config.model.name = settings['model']
  config.model.width = settings['width']
  config.model.dtype = dtype
  # The guard's checks and retries would make the time depend on the
  # (meaningless) accuracies of a random-init model: run as configured.
  config.guard.enabled = False
  config.method.epochs = min(config.method.epochs, settings['method_epochs'])
  config.checkpoint_dir = os.path.join(workdir, 'checkpoints')
  return config


def _method_bench(settings, dataset, mesh, workdir):
  """mu_jax_side's Experiment over the synthetic data and the paper recipes."""
  from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
  from mu_jax import experiment  # pylint: disable=g-import-not-at-top

  class Bench(mu_jax_side.Experiment):

    def __init__(self):  # pylint: disable=super-init-not-called
      self.variant = None
      self.dataset, self.mesh = dataset, mesh
      self.split = experiment.make_split(self.exp('finetune').config, dataset)

    def exp(self, method):
      config = experiment_config(settings, method, settings['method_dtype'],
                                 workdir)
      experiment.check_config(config)
      return experiment.Experiment(config, self.dataset, self.mesh)

  return Bench()


@contextlib.contextmanager
def _host_device():
  """JAX's default device set to the host CPU, if JAX has that backend."""
  import jax  # pylint: disable=g-import-not-at-top
  try:
    cpu = jax.devices('cpu')[0]
  except RuntimeError:  # e.g. JAX_PLATFORMS=cuda.
    cpu = None
  with jax.default_device(cpu):  # None: the usual default.
    yield


def step_row(settings, dtype, batch, flops_cache) -> dict[str, Any]:
  """One train-step measurement (section 'step')."""
  from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
  row = mu_jax_side.step_throughput(
      settings['model'], batch, settings['shape'], steps=settings['steps'],
      warmup=settings['warmup'], num_classes=settings['num_classes'],
      width=settings['width'], dtype=dtype)
  # XLA's count is linear in the batch: one compile per dtype, at the first
  # batch measured, scaled to the others. Counted by XLA:CPU (compiled for
  # the host, not run): the count docs/PERFORMANCE.md quotes (1.49 TFLOP for
  # ResNet-18 at batch 512), no GPU autotuning, and no GPU cost model, which
  # counts element-wise operations as 3 FLOPs each.
  if dtype not in flops_cache:
    try:
      with _host_device():
        flops_cache[dtype] = (batch, mu_jax_side.step_flops(
            settings['model'], batch, settings['shape'],
            num_classes=settings['num_classes'],
            width=settings['width'], dtype=dtype))
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc()
      flops_cache[dtype] = (batch, None)
      row['flops_error'] = f'{type(e).__name__}: {e}'[:500]
  counted_at, flops = flops_cache[dtype]
  if flops:
    row['flops_per_step'] = flops * batch / counted_at
    row['flops_counted_at_batch'] = counted_at
    row['flops_counted_by'] = 'XLA:CPU cost analysis of the loss gradient'
  return row


def epoch_row(settings, dataset, mesh, dtype, workdir) -> dict[str, Any]:
  """One epoch of the original model's training recipe (section 'epoch')."""
  import jax  # pylint: disable=g-import-not-at-top
  from mu_jax import classifiers  # pylint: disable=g-import-not-at-top
  from mu_jax import experiment  # pylint: disable=g-import-not-at-top
  from mu_jax import train  # pylint: disable=g-import-not-at-top
  config = experiment_config(settings, 'finetune', dtype, workdir)
  experiment.check_config(config)
  exp = experiment.Experiment(config, dataset, mesh)
  start = time.perf_counter()
  job = classifiers.classifier_job(exp, 'original')
  jax.block_until_ready(job.template)
  init = time.perf_counter() - start
  steps = sum(n for _, n in job.method.plan(0))
  # A mark every `every` steps (the driver waits for that step first, so
  # the steps in between overlap as usual): the steady throughput, without
  # prepare (a fresh init, op by op) and the first steps.
  every = max(1, steps // 12)
  marks = []

  def mark(step, state, method_state):
    del state, method_state
    marks.append((step, time.perf_counter()))

  start = time.perf_counter()
  result = train.run(job.method, job.template, job.data, epochs=1,
                     batch_size={'retain': job.batch_size}, seed=job.seed,
                     prep=job.prep, mesh=mesh, desc=f'epoch {dtype}',
                     on_step_end=mark, every_steps=every)
  jax.block_until_ready(result.state)
  wall = time.perf_counter() - start
  steady = None
  if len(marks) >= 2:
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    steady = (s1 - s0) * job.batch_size / (t1 - t0)
  return {'images': int(len(dataset.train_labels)),
          'batch_size': job.batch_size, 'steps': steps,
          'augment': bool(config.train.augment),
          'init_seconds': init, 'wall_seconds': wall,
          'run_seconds': result.run_seconds,
          'compile_seconds': result.compile_seconds,
          'img_per_s': steps * job.batch_size / result.run_seconds,
          'steady_img_per_s': steady,
          'steady_from_step': marks[0][0] if marks else None}


def method_row(bench, method, recipe_epochs) -> dict[str, Any]:
  """One method's shortened paper recipe through `unlearning.unlearn`."""
  from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
  work = mu_jax_side.method_workload(bench, method)
  plan = {}
  for epoch in work['plan']:
    for phase, steps in epoch:
      plan[phase] = plan.get(phase, 0) + steps
  row = {'recipe_epochs': recipe_epochs, 'epochs': work['epochs'],
         'plan': plan, 'plan_steps': sum(plan.values()),
         'batch_size': {k: int(v) for k, v in work['batch_size'].items()},
         'optimizer': work['optim']['name']}
  row.update(mu_jax_side.method_run(bench, method))
  return row


# --- the run ---------------------------------------------------------------


def versions() -> dict[str, Any]:
  from mu_jax import report  # pylint: disable=g-import-not-at-top
  out = report.versions()
  for dist in importlib.metadata.distributions():
    name = (dist.metadata['Name'] or '').lower()
    if name.startswith(('jax-cuda', 'jax_cuda', 'nvidia-cudnn',
                        'nvidia-cuda-runtime', 'libtpu')):
      out[name] = dist.version
  return out


def new_payload(settings: dict, budget: Budget) -> dict[str, Any]:
  return {
      'schema': 1,
      'command': ' '.join(['python -m benchmarks.accelerator'] +
                          sys.argv[1:]),
      'started_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'dry_run': settings['dry_run'],
      'settings': {k: list(v) if isinstance(v, tuple) else v
                   for k, v in settings.items()},
      'budget': {'seconds': budget.seconds, 'elapsed_seconds': None},
      'environment': {},
      'torch': {'status': 'pending', 'rows': [], 'notes': []},
      'step': {'status': 'pending', 'rows': [], 'notes': [
          'through train.run (host gather, device_put, metrics read-back) '
          'with a wait after every step, as the PyTorch loop waits on '
          "loss.item(); the epoch section shows the driver's overlapped "
          'throughput']},
      'epoch': {'status': 'pending', 'rows': []},
      'methods': {'status': 'pending', 'rows': []},
      'errors': 0,
  }


def _section_status(section: dict):
  statuses = {r['status'] for r in section['rows']}
  if not section['rows'] or statuses == {'skipped'}:
    section['status'] = 'skipped'
  elif statuses == {'ok'}:
    section['status'] = 'ok'
  elif 'ok' in statuses:
    section['status'] = 'partial'
  else:
    section['status'] = 'error'


def summarize(payload: dict):
  """Fills in FLOP/s, fraction of peak and mu_jax / PyTorch per step row."""
  from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
  device = payload['environment'].get('device') or {}
  peak = mu_jax_side.peak_bf16_flops(device.get('kind', ''))
  count = device.get('count', 1)
  best = {}
  for row in payload['torch']['rows']:
    if row.get('status') == 'ok':
      key = (row['dtype'], row['batch_size'])
      best[key] = max(best.get(key, 0.0), row['img_per_s'])
  for row in payload['step']['rows']:
    if row.get('status') != 'ok':
      continue
    flops = row.get('flops_per_step')
    achieved = flops and flops * row['img_per_s'] / row['batch_size']
    row['flops_per_s'] = achieved or None
    row['peak_bf16_flops_per_s'] = peak and peak * count
    row['fraction_of_bf16_peak'] = (achieved / (peak * count)
                                    if achieved and peak else None)
    torch_ips = best.get((row['dtype'], row['batch_size']))
    row['torch_best_img_per_s'] = torch_ips
    row['ratio_vs_torch'] = (row['img_per_s'] / torch_ips
                             if torch_ips else None)
  # The bar: a bfloat16 step of at least GOAL_IMG_PER_S on an
  # H100/H200-class GPU, ahead of PyTorch eager (its best format) in the
  # same run.
  bf16 = [r for r in payload['step']['rows']
          if r.get('status') == 'ok' and r['dtype'] == 'bfloat16']
  if device.get('platform', 'cpu') == 'cpu':
    bf16 = []  # The bar is for accelerators.
  top = max(bf16, key=lambda r: r['img_per_s'], default=None)
  ratios = [r['ratio_vs_torch'] for r in bf16 if r.get('ratio_vs_torch')]
  payload['goal'] = {
      'target_bf16_img_per_s': GOAL_IMG_PER_S,
      'best_bf16_img_per_s': top and top['img_per_s'],
      'at_batch': top and top['batch_size'],
      'throughput_met': top['img_per_s'] >= GOAL_IMG_PER_S if top else None,
      'ahead_of_torch': min(ratios) > 1 if ratios else None,
  }


def _fmt(value, spec='.3g', scale=None):
  if value is None:
    return '-'
  return format(value if scale is None else value * scale, spec)


def _yes_no(value):
  return '-' if value is None else ('yes' if value else 'no')


def _status(row):
  if row.get('status') == 'ok':
    return ''
  return f" ({row.get('status')}: {row.get('reason') or row.get('error')})"


def format_markdown(payload: dict) -> str:
  """The tables for docs/PERFORMANCE.md."""
  env = payload['environment']
  device = env.get('device') or {}
  ver = env.get('versions') or {}
  torch_ver = (payload['torch'].get('versions') or {}).get('torch')
  settings = payload['settings']
  dry = ' (DRY RUN, tiny sizes: not a result)' if payload['dry_run'] else ''
  lines = [
      f"Accelerator run{dry}, "
      f"{payload['started_utc']}: {device.get('platform', '?')} "
      f"{device.get('kind', '?')} x{device.get('count', '?')}; jax "
      f"{ver.get('jax', '?')}, jaxlib {ver.get('jaxlib', '?')}, torch "
      f"{torch_ver or 'absent'}; {settings['model']} "
      f"{'x'.join(map(str, settings['shape']))}, {settings['num_classes']} "
      f"classes; {payload['budget']['elapsed_seconds'] or 0:.0f} s of a "
      f"{payload['budget']['seconds']:.0f} s budget.",
      f"`{payload['command']}`",
      '',
      '| train step | batch | mu_jax img/s | compile s | GFLOP/step | '
      'TFLOP/s | % bf16 peak | PyTorch eager img/s (channels_last / NCHW) | '
      'mu_jax / PyTorch |',
      '|---|---:|---:|---:|---:|---:|---:|---|---:|',
  ]
  torch_rows = {(r['dtype'], r['batch_size'], r['memory_format']): r
                for r in payload['torch']['rows']}
  for row in payload['step']['rows']:
    torch_cells = []
    for memory_format in settings['torch_formats']:
      t = torch_rows.get((row['dtype'], row['batch_size'], memory_format))
      torch_cells.append(_fmt(t and t.get('img_per_s'), ',.0f'))
    lines.append(
        f"| {row['dtype']}{_status(row)} | {row['batch_size']} | "
        f"{_fmt(row.get('img_per_s'), ',.0f')} | "
        f"{_fmt(row.get('compile_seconds'), '.1f')} | "
        f"{_fmt(row.get('flops_per_step'), '.1f', 1e-9)} | "
        f"{_fmt(row.get('flops_per_s'), '.1f', 1e-12)} | "
        f"{_fmt(row.get('fraction_of_bf16_peak'), '.1f', 100)} | "
        f"{' / '.join(torch_cells)} | "
        f"{_fmt(row.get('ratio_vs_torch'), '.2f')} |")
  goal = payload.get('goal') or {}
  lines += ['', f"Goal: bfloat16 >= {GOAL_IMG_PER_S:,} img/s and ahead of "
            f"PyTorch eager: best bfloat16 "
            f"{_fmt(goal.get('best_bf16_img_per_s'), ',.0f')} img/s (batch "
            f"{goal.get('at_batch') or '-'}); throughput met: "
            f"{_yes_no(goal.get('throughput_met'))}; ahead of PyTorch at every "
            f"batch: {_yes_no(goal.get('ahead_of_torch'))}."]
  lines.append('')
  lines.append(f"PyTorch ({payload['torch']['status']}): "
               + ('; '.join(payload['torch'].get('notes') or []) or '-'))
  lines += ['', '| epoch (original recipe) | images | batch | steps | wall s '
            '| run s | compile s | img/s (run) | img/s (steady) |',
            '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
  for row in payload['epoch']['rows']:
    lines.append(
        f"| {row['dtype']}{_status(row)} | {_fmt(row.get('images'), 'd')} | "
        f"{_fmt(row.get('batch_size'), 'd')} | {_fmt(row.get('steps'), 'd')}"
        f" | {_fmt(row.get('wall_seconds'), '.1f')} | "
        f"{_fmt(row.get('run_seconds'), '.1f')} | "
        f"{_fmt(row.get('compile_seconds'), '.1f')} | "
        f"{_fmt(row.get('img_per_s'), ',.0f')} | "
        f"{_fmt(row.get('steady_img_per_s'), ',.0f')} |")
  lines += ['', f"Methods: {payload['methods'].get('shortened', '')}", '',
            '| method | recipe epochs | run epochs | steps | wall s | RTE s | '
            'compile s |', '|---|---:|---:|---:|---:|---:|---:|']
  for row in payload['methods']['rows']:
    lines.append(
        f"| {row['method']}{_status(row)} | "
        f"{_fmt(row.get('recipe_epochs'), 'd')} | "
        f"{_fmt(row.get('epochs'), 'd')} | {_fmt(row.get('steps'), 'd')} | "
        f"{_fmt(row.get('wall_seconds'), '.1f')} | "
        f"{_fmt(row.get('rte_seconds'), '.1f')} | "
        f"{_fmt(row.get('compile_seconds'), '.1f')} |")
  return '\n'.join(lines) + '\n'


def write_outputs(payload: dict, out_dir: str, budget: Budget):
  from mu_jax import atomic_files  # pylint: disable=g-import-not-at-top
  from mu_jax import report  # pylint: disable=g-import-not-at-top
  payload['budget']['elapsed_seconds'] = budget.elapsed()
  payload['errors'] = sum(
      r.get('status') == 'error' for s in SECTIONS
      for r in payload[s]['rows']) + (payload['torch']['status'] == 'error')
  summarize(payload)
  clean = json.loads(json.dumps(payload, default=str),
                     parse_constant=lambda c: None)
  report.write_json(os.path.join(out_dir, 'accelerator.json'), clean)
  atomic_files.write_text(os.path.join(out_dir, 'accelerator.md'),
                          format_markdown(clean))


def run(settings: dict, out_dir: str, budget: Budget,
        cache_dir: str = '') -> dict[str, Any]:
  """Measures every section; returns the payload (also written)."""
  os.makedirs(out_dir, exist_ok=True)
  payload = new_payload(settings, budget)
  # Before any JAX computation: host devices, CPU convolutions, the cache.
  from benchmarks import host  # pylint: disable=g-import-not-at-top
  if settings['dry_run']:
    # A check of the code paths, not a measurement: one host device (as one
    # GPU) and XLA's cheaper CPU compilation.
    os.environ['XLA_FLAGS'] = ' '.join(filter(None, [
        os.environ.get('XLA_FLAGS', ''), *DRY_RUN_XLA_FLAGS]))
  payload['environment']['cpu_convolutions'] = host.configure(
      settings['model'], 1 if settings['dry_run'] else -1, cache_dir)
  payload['environment']['env'] = {
      k: os.environ[k] for k in sorted(os.environ)
      if k.startswith(('XLA_', 'JAX_', 'CUDA_VISIBLE', 'NVIDIA_VISIBLE'))}
  # PyTorch first, in its own process, before JAX takes the GPU's memory.
  payload['torch'] = run_torch(settings, budget, out_dir)
  if payload['torch']['status'] == 'ok':
    _section_status(payload['torch'])
  write_outputs(payload, out_dir, budget)

  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
  payload['environment'].update(device=mu_jax_side.device_summary(),
                                devices=[str(d) for d in jax.devices()],
                                versions=versions())
  platform = payload['environment']['device']['platform']
  if platform == 'cpu' and not (settings['dry_run'] or settings['allow_cpu']):
    budget.blocked = (
        'JAX sees no accelerator (platform cpu): install jax[cuda12] (README, '
        "'Install for GPU or TPU'), or pass --dry_run, or --allow_cpu")
    logging.error(budget.blocked)

  flops_cache = {}
  for dtype in settings['dtypes']:
    for batch in settings['batch_sizes']:
      row = {'dtype': dtype, 'batch_size': batch}
      payload['step']['rows'].append(row)
      measure(budget, 'step', row,
              lambda: step_row(settings, dtype, batch, flops_cache))
      write_outputs(payload, out_dir, budget)
  _section_status(payload['step'])

  # Checkpoint folder of the configs (nothing is saved there: no method of
  # the paper recipes trains a helper model); removed at the end.
  workdir = tempfile.mkdtemp(prefix='accelerator_', dir=out_dir)
  try:
    _run_data_sections(settings, budget, payload, out_dir, workdir)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  write_outputs(payload, out_dir, budget)
  return payload


def _run_data_sections(settings, budget, payload, out_dir, workdir):
  """The sections on the synthetic dataset: epoch and methods."""
  from mu_jax import parallel  # pylint: disable=g-import-not-at-top
  dataset = mesh = None
  if settings['epoch_dtypes'] or settings['methods']:
    start = time.perf_counter()
    dataset = _synthetic_dataset(settings)
    mesh = parallel.make_mesh()
    payload['environment']['synthetic_data_seconds'] = (
        time.perf_counter() - start)

  def epochs(dtypes):
    for dtype in dtypes:
      row = {'dtype': dtype}
      payload['epoch']['rows'].append(row)
      measure(budget, 'epoch', row,
              lambda: epoch_row(settings, dataset, mesh, dtype, workdir))
      write_outputs(payload, out_dir, budget)

  # What the issue asks for first (one epoch, every method), then the
  # epoch's other dtypes: if the budget runs short, those are skipped.
  epochs(settings['epoch_dtypes'][:1])
  _methods(settings, budget, payload, out_dir, workdir, dataset, mesh)
  epochs(settings['epoch_dtypes'][1:])
  _section_status(payload['epoch'])
  _section_status(payload['methods'])


def _methods(settings, budget, payload, out_dir, workdir, dataset, mesh):
  """The methods section."""
  from configs import cifar10_resnet18  # pylint: disable=g-import-not-at-top
  payload['methods']['shortened'] = (
      "configs/cifar10_resnet18.py paper_method(name, 'random') with "
      f"epochs cut to min(recipe, {settings['method_epochs']})"
      + (' and the smoke variant (batch 32)' if settings['dry_run'] else '')
      + f"; model {settings['model']} {settings['method_dtype']}; "
      'guard rails off (config.guard.enabled=False); a random-init original '
      f"model; synthetic data ({settings['epoch_images']} train images, "
      'random 10% forget set); everything else as in the recipe. wall = the '
      'whole unlearning.unlearn call (compile included), RTE = its run time '
      '(compile excluded).')
  bench = None
  for method in settings['methods']:
    row = {'method': method}
    payload['methods']['rows'].append(row)

    def one(method=method):
      nonlocal bench
      if bench is None:
        bench = _method_bench(settings, dataset, mesh, workdir)
      recipe = cifar10_resnet18.paper_method(method, 'random')
      return method_row(bench, method, int(recipe.epochs))

    measure(budget, 'method', row, one)
    write_outputs(payload, out_dir, budget)


def main(argv):
  del argv
  settings = settings_from_flags()
  budget = Budget(_FLAGS['budget_s'].value)
  out_dir = _FLAGS['out'].value
  payload = run(settings, out_dir, budget, _FLAGS['cache_dir'].value)
  with open(os.path.join(out_dir, 'accelerator.md')) as f:
    print(f.read())
  print(f"wrote {out_dir}/accelerator.json and accelerator.md in "
        f"{budget.elapsed():.0f} s; {payload['errors']} error(s)",
        file=sys.stderr)
  return 1 if payload['errors'] else 0


if __name__ == '__main__':
  define_flags()
  logging.set_verbosity(logging.WARNING)
  app.run(lambda argv: sys.exit(main(argv)))
