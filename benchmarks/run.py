"""Benchmarks mu_jax against the PyTorch reference in one run, alternating.

  python -m benchmarks.run --out runs/bench.json
  python -m benchmarks.run --model cnn --batch_size 128 --shape 28,28,1 \
      --methods scrub,bad_teaching --repeats 3
  python -m benchmarks.run --cpu_devices 4 --methods '' --no_torch  # scaling

Measures (1) train-step throughput of `--model` at `--batch_size` on images
of `--shape`: median img/s over `--steps` steps after `--warmup`, plus
compile time; (2) the end-to-end wall time of each unlearning method on the
default config (configs/default.py, random 10 % forget set), with the run
time reports call RTE (compile excluded) beside it. Each repeat runs mu_jax,
then PyTorch (reversed on odd repeats), so load from other processes hits
both; ratios are mu_jax / PyTorch throughput and PyTorch / mu_jax time, so
above 1 means mu_jax is faster. Writes JSON (`--out`) and prints a table.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

from benchmarks import host

_MODEL = flags.DEFINE_string('model', 'cnn', 'mu_jax model name.')
_BATCH = flags.DEFINE_integer('batch_size', 128, 'Train-step batch size.')
_SHAPE = flags.DEFINE_string('shape', '28,28,1', 'Image shape H,W,C.')
_DTYPE = flags.DEFINE_enum(
    'dtype', 'float32', ['float32', 'bfloat16'],
    "mu_jax's train-step computation dtype (config.model.dtype); bfloat16 is "
    'mixed precision, for GPUs and TPUs. PyTorch stays float32.')
_STEPS = flags.DEFINE_integer('steps', 30, 'Timed train steps per repeat.')
_WARMUP = flags.DEFINE_integer('warmup', 5, 'Untimed steps per repeat.')
_METHODS = flags.DEFINE_list(
    'methods', None, 'Methods to time end to end (default: every unlearning '
    'method of mu_jax/methods/; empty: none).')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Alternating repeats.')
_VARIANT = flags.DEFINE_string(
    'variant', '', "configs/default.py variant for the methods ('smoke' "
    'for a quick check).')
_CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', -1, 'Host (CPU) devices for mu_jax; -1: mu_jax default.')
_CACHE_DIR = flags.DEFINE_string(
    'cache_dir', '', "JAX's persistent compilation cache; '' = a fresh "
    'temporary folder, so the first repeat compiles cold and later ones '
    'show what a cache hit saves.')
_THREADS = flags.DEFINE_integer('torch_threads', 0,
                                'PyTorch threads; 0 = one per core.')
_CHANNELS_LAST = flags.DEFINE_bool(
    'channels_last', True, "PyTorch's channels_last format (its faster one "
    'on CPU); --nochannels_last for NCHW.')
_NO_TORCH = flags.DEFINE_bool('no_torch', False, 'Skip PyTorch.')
_OUT = flags.DEFINE_string('out', 'runs/benchmark.json', 'JSON output.')


def _torch():
  """The reference module, or None when torch is not installed."""
  if _NO_TORCH.value:
    return None
  try:
    # pylint: disable-next=g-import-not-at-top
    from benchmarks import torch_reference
  except ImportError:
    return None
  return torch_reference


def _median(values):
  return statistics.median(values) if values else None


def _ratio(a, b):
  return a / b if a and b else None


def _fmt(value, spec='.3g'):
  return '-' if value is None else format(value, spec)


def run(out_path: str) -> dict:
  """Runs the benchmark with the flags' settings; returns the JSON payload."""
  # Before any JAX computation: host devices, convolution kernels and the
  # compilation cache.
  cache_dir = _CACHE_DIR.value or tempfile.mkdtemp(prefix='mu_jax_bench_')
  cpu_convolutions = host.configure(_MODEL.value, _CPU_DEVICES.value,
                                    cache_dir)
  from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
  torch_ref = _torch()
  if torch_ref is not None:
    torch_ref.set_threads(_THREADS.value or os.cpu_count() or 1)
  shape = tuple(int(s) for s in _SHAPE.value.split(','))
  load = os.getloadavg()
  payload = {
      'device': mu_jax_side.device_summary(),
      'cpu_count': os.cpu_count(),
      'cpu_convolutions': cpu_convolutions,
      'loadavg_start': load,
      'torch': torch_ref is not None and torch_ref.torch.__version__,
      'flags': {f: flags.FLAGS[f].value for f in (
          'model', 'batch_size', 'shape', 'dtype', 'steps', 'warmup',
          'methods',
          'repeats', 'variant', 'cpu_devices', 'cache_dir',
          'torch_threads', 'channels_last')},
      'step': {'jax': [], 'torch': [],
               'flops_per_step': mu_jax_side.step_flops(
                   _MODEL.value, _BATCH.value, shape, dtype=_DTYPE.value)},
      'methods': {},
  }

  def jax_step():
    payload['step']['jax'].append(mu_jax_side.step_throughput(
        _MODEL.value, _BATCH.value, shape, steps=_STEPS.value,
        warmup=_WARMUP.value, dtype=_DTYPE.value))

  def torch_step():
    optim_spec = dict(mu_jax_side.recipe_optimizer())
    payload['step']['torch'].append(torch_ref.step_throughput(
        _MODEL.value, _BATCH.value, shape, optim_spec, steps=_STEPS.value,
        warmup=_WARMUP.value, channels_last=_CHANNELS_LAST.value))

  # The reference builds the CNN only; other models run mu_jax alone.
  torch_steps = torch_ref is not None and _MODEL.value in torch_ref.MODELS
  for repeat in range(_REPEATS.value):
    order = [jax_step] + ([torch_step] if torch_steps else [])
    for fn in order if repeat % 2 == 0 else order[::-1]:
      fn()

  methods = ([m for m in _METHODS.value if m] if _METHODS.value is not None
             else list(mu_jax_side.default_methods()))
  if methods:
    bench = mu_jax_side.Experiment(_VARIANT.value or None)
    images = bench.dataset.train_images
    labels = bench.dataset.train_labels
    for method in methods:
      work = mu_jax_side.method_workload(bench, method)
      record = {'jax': [], 'torch': [],
                'plan_steps': sum(k for e in work['plan'] for _, k in e)}
      for repeat in range(_REPEATS.value):
        order = ['jax'] + (['torch'] if torch_ref else [])
        for side in order if repeat % 2 == 0 else order[::-1]:
          if side == 'jax':
            record['jax'].append(mu_jax_side.method_run(bench, method))
          else:
            record['torch'].append(torch_ref.run_method(
                work, images, labels, _CHANNELS_LAST.value))
      payload['methods'][method] = record
  payload['loadavg_end'] = os.getloadavg()
  payload['summary'] = summarize(payload)
  from mu_jax import report  # pylint: disable=g-import-not-at-top
  report.write_json(out_path, payload)
  if not _CACHE_DIR.value:
    shutil.rmtree(cache_dir, ignore_errors=True)
  return payload


