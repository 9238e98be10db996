r"""Builds mu_jax's embedded Fashion-MNIST subset from the official IDX files.

The subset is stratified and seeded, so rerunning this script on the same
source files reproduces `mu_jax/datasets/fashion_mnist_subset.npz` exactly:

  python tools/make_embedded_dataset.py \
      --source_dir /usr/share/datasets/fashion-mnist \
      --out mu_jax/datasets/fashion_mnist_subset.npz

The source files come from the Debian package `dataset-fashion-mnist`
(`apt-get install dataset-fashion-mnist`). The script depends on numpy and
absl-py only, so it does not need mu_jax to be importable (which is also why
it writes the file itself, not with mu_jax.atomic_files). It prints the
facts recorded in `mu_jax/datasets/PROVENANCE.md`.
"""

import gzip
import hashlib
import os

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_string('source_dir', None,
                    'Folder with the four Fashion-MNIST .gz IDX files.',
                    required=True)
flags.DEFINE_string('out', None, 'Output .npz path.', required=True)
flags.DEFINE_integer('train_per_class', 1000, 'Train images per class.')
flags.DEFINE_integer('test_per_class', 200, 'Test images per class.')
flags.DEFINE_integer('seed', 0, 'Seed of the draw.')

_FILES = {
    'train_images': 'train-images-idx3-ubyte.gz',
    'train_labels': 'train-labels-idx1-ubyte.gz',
    'test_images': 't10k-images-idx3-ubyte.gz',
    'test_labels': 't10k-labels-idx1-ubyte.gz',
}
_NUM_CLASSES = 10
_MAX_BYTES = 8 * 1024 * 1024  # Keeps the wheel and the repository small.


def _read_idx(path: str) -> np.ndarray:
  """Returns the uint8 array stored in a gzipped IDX file."""
  with gzip.open(path, 'rb') as f:
    raw = f.read()
  if raw[:3] != b'\x00\x00\x08':
    raise ValueError(f'{path} is not a uint8 IDX file; check --source_dir.')
  ndim = raw[3]
  shape = tuple(int(d) for d in np.frombuffer(raw, '>i4', ndim, offset=4))
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def _stratified(labels: np.ndarray, per_class: int,
                rng: np.random.Generator) -> np.ndarray:
  """Returns `per_class` indices of each class, shuffled across classes."""
  chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
            for c in range(_NUM_CLASSES)]
  # Shuffle so that consumers taking a prefix still see every class.
  return rng.permutation(np.concatenate(chosen))


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  args = flags.FLAGS

  paths = {k: os.path.join(args.source_dir, v) for k, v in _FILES.items()}
  arrays = {k: _read_idx(p) for k, p in paths.items()}
  rng = np.random.default_rng(args.seed)
  train_idx = _stratified(arrays['train_labels'], args.train_per_class, rng)
  test_idx = _stratified(arrays['test_labels'], args.test_per_class, rng)
  subset = {
      'train_images': arrays['train_images'][train_idx],
      'train_labels': arrays['train_labels'][train_idx],
      'test_images': arrays['test_images'][test_idx],
      'test_labels': arrays['test_labels'][test_idx],
      'train_source_indices': train_idx.astype(np.int32),
      'test_source_indices': test_idx.astype(np.int32),
  }
  np.savez_compressed(args.out, **subset)

  size = os.path.getsize(args.out)
  if size > _MAX_BYTES:
    raise SystemExit(f'{args.out} is {size} bytes, over the {_MAX_BYTES} '
                     'limit; lower --train_per_class or --test_per_class.')
  print('Source files (sha256):')
  for key, path in paths.items():
    print(f'  {_FILES[key]}  {_sha256(path)}')
  for split in ('train', 'test'):
    counts = np.bincount(subset[f'{split}_labels'], minlength=_NUM_CLASSES)
    print(f'{split}: {len(subset[f"{split}_labels"])} images, per class '
          f'{counts.tolist()}, shape {subset[f"{split}_images"].shape}')
  print(f'{os.path.basename(args.out)}: {size} bytes, sha256 '
        f'{_sha256(args.out)}')


if __name__ == '__main__':
  app.run(main)
