"""Tests for mu_jax.data: every loader on tiny files, tfds via mock data."""

import dataclasses
import gzip
import importlib.util
import os
import pickle
import shutil
import tempfile
import time
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from mu_jax import data

# Content hash of mu_jax/datasets/fashion_mnist_subset.npz; see PROVENANCE.md.
_EMBEDDED_FINGERPRINT = (
    'ccfc54bd9796ed94498aad7af97e9fb5c0cd0646f4e8094ef2959eb6080d0573')


_IDX_NAMES = {
    'train_images': 'train-images-idx3-ubyte',
    'train_labels': 'train-labels-idx1-ubyte',
    'test_images': 't10k-images-idx3-ubyte',
    'test_labels': 't10k-labels-idx1-ubyte',
}


def _config(**kwargs) -> ml_collections.ConfigDict:
  defaults = dict(name=data.EMBEDDED_NAME, source='auto', path='',
                  tfds_data_dir='', download=False)
  return ml_collections.ConfigDict({**defaults, **kwargs})


def _idx_bytes(array: np.ndarray) -> bytes:
  header = bytes((0, 0, 8, array.ndim)) + np.array(array.shape, '>u4').tobytes()
  return header + array.astype(np.uint8).tobytes()


def _write_idx(directory: str, compress: bool = True, num_train: int = 6,
               num_test: int = 4) -> dict[str, np.ndarray]:
  """Writes MNIST-style IDX files of random 5x4 images; returns the arrays."""
  rng = np.random.default_rng(0)
  arrays = {
      'train_images': rng.integers(0, 256, (num_train, 5, 4), np.uint8),
      'train_labels': np.arange(num_train, dtype=np.uint8) % 10,
      'test_images': rng.integers(0, 256, (num_test, 5, 4), np.uint8),
      'test_labels': np.arange(num_test, dtype=np.uint8) % 10,
  }
  for key, base in _IDX_NAMES.items():
    path = os.path.join(directory, base + ('.gz' if compress else ''))
    with (gzip.open if compress else open)(path, 'wb') as f:
      f.write(_idx_bytes(arrays[key]))
  return arrays


def _cifar_rows(n: int, offset: int) -> np.ndarray:
  """Rows of 3072 bytes (CHW) in which channel c of pixel 0 is offset + c."""
  rows = np.zeros((n, 3, 32, 32), np.uint8)
  rows[:, :, 0, 0] = offset + np.arange(3)
  rows[:, 1, 2, 5] = 200  # Channel 1 (green) of the pixel at row 2, column 5.
  return rows.reshape(n, 3072)


def _write_cifar(directory: str, name: str) -> None:
  """Writes tiny batches in the layout of the CIFAR python archives."""
  def dump(filename, rows, labels, label_key):
    with open(os.path.join(directory, filename), 'wb') as f:
      pickle.dump({b'data': rows, label_key: labels}, f)  # Keys are bytes.
  if name == 'cifar10':
    for i in range(1, 6):
      dump(f'data_batch_{i}', _cifar_rows(2, 10 * i), [i, i], b'labels')
    dump('test_batch', _cifar_rows(3, 100), [7, 8, 9], b'labels')
  else:
    dump('train', _cifar_rows(4, 10), [0, 50, 99, 3], b'fine_labels')
    dump('test', _cifar_rows(2, 100), [42, 1], b'fine_labels')


class MuJaxTinyImages(tfds.core.GeneratorBasedBuilder):
  """A real array_record dataset that tfds can prepare without TensorFlow."""
  VERSION = tfds.core.Version('1.0.0')
  SPLITS = ('train', 'test')

  def _info(self):
    # Tensor, not Image: encoding PNG at prepare time would need TensorFlow.
    features = tfds.features.FeaturesDict({
        'image': tfds.features.Tensor(shape=(4, 4, 3), dtype=np.uint8),
        'label': tfds.features.ClassLabel(num_classes=7)})
    return tfds.core.DatasetInfo(builder=self, features=features)

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split) for split in self.SPLITS}

  def _generate_examples(self, split):
    for i in range(6 if split == 'train' else 3):
      yield i, {'image': np.full((4, 4, 3), i, np.uint8), 'label': i % 7}


class MuJaxTinyTrainOnly(MuJaxTinyImages):
  SPLITS = ('train',)


class TestCase(parameterized.TestCase):
  """Adds tmpdir(): `create_tempdir` needs absl flags, unparsed in pytest."""

  def tmpdir(self) -> str:
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path)
    return path