def summarize(payload: dict) -> dict:
  """Medians over repeats and the mu_jax / PyTorch ratios."""
  from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
  step = payload['step']
  jax_ips = _median([r['img_per_s'] for r in step['jax']])
  torch_ips = _median([r['img_per_s'] for r in step['torch']])
  # Achieved FLOP/s from XLA's count of the step's FLOPs; as a fraction of
  # the chips' bfloat16 peak for a bfloat16 step on a known accelerator.
  flops = step.get('flops_per_step')
  achieved = flops and jax_ips and flops * jax_ips / payload['flags'][
      'batch_size']
  device = payload['device']
  peak = (payload['flags'].get('dtype') == 'bfloat16' and
          mu_jax_side.peak_bf16_flops(device['kind']))
  summary = {'step': {
      'jax_img_per_s': jax_ips, 'torch_img_per_s': torch_ips,
      'ratio': _ratio(jax_ips, torch_ips),
      'flops_per_step': flops, 'jax_flops_per_s': achieved,
      'fraction_of_peak': (achieved / (peak * device['count'])
                           if achieved and peak else None),
      # The first repeat compiles cold; later ones may hit the cache.
      'jax_compile_seconds': [r['compile_seconds'] for r in step['jax']]},
             'methods': {}}
  for method, record in payload['methods'].items():
    jax_wall = _median([r['wall_seconds'] for r in record['jax']])
    jax_rte = _median([r['rte_seconds'] for r in record['jax']])
    torch_wall = _median([r['wall_seconds'] for r in record['torch']])
    summary['methods'][method] = {
        'steps': record['plan_steps'],
        'jax_wall_seconds': jax_wall, 'jax_rte_seconds': jax_rte,
        # Repeat 1 compiles into an empty cache (unless --cache_dir is
        # given); later repeats load the compiled programs.
        'jax_cold_wall_seconds': record['jax'][0]['wall_seconds'],
        'jax_warm_wall_seconds': _median(
            [r['wall_seconds'] for r in record['jax'][1:]]),
        'jax_compile_seconds': _median(
            [r['compile_seconds'] for r in record['jax']]),
        'torch_seconds': torch_wall,
        'speedup_wall': _ratio(torch_wall, jax_wall),
        'speedup_rte': _ratio(torch_wall, jax_rte)}
  return summary


