"""Host-side batching: the splits' data on the host and the batches cut from it.

The training driver (mu_jax/train.py) draws its training batches here, and
evaluation, features and methods' one-off passes walk a split in order here.
Images stay uint8 on the host; normalisation (and, in training steps,
augmentation) happens on the devices.

Training batches are drawn per split from a deterministic stream: the k-th
batch of a split is position k mod P of pass k div P (P = full batches per
pass), and each pass is a fresh permutation seeded by (seed, split, pass). A
resumed run therefore sees exactly the batches the uninterrupted run would
have seen.
"""

import zlib
from typing import Mapping, NamedTuple, Sequence

import jax
import numpy as np

from mu_jax import augment
from mu_jax import parallel

# One split on the host: {'image': uint8 [N, H, W, C], 'label': int [N], and
# any other per-sample arrays a method needs (e.g. 'is_forget': f32 [N])}.
SplitData = Mapping[str, np.ndarray]


class Preprocessing(NamedTuple):
  """Normalisation constants and the training-time augmentation."""
  mean: tuple[float, ...]
  std: tuple[float, ...]
  crop_padding: int = 0
  flip: bool = False


def split_data(images: np.ndarray, labels: np.ndarray, **extra) -> SplitData:
  """Builds a `SplitData` dict (labels as int32, the dtype steps expect)."""
  return {'image': images, 'label': labels.astype(np.int32), **extra}


def _split_seed(seed: int, split: str, epoch_pass: int) -> list[int]:
  return [seed, zlib.crc32(split.encode()), epoch_pass]


class BatchStream:
  """Deterministic, resumable stream of index batches over one split.

  `batch_size` must be at most `size` (the driver reports a larger one as a
  `train.TrainingError` before it makes a stream).
  """

  def __init__(self, split: str, size: int, batch_size: int, seed: int,
               position: int = 0):
    if batch_size > size:
      raise ValueError(f'batch size {batch_size} is larger than the {split} '
                       f'split ({size} samples)')
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


def draw(data: Sequence[Mapping[str, SplitData]],
         streams: Sequence[Mapping[str, BatchStream]], splits: Sequence[str],
         sharding: jax.sharding.Sharding, group: bool):
  """The next training batch of `splits`, placed on the devices.

  Args:
    data: per run, split name -> its `SplitData`.
    streams: per run, split name -> its `BatchStream` (advanced here).
    splits: the splits the step consumes.
    sharding: how the batch is laid out (`parallel.batch_sharded`).
    group: whether the runs form a vmapped group: their batches are stacked
      along a leading axis; otherwise `data` holds one run.

  Returns:
    split name -> {name: global jax.Array} of raw (uint8 image) rows.
  """
  per_run = []
  for run_data, run_streams in zip(data, streams):
    out = {}
    for split in splits:
      idx = run_streams[split].next()
      out[split] = {k: v[idx] for k, v in run_data[split].items()}
    per_run.append(out)
  batches = per_run[0] if not group else jax.tree.map(
      lambda *x: np.stack(x), *per_run)
  # Every process draws the same global batch (the streams are
  # deterministic) and places the rows of its own devices.
  return parallel.put(batches, sharding)


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
