"""Where a train step of the CNN spends its time: XLA ops from a JAX trace.

  python -m benchmarks.profile_step                 # mu_jax's CNN
  python -m benchmarks.profile_step --pool=flax     # flax's Conv, max_pool
  python -m benchmarks.profile_step --cpu_convolutions=ynnpack  # XLA default

Traces `--trace_steps` jitted SGD steps with `jax.profiler` (a Perfetto
trace) and prints the XLA operations that took the most time, each with the HLO
instruction it computes (from the compiled module's metadata), plus the
median step time measured apart from the trace. docs/PERFORMANCE.md quotes
its output. The step is the bare compiled update, without the driver, so
comparing its img/s with `benchmarks.run`'s shows the driver's overhead.
The trace has no events for XLA's Eigen convolutions (the default here, as in
main.py for the cnn), so their time is the part of the median step that the
traced operations do not cover; the last line reports it.
"""

import collections
import glob
import gzip
import json
import re
import tempfile
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import host
from mu_jax.models import cnn

_POOL = flags.DEFINE_enum(
    'pool', 'mu_jax', ['mu_jax', 'flax'],
    "mu_jax's CNN, or the same network built from flax's nn.Conv and "
    'nn.max_pool (the model before the CPU optimisations).')
# Names apart from the other scripts' flags, so that they import together.
_BATCH = flags.DEFINE_integer('batch', 128, 'Batch size.')
_STEPS = flags.DEFINE_integer('trace_steps', 20, 'Traced (and timed) steps.')
_TOP = flags.DEFINE_integer('top', 10, 'Operations to list.')


class FlaxPoolCNN(nn.Module):
  """mu_jax's CNN from flax's nn.Conv and nn.max_pool, as it was first."""
  num_classes: int = 10
  width: int = 32

  @nn.compact
  def __call__(self, x):
    pool = lambda v: nn.max_pool(v, (2, 2), strides=(2, 2))
    x = pool(nn.relu(nn.Conv(self.width, (3, 3))(x)))
    x = pool(nn.relu(nn.Conv(2 * self.width, (3, 3))(x)))
    features = nn.relu(nn.Dense(4 * self.width)(x.reshape((x.shape[0], -1))))
    return nn.Dense(self.num_classes)(features), features


def _op_names(hlo_text: str) -> dict[str, str]:
  """HLO instruction -> the jax op it implements (from HLO metadata).

  Fusions often carry no metadata of their own; they get that of the first
  instruction inside their fused computation, or its root's type and opcode.
  """
  direct, calls, inner, computation = {}, {}, {}, None
  for line in hlo_text.splitlines():
    header = re.match(r'^(?:ENTRY )?%?([\w.-]+) .*\{$', line)
    if header:
      computation = header.group(1)
      continue
    match = re.match(r'\s*(?:ROOT )?%?([\w.-]+) = ', line)
    if not match:
      continue
    op_name = re.search(r'op_name="([^"]+)"', line)
    called = re.search(r'calls=%?([\w.-]+)', line)
    if op_name:
      direct[match.group(1)] = op_name.group(1)
      inner.setdefault(computation, op_name.group(1))
    elif line.lstrip().startswith('ROOT'):
      # No metadata (an op XLA derived, e.g. a kernel-gradient convolution):
      # its result type and opcode, e.g. 'f32[32,3,3,64] convolution'.
      root = re.search(r'= (\S+) (\w[\w-]*)\(', line)
      if root:
        inner.setdefault(computation, f'{root.group(1)} {root.group(2)}')
    if called:
      calls[match.group(1)] = called.group(1)
  return {name: direct.get(name) or inner.get(calls.get(name), '')
          for name in set(direct) | set(calls)}


def main(argv):
  del argv
  host.configure('cnn', 1, cache_dir='')  # One device: a plain op list.
  model = (cnn.CNN(num_classes=10) if _POOL.value == 'mu_jax'
           else FlaxPoolCNN())
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((_BATCH.value, 28, 28, 1), np.float32))
  y = jnp.asarray(rng.integers(0, 10, _BATCH.value))
  params = model.init(jax.random.key(0), x[:1])['params']
  tx = optax.sgd(0.05, momentum=0.9)

  def step(params, opt_state):
    def loss_fn(p):
      logits, _ = model.apply({'params': p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, tx.init(params)).compile()
  names = _op_names(compiled.as_text())
  state = (params, tx.init(params))
  for _ in range(3):
    *state, loss = compiled(*state)
  jax.block_until_ready(loss)
  times = []
  for _ in range(_STEPS.value):
    start = time.perf_counter()
    *state, loss = compiled(*state)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - start)
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp, create_perfetto_trace=True):
      for _ in range(_STEPS.value):
        *state, loss = compiled(*state)
      jax.block_until_ready(loss)
    path = glob.glob(f'{tmp}/**/*.json.gz', recursive=True)[0]
    with gzip.open(path) as f:
      events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  totals = collections.Counter()
  for event in events:
    # Complete events of XLA ops; '$...' are Python frames, Thunk* the
    # executor's own spans around them.
    if event.get('ph') == 'X' and not event['name'].startswith(
        ('$', 'Thunk')):
      totals[event['name']] += event['dur']
  total = sum(totals.values())
  print(f'pool={_POOL.value} batch={_BATCH.value}: median step '
        f'{1e3 * np.median(times):.1f} ms = '
        f'{_BATCH.value / np.median(times):.0f} img/s; traced op time '
        f'{total / _STEPS.value / 1e3:.1f} ms/step')
  for name, micros in totals.most_common(_TOP.value):
    what = names.get(name, '').replace('jit(step)/', '')
    print(f'{100 * micros / total:5.1f}%  {micros / _STEPS.value / 1e3:7.2f} '
          f'ms  {name:<28} {what}')
  untraced = 1e3 * np.median(times) - total / _STEPS.value / 1e3
  print(f'untraced: {max(untraced, 0):.1f} ms/step (Eigen convolutions, '
        'waits between operations)')


if __name__ == '__main__':
  app.run(main)