class EmbeddedTest(TestCase):

  def test_shapes_and_class_counts(self):
    ds = data.load_embedded()
    self.assertEqual(ds.name, 'fashion_mnist_subset')
    self.assertEqual(ds.num_classes, 10)
    self.assertEqual(ds.train_images.shape, (10000, 28, 28, 1))
    self.assertEqual(ds.test_images.shape, (2000, 28, 28, 1))
    self.assertEqual(ds.train_images.dtype, np.uint8)
    self.assertEqual(ds.train_labels.dtype, np.int32)
    self.assertEqual(ds.test_labels.dtype, np.int32)
    np.testing.assert_array_equal(np.bincount(ds.train_labels), [1000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_labels), [200] * 10)
    # Shuffled, not sorted by label: the first 100 hold every class.
    self.assertLen(np.unique(ds.train_labels[:100]), 10)
    self.assertEqual((ds.mean, ds.std), ((0.2860,), (0.3530,)))

  def test_fingerprint_is_stable_and_sees_one_pixel(self):
    ds = data.load_embedded()
    self.assertEqual(ds.fingerprint(), _EMBEDDED_FINGERPRINT)
    images = ds.train_images.copy()
    images[123, 4, 5, 0] ^= 1
    changed = dataclasses.replace(ds, train_images=images)
    self.assertNotEqual(changed.fingerprint(), ds.fingerprint())
    renamed = dataclasses.replace(ds, name='other')
    self.assertEqual(renamed.fingerprint(), ds.fingerprint())

  def test_arrays_are_read_only(self):
    with self.assertRaises(ValueError):
      data.load_embedded().train_images[0, 0, 0, 0] = 1

  def test_dataset_rejects_bad_arrays(self):
    ds = data.load_embedded()
    with self.assertRaisesRegex(data.DataError, 'uint8'):
      dataclasses.replace(ds, train_images=ds.train_images.astype(np.float64))
    with self.assertRaisesRegex(data.DataError, 'one dtype'):
      dataclasses.replace(ds, train_images=ds.train_images.astype(np.float32))
    with self.assertRaisesRegex(data.DataError, 'int32'):
      dataclasses.replace(ds, test_labels=ds.test_labels[:5])
    with self.assertRaisesRegex(data.DataError, 'num_classes'):
      dataclasses.replace(ds, num_classes=5)


class IdxTest(TestCase):

  @parameterized.parameters(True, False)
  def test_loads(self, compress):
    directory = self.tmpdir()
    arrays = _write_idx(directory, compress)
    ds = data.load_idx(directory, 'mnist')
    self.assertEqual(ds.train_images.shape, (6, 5, 4, 1))
    self.assertEqual(ds.test_images.shape, (4, 5, 4, 1))
    np.testing.assert_array_equal(ds.train_images[..., 0],
                                  arrays['train_images'])
    np.testing.assert_array_equal(ds.test_labels, arrays['test_labels'])
    self.assertEqual((ds.num_classes, ds.mean), (10, (0.1307,)))

  def test_bad_magic(self):
    directory = self.tmpdir()
    _write_idx(directory)
    path = os.path.join(directory, 't10k-labels-idx1-ubyte.gz')
    with gzip.open(path, 'wb') as f:
      f.write(b'\x00\x00\x0d\x01' + b'\x00' * 8)  # Type 0x0d is float32.
    with self.assertRaisesRegex(data.DataError, 'not a uint8 1-D IDX'):
      data.load_idx(directory)

  def test_truncated(self):
    directory = self.tmpdir()
    _write_idx(directory)
    path = os.path.join(directory, 'train-images-idx3-ubyte.gz')
    with gzip.open(path, 'wb') as f:
      f.write(_idx_bytes(np.zeros((6, 5, 4)))[:-3])
    with self.assertRaisesRegex(data.DataError, 'truncated'):
      data.load_idx(directory)

  def test_not_gzip(self):
    directory = self.tmpdir()
    _write_idx(directory)
    with open(os.path.join(directory, 'train-images-idx3-ubyte.gz'), 'wb') as f:
      f.write(b'garbage')
    with self.assertRaisesRegex(data.DataError, 'cannot read IDX'):
      data.load_idx(directory)

  def test_count_mismatch(self):
    directory = self.tmpdir()
    _write_idx(directory)
    with gzip.open(os.path.join(directory, 'train-labels-idx1-ubyte.gz'),
                   'wb') as f:
      f.write(_idx_bytes(np.zeros(5)))
    with self.assertRaisesRegex(data.DataError, r'int32 \[N\] labels'):
      data.load_idx(directory)

  def test_missing(self):
    with self.assertRaisesRegex(data.DataError, 'apt-get install'):
      data.load_idx(self.tmpdir())


