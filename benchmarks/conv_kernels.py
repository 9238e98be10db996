"""The CNN's convolutions one by one: XLA's CPU kernels against PyTorch's.

  python -m benchmarks.conv_kernels                             # Eigen (auto)
  python -m benchmarks.conv_kernels --cpu_convolutions=ynnpack  # XLA default

Times each convolution a train step of the default CNN runs (batch
`--kernel_batch`, 28x28x1 images, width 32): both layers' forward pass, the
second layer's input gradient (the first layer's is never needed) and both
kernel gradients, each as its own jitted function on one XLA device, median
of `--kernel_repeats` calls; then the same five with PyTorch (channels_last,
`--kernel_torch_threads` threads, `torch.nn.grad` for the gradients, which
run the kernels autograd runs). A step's gap to PyTorch that these five account for is a bound of
XLA's CPU convolution kernels, not of mu_jax's code around them
(docs/PERFORMANCE.md). XLA's kernel choice is fixed when JAX starts, so each
choice needs its own run.
"""

import time

from absl import app
from absl import flags
import numpy as np

from benchmarks import host

# Names apart from the other scripts' flags, so that they import together.
_BATCH = flags.DEFINE_integer('kernel_batch', 128, 'Images per convolution.')
_REPEATS = flags.DEFINE_integer('kernel_repeats', 30,
                                'Timed calls per kernel.')
_THREADS = flags.DEFINE_integer('kernel_torch_threads', 2, 'PyTorch threads.')

# (name, input height/width, input channels, output channels): the CNN.
_LAYERS = (('Conv_0', 28, 1, 32), ('Conv_1', 14, 32, 64))


def _median_ms(fn, repeats: int) -> float:
  fn()  # Warm-up (and compilation).
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def _jax_times(batch: int, repeats: int) -> dict[str, float]:
  import jax  # pylint: disable=g-import-not-at-top
  conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  out = {}
  rng = np.random.default_rng(0)
  for name, size, c_in, c_out in _LAYERS:
    x = rng.normal(size=(batch, size, size, c_in)).astype(np.float32)
    w = rng.normal(size=(3, 3, c_in, c_out)).astype(np.float32)
    g = rng.normal(size=(batch, size, size, c_out)).astype(np.float32)
    x, w, g = jax.device_put((x, w, g))
    kernels = {
        'forward': jax.jit(conv),
        'input gradient': jax.jit(
            lambda x, w, g: jax.vjp(lambda v: conv(v, w), x)[1](g)[0]),
        'kernel gradient': jax.jit(
            lambda x, w, g: jax.vjp(lambda k: conv(x, k), w)[1](g)[0]),
    }
    for kind, fn in kernels.items():
      if name == 'Conv_0' and kind == 'input gradient':
        continue
      args = (x, w) if kind == 'forward' else (x, w, g)
      out[f'{name} {kind}'] = _median_ms(
          lambda fn=fn, args=args: fn(*args).block_until_ready(), repeats)
  return out


def _torch_times(batch: int, repeats: int, threads: int) -> dict[str, float]:
  import torch  # pylint: disable=g-import-not-at-top
  from torch.nn import functional as F  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  last = torch.channels_last
  out = {}
  gen = torch.Generator().manual_seed(0)
  for name, size, c_in, c_out in _LAYERS:
    x = torch.randn(batch, c_in, size, size, generator=gen).to(
        memory_format=last)
    w = torch.randn(c_out, c_in, 3, 3, generator=gen).to(memory_format=last)
    g = torch.randn(batch, c_out, size, size, generator=gen).to(
        memory_format=last)
    kernels = {
        'forward': lambda x=x, w=w: F.conv2d(x, w, padding=1),
        'input gradient': lambda x=x, w=w, g=g: torch.nn.grad.conv2d_input(
            x.shape, w, g, padding=1),
        'kernel gradient': lambda x=x, w=w, g=g: torch.nn.grad.conv2d_weight(
            x, w.shape, g, padding=1),
    }
    for kind, fn in kernels.items():
      if name == 'Conv_0' and kind == 'input gradient':
        continue
      with torch.no_grad():
        out[f'{name} {kind}'] = _median_ms(fn, repeats)
  return out


def _gflop(name: str, batch: int) -> float:
  _, size, c_in, c_out = next(l for l in _LAYERS if l[0] == name)
  return 2 * batch * size * size * c_in * c_out * 9 / 1e9


def main(argv):
  del argv
  choice = host.configure('cnn', 1, cache_dir='')
  batch, repeats = _BATCH.value, _REPEATS.value
  ours = _jax_times(batch, repeats)
  try:
    theirs = _torch_times(batch, repeats, _THREADS.value)
  except ImportError:
    theirs = {}
  print(f'batch {batch}; XLA {choice} kernels, one device; '
        f'PyTorch channels_last, {_THREADS.value} threads; median ms')
  print(f"{'convolution':<24} {'GFLOP':>6} {'XLA ms':>8} {'GFLOP/s':>8} "
        f"{'torch ms':>9} {'GFLOP/s':>8} {'XLA/torch':>9}")
  for op, ms in ours.items():
    flop = _gflop(op.split()[0], batch)
    t = theirs.get(op)
    print(f'{op:<24} {flop:6.3f} {ms:8.2f} {flop / ms * 1e3:8.1f} '
          + (f'{t:9.2f} {flop / t * 1e3:8.1f} {ms / t:9.2f}' if t else ''))
  total, total_t = sum(ours.values()), sum(theirs.values())
  print(f"{'all five':<24} {'':6} {total:8.2f} {'':8} "
        + (f'{total_t:9.2f} {"":8} {total / total_t:9.2f}' if theirs else ''))


if __name__ == '__main__':
  app.run(main)