def _flops_note(step: dict) -> str:
  if not step.get('jax_flops_per_s'):
    return ''
  note = (f", {step['flops_per_step'] / 1e9:.3g} GFLOP/step, "
          f"{step['jax_flops_per_s'] / 1e12:.3g} TFLOP/s")
  if step.get('fraction_of_peak'):
    note += f" = {100 * step['fraction_of_peak']:.1f}% of bf16 peak"
  return note


def format_table(payload: dict) -> str:
  """The summary as a plain-text table, device and load in the header."""
  device, summary = payload['device'], payload['summary']
  flag = payload['flags']
  compiles = ', '.join(f'{c:.2f}' for c in
                       summary['step']['jax_compile_seconds'])
  lines = [
      f"device: {device['platform']} {device['kind']} x{device['count']} "
      f"({payload['cpu_count']} cores, "
      f"{payload.get('cpu_convolutions', 'ynnpack')} CPU convolutions), "
      f"torch {payload['torch'] or 'absent'},"
      f" load {payload['loadavg_start'][0]:.2f} -> "
      f"{payload['loadavg_end'][0]:.2f}",
      f"train step: {flag['model']} batch {flag['batch_size']} shape "
      f"{flag['shape']} {flag.get('dtype', 'float32')}",
      f"  mu_jax  {_fmt(summary['step']['jax_img_per_s'], '.0f'):>8} img/s"
      f'  (compile {compiles} s)' + _flops_note(summary['step']),
      f"  PyTorch {_fmt(summary['step']['torch_img_per_s'], '.0f'):>8} img/s",
      f"  ratio mu_jax/PyTorch {_fmt(summary['step']['ratio'], '.2f')}",
  ]
  if summary['methods']:
    lines += ['', f"{'method':<14}{'steps':>6}{'jax cold':>10}"
              f"{'jax wall':>10}{'jax RTE':>9}{'compile':>9}{'torch':>9}"
              f"{'x wall':>8}{'x RTE':>7}"]
    for method, row in summary['methods'].items():
      lines.append(
          f"{method:<14}{row['steps']:>6}"
          f"{_fmt(row['jax_cold_wall_seconds'], '.2f'):>10}"
          f"{_fmt(row['jax_wall_seconds'], '.2f'):>10}"
          f"{_fmt(row['jax_rte_seconds'], '.2f'):>9}"
          f"{_fmt(row['jax_compile_seconds'], '.2f'):>9}"
          f"{_fmt(row['torch_seconds'], '.2f'):>9}"
          f"{_fmt(row['speedup_wall'], '.2f'):>8}"
          f"{_fmt(row['speedup_rte'], '.2f'):>7}")
    lines.append('x = PyTorch seconds / mu_jax seconds (>1: mu_jax faster); '
                 'wall includes compile; jax cold = repeat 1, empty compile '
                 'cache; wall, RTE, torch = medians over repeats')
  return '\n'.join(lines)


def main(argv):
  del argv
  start = time.perf_counter()
  payload = run(_OUT.value)
  print(format_table(payload))
  print(f'wrote {_OUT.value} in {time.perf_counter() - start:.0f} s',
        file=sys.stderr)


if __name__ == '__main__':
  app.run(main)