class CifarTest(TestCase):

  @parameterized.product(name=['cifar10', 'cifar100'], nested=[False, True])
  def test_loads_hwc(self, name, nested):
    root = self.tmpdir()
    directory = root
    if nested:
      directory = os.path.join(root, {'cifar10': 'cifar-10-batches-py',
                                      'cifar100': 'cifar-100-python'}[name])
      os.makedirs(directory)
    _write_cifar(directory, name)
    ds = data.load_cifar_pickle(root, name)
    num_train = 10 if name == 'cifar10' else 4
    self.assertEqual(ds.train_images.shape, (num_train, 32, 32, 3))
    self.assertEqual(ds.test_images.shape[1:], (32, 32, 3))
    np.testing.assert_array_equal(ds.test_images[0, 0, 0], [100, 101, 102])
    np.testing.assert_array_equal(ds.train_images[:, 2, 5, 1], 200)
    self.assertEqual(ds.train_images[0, 2, 5, 0], 0)
    if name == 'cifar10':
      np.testing.assert_array_equal(ds.train_images[2, 0, 0], [20, 21, 22])
      np.testing.assert_array_equal(ds.test_labels, [7, 8, 9])
      self.assertEqual((ds.num_classes, ds.std), (10, (0.2023, 0.1994, 0.2010)))
    else:
      np.testing.assert_array_equal(ds.train_labels, [0, 50, 99, 3])
      self.assertEqual(ds.num_classes, 100)

  def test_missing_files_and_bad_name(self):
    directory = self.tmpdir()
    with self.assertRaisesRegex(data.DataError, 'not found'):
      data.load_cifar_pickle(directory, 'cifar10')
    with self.assertRaisesRegex(data.DataError, 'cifar10 or cifar100'):
      data.load_cifar_pickle(directory, 'svhn_cropped')

  def test_bad_rows(self):
    directory = self.tmpdir()
    with open(os.path.join(directory, 'train'), 'wb') as f:
      pickle.dump({b'data': np.zeros((2, 100), np.uint8),
                   b'fine_labels': [0, 1]}, f)
    with open(os.path.join(directory, 'test'), 'wb') as f:
      f.write(b'not a pickle')
    with self.assertRaisesRegex(data.DataError, 'not a CIFAR python batch'):
      data.load_cifar_pickle(directory, 'cifar100')


class NpzTest(TestCase):

  def _save(self, **arrays):
    path = os.path.join(self.tmpdir(), 'mine.npz')
    rng = np.random.default_rng(0)
    defaults = dict(train_images=rng.integers(0, 256, (8, 6, 6), np.uint8),
                    train_labels=np.arange(8) % 3,
                    test_images=rng.integers(0, 256, (2, 6, 6), np.uint8),
                    test_labels=np.array([0, 2]))
    np.savez(path, **{**defaults, **arrays})
    return path

  def test_grayscale_gets_channel_axis_and_computed_stats(self):
    path = self._save()
    ds = data.load_npz(path, 'mine')
    self.assertEqual(ds.train_images.shape, (8, 6, 6, 1))
    self.assertEqual(ds.train_labels.dtype, np.int32)
    self.assertEqual((ds.name, ds.num_classes), ('mine', 3))
    pixels = ds.train_images / 255.0
    np.testing.assert_allclose(ds.mean, [pixels.mean()], rtol=1e-12)
    np.testing.assert_allclose(ds.std, [pixels.std()], rtol=1e-12)

  def test_rgb_and_num_classes_key(self):
    images = np.full((4, 2, 2, 3), (10, 20, 30), np.uint8)
    ds = data.load_npz(self._save(train_images=images, test_images=images[:2],
                                  train_labels=[0, 1, 0, 1], test_labels=[1, 1],
                                  num_classes=5))
    self.assertEqual(ds.num_classes, 5)
    np.testing.assert_allclose(ds.mean, np.array([10, 20, 30]) / 255.0)
    np.testing.assert_allclose(ds.std, 0.0, atol=1e-7)

  def test_integral_floats_are_converted(self):
    images = np.arange(8 * 36, dtype=np.float32).reshape(8, 6, 6) % 256
    ds = data.load_npz(self._save(train_images=images))
    self.assertEqual(ds.train_images.dtype, np.uint8)
    np.testing.assert_array_equal(ds.train_images[..., 0], images)

  @parameterized.named_parameters(
      ('unit_floats', np.full((8, 6, 6), 0.5, np.float32)),
      ('out_of_range', np.full((8, 6, 6), 300, np.int32)),
      ('negative', np.full((8, 6, 6), -1, np.int16)))
  def test_lossy_images_are_rejected(self, images):
    with self.assertRaisesRegex(data.DataError, 'cast to uint8'):
      data.load_npz(self._save(train_images=images))

  def test_bad_files(self):
    with self.assertRaisesRegex(data.DataError, 'lacks keys'):
      data.load_npz(self._save_missing())
    with self.assertRaisesRegex(data.DataError, 'integers'):
      data.load_npz(self._save(train_labels=np.zeros(8, np.float32)))
    with self.assertRaisesRegex(data.DataError, 'not found'):
      data.load_npz('no_such_file.npz')

  def _save_missing(self):
    path = os.path.join(self.tmpdir(), 'partial.npz')
    np.savez(path, train_images=np.zeros((2, 3, 3), np.uint8))
    return path


class TfdsTest(TestCase):

  @parameterized.parameters(
      ('cifar10', (32, 32, 3), 10), ('cifar100', (32, 32, 3), 100),
      ('svhn_cropped', (32, 32, 3), 10), ('mnist', (28, 28, 1), 10),
      ('fashion_mnist', (28, 28, 1), 10))
  def test_mock_data(self, name, image_shape, num_classes):
    with tfds.testing.mock_data(num_examples=5):
      ds = data.load_tfds(name)
    self.assertEqual(ds.train_images.shape, (5,) + image_shape)
    self.assertEqual(ds.test_images.shape, (5,) + image_shape)
    self.assertEqual(ds.train_images.dtype, np.uint8)
    self.assertEqual(ds.train_labels.dtype, np.int32)
    self.assertEqual(ds.num_classes, num_classes)
    self.assertEqual(ds.mean, data._NORMALIZATION[name][0])

  @parameterized.parameters('cifar10', 'fashion_mnist')
  def test_missing_data_fails_fast_with_instructions(self, name):
    start = time.monotonic()
    with self.assertRaises(data.DataError) as cm:
      data.load_tfds(name, data_dir=self.tmpdir())
    self.assertLess(time.monotonic() - start, 1.0)
    message = str(cm.exception)
    self.assertNotIn('\n', message)
    self.assertIn('--config.data.download=True', message)
    self.assertIn('--config.data.tfds_data_dir', message)
    self.assertEqual('apt-get install dataset-fashion-mnist' in message,
                     name == 'fashion_mnist')

  @absltest.skipIf(importlib.util.find_spec('tensorflow'),
                   'with TensorFlow this would really download')
  def test_download_without_tensorflow_fails_before_downloading(self):
    start = time.monotonic()
    with self.assertRaisesRegex(data.DataError, 'pip install tensorflow-cpu'):
      data.load_tfds('mnist', data_dir=self.tmpdir(),
                     download=True)
    self.assertLess(time.monotonic() - start, 1.0)

  def test_tfrecord_only_data_is_explained(self):
    data_dir = self.tmpdir()
    builder = tfds.builder('mnist', data_dir=data_dir)
    os.makedirs(builder.data_dir)
    # dataset_info.json alone marks it prepared, in the default tfrecord format.
    builder.info.write_to_directory(builder.data_dir)
    with self.assertRaisesRegex(data.DataError, 'tfrecord.*array_record'):
      data.load_tfds('mnist', data_dir=data_dir)

  def test_real_array_record_data(self):
    data_dir = self.tmpdir()
    MuJaxTinyImages(data_dir=data_dir,
                    file_format='array_record').download_and_prepare()
    ds = data.load_tfds('mu_jax_tiny_images', data_dir=data_dir)
    self.assertEqual(ds.train_images.shape, (6, 4, 4, 3))
    self.assertEqual(ds.test_images.shape, (3, 4, 4, 3))
    self.assertEqual(ds.num_classes, 7)  # From the tfds label feature.
    # tfds shuffles at prepare time; each image still matches its label.
    np.testing.assert_array_equal(ds.train_images[:, 0, 0, 0], ds.train_labels)
    np.testing.assert_allclose(ds.mean, [2.5 / 255] * 3)

  def test_prepared_data_without_test_split(self):
    data_dir = self.tmpdir()
    MuJaxTinyTrainOnly(data_dir=data_dir,
                       file_format='array_record').download_and_prepare()
    with self.assertRaisesRegex(data.DataError, "cannot read.*split 'test'"):
      data.load_tfds('mu_jax_tiny_train_only', data_dir=data_dir)

  def test_missing_package_is_named(self):
    error = ModuleNotFoundError("No module named 'importlib_resources'",
                                name='importlib_resources')
    with mock.patch.object(tfds, 'data_source', side_effect=error):
      with self.assertRaisesRegex(data.DataError,
                                  'pip install importlib-resources'):
        data.load_tfds('cifar10', data_dir=self.tmpdir())

  def test_unknown_name(self):
    with self.assertRaisesRegex(data.DataError, 'no dataset'):
      data.load_tfds('no_such_dataset', data_dir=self.tmpdir())


class LoadTest(TestCase):

  def test_default_is_embedded(self):
    self.assertIs(data.load(ml_collections.ConfigDict()), data.load_embedded())
    self.assertIs(data.load(_config(source='embedded')), data.load_embedded())

  @parameterized.parameters(
      dict(name='imagenet', message='unknown dataset'),
      dict(source='web', message='unknown data source'),
      dict(name='cifar10', source='embedded', message='source=auto'),
      dict(source='tfds', message='name=fashion_mnist'),
      dict(name='cifar10', source='idx', path='x', message='mnist or fash'),
      dict(name='mnist', source='idx', message='needs --config.data.path'),
      dict(name='cifar10', source='cifar', message='needs --config.data.path'),
      dict(name='x', source='npz', message='needs --config.data.path'))
  def test_bad_config(self, message, **kwargs):
    with self.assertRaisesRegex(data.DataError, message):
      data.load(_config(**kwargs))

  def test_error_lists_choices(self):
    with self.assertRaisesRegex(data.DataError, 'svhn_cropped'):
      data.load(_config(name='imagenet'))
    with self.assertRaisesRegex(data.DataError, "'npz'"):
      data.load(_config(source='web'))

  def test_idx_and_auto(self):
    directory = self.tmpdir()
    _write_idx(directory)
    for source in ('idx', 'auto'):
      ds = data.load(_config(name='fashion_mnist', source=source,
                             path=directory))
      self.assertEqual(ds.train_images.shape, (6, 5, 4, 1))
    ds = data.load(_config(name='mnist', source='idx', path=directory))
    self.assertEqual(ds.name, 'mnist')

  def test_auto_falls_back_to_tfds(self):
    empty = self.tmpdir()
    with tfds.testing.mock_data(num_examples=3):
      ds = data.load(_config(name='fashion_mnist', path=empty))
      self.assertEqual(ds.train_images.shape, (3, 28, 28, 1))
      ds = data.load(_config(name='cifar10', path=empty))
      self.assertEqual(ds.train_images.shape, (3, 32, 32, 3))
    with self.assertRaisesRegex(data.DataError, 'download=True'):
      data.load(_config(name='svhn_cropped', tfds_data_dir=empty))

  def test_cifar_and_npz_sources(self):
    directory = self.tmpdir()
    _write_cifar(directory, 'cifar100')
    ds = data.load(_config(name='cifar100', source='cifar', path=directory))
    self.assertEqual(ds.num_classes, 100)
    path = os.path.join(directory, 'mine.npz')
    np.savez(path, train_images=np.zeros((2, 3, 3), np.uint8),
             train_labels=[0, 1], test_images=np.zeros((1, 3, 3), np.uint8),
             test_labels=[1])
    ds = data.load(_config(name='mine', source='npz', path=path))
    self.assertEqual((ds.name, ds.num_classes), ('mine', 2))
    # The suffix implies source npz; the name defaults to the file's.
    for source in ('auto', 'embedded'):
      ds = data.load(_config(name=data.EMBEDDED_NAME, source=source,
                             path=path))
      self.assertEqual((ds.name, ds.num_classes), ('mine', 2))
    ds = data.load(_config(name='custom', path=path))
    self.assertEqual(ds.name, 'custom')


@absltest.skipUnless(
    os.path.isfile(os.path.join(data.DEBIAN_FASHION_MNIST_DIR,
                                't10k-labels-idx1-ubyte.gz')),
    'apt-get install dataset-fashion-mnist to run this test')
class DebianFashionMnistTest(TestCase):

  def test_full_set_and_embedded_provenance(self):
    ds = data.load(_config(name='fashion_mnist'))
    self.assertEqual(ds.train_images.shape, (60000, 28, 28, 1))
    self.assertEqual(ds.test_images.shape, (10000, 28, 28, 1))
    # The embedded subset is exactly the rows its source indices name.
    path = os.path.join(os.path.dirname(data.__file__), 'datasets',
                        'fashion_mnist_subset.npz')
    with np.load(path) as z:
      for split in ('train', 'test'):
        indices = z[f'{split}_source_indices']
        np.testing.assert_array_equal(
            getattr(ds, f'{split}_images')[indices, ..., 0],
            z[f'{split}_images'])
        np.testing.assert_array_equal(
            getattr(ds, f'{split}_labels')[indices], z[f'{split}_labels'])


if __name__ == '__main__':
  absltest.main()
