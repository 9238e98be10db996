"""Untrusted data files: no code runs from CIFAR pickles, labels never wrap.

Every failure must be a one-line `data.DataError`, never a traceback from
pickle, numpy or zipfile.
"""

import builtins
import os
import pickle
import pickletools
import shutil
import subprocess
import tempfile

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from mu_jax import data


class _OsSystem:

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


class _BuiltinsExec(_OsSystem):

  def __reduce__(self):
    return builtins.exec, (f'open({self.marker!r}, "w").close()',)


class _SubprocessCall(_OsSystem):

  def __reduce__(self):
    return subprocess.call, (['touch', self.marker],)


class _Eval(_OsSystem):

  def __reduce__(self):
    return builtins.eval, (f'open({self.marker!r}, "w").close()',)


def _rows(n: int) -> np.ndarray:
  return np.arange(n * 3072, dtype=np.int64).astype(np.uint8).reshape(n, 3072)


def _globals(payload: bytes) -> set[str]:
  """The module.name globals a pickle refers to (protocols 0-3)."""
  return {arg.replace(' ', '.') for op, arg, _ in pickletools.genops(payload)
          if op.name == 'GLOBAL'}


class TestCase(parameterized.TestCase):

  def tmpdir(self) -> str:
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path)
    return path

  def assert_one_line_error(self, regex, fn, *args):
    with self.assertRaisesRegex(data.DataError, regex) as cm:
      fn(*args)
    self.assertNotIn('\n', str(cm.exception))
    return str(cm.exception)


class CifarPickleTest(TestCase):

  def _write_cifar100(self, directory, train, test=None, protocol=None):
    for name, batch in (('train', train), ('test', test or train)):
      with open(os.path.join(directory, name), 'wb') as f:
        if isinstance(batch, bytes):
          f.write(batch)
        else:
          pickle.dump(batch, f, protocol=protocol)

  @parameterized.named_parameters(
      ('os_system', _OsSystem), ('builtins_exec', _BuiltinsExec),
      ('subprocess_call', _SubprocessCall), ('builtins_eval', _Eval))
  def test_malicious_batch_runs_nothing(self, payload_cls):
    root = self.tmpdir()
    directory = os.path.join(root, 'cifar-10-batches-py')
    os.makedirs(directory)
    marker = os.path.join(root, 'pwned')
    good = {b'data': _rows(2), b'labels': [0, 1]}
    for i in range(1, 6):
      with open(os.path.join(directory, f'data_batch_{i}'), 'wb') as f:
        pickle.dump(good, f)
    with open(os.path.join(directory, 'test_batch'), 'wb') as f:
      pickle.dump(good, f)
    # The payload hides inside an otherwise well-formed batch.
    path = os.path.join(directory, 'data_batch_1')
    with open(path, 'wb') as f:
      pickle.dump({b'data': _rows(2), b'labels': [0, 1],
                   b'batch_label': payload_cls(marker)}, f)
    refused = {_OsSystem: 'system', _BuiltinsExec: 'builtins.exec',
               _SubprocessCall: 'subprocess.call',
               _Eval: 'builtins.eval'}[payload_cls]
    message = self.assert_one_line_error(
        'refusing to load CIFAR batch', data.load_cifar_pickle, root,
        'cifar10')
    self.assertIn(path, message)
    self.assertIn(refused, message)
    self.assertFalse(os.path.exists(marker))

  def test_malicious_payload_alone_and_via_data_load(self):
    directory = self.tmpdir()
    marker = os.path.join(directory, 'pwned')
    self._write_cifar100(directory, _OsSystem(marker))
    config = {'name': 'cifar100', 'source': 'cifar', 'path': directory}
    self.assert_one_line_error('refusing', data.load, config)
    self.assertFalse(os.path.exists(marker))

  @parameterized.parameters(
      ('numpy', 'load'), ('numpy.lib.npyio', 'load'), ('posix', 'system'),
      ('builtins', 'getattr'), ('copyreg', '_reconstructor'),
      ('_codecs', 'decode'))
  def test_only_the_needed_globals_are_admitted(self, module, name):
    directory = self.tmpdir()
    # Protocol 0 by hand: GLOBAL module name, empty tuple, REDUCE, STOP.
    payload = f'c{module}\n{name}\n(tR.'.encode()
    self._write_cifar100(directory, payload)
    message = self.assert_one_line_error(
        'refusing', data.load_cifar_pickle, directory, 'cifar100')
    self.assertIn(f'{module}.{name}', message)

  def test_codecs_encode_is_latin1_only(self):
    directory = self.tmpdir()
    # _codecs.encode('x', 'rot13') is not how pickle stores bytes.
    payload = b'c_codecs\nencode\n(Vx\nVrot13\ntR.'
    self._write_cifar100(directory, payload)
    self.assert_one_line_error('cannot read CIFAR batch',
                               data.load_cifar_pickle, directory, 'cifar100')

  @parameterized.parameters(0, 1, 2, 3, 4, 5)
  def test_real_format_loads_with_every_protocol(self, protocol):
    directory = self.tmpdir()
    batch = {b'batch_label': b'training batch 1 of 1', b'data': _rows(4),
             b'fine_labels': [0, 50, 99, 3], b'coarse_labels': [1, 2, 3, 4],
             b'filenames': [b'a.png', b'b.png', b'c.png', b'd.png']}
    self._write_cifar100(directory, batch, protocol=protocol)
    ds = data.load_cifar_pickle(directory, 'cifar100')
    np.testing.assert_array_equal(ds.train_labels, [0, 50, 99, 3])
    self.assertEqual(ds.train_images.shape, (4, 32, 32, 3))
    self.assertEqual(ds.train_images[0, 0, 0].tolist(), [0, 0, 0])
    np.testing.assert_array_equal(
        ds.train_images[0].transpose(2, 0, 1).reshape(-1), _rows(4)[0])

  def test_numpy1_module_names_and_numpy_scalars(self):
    """Files pickled under numpy 1 name numpy.core.multiarray."""
    directory = self.tmpdir()
    batch = {b'data': _rows(2), b'fine_labels': [np.int64(7), np.int64(8)]}
    payload = pickle.dumps(batch, protocol=2)
    self.assertIn('numpy._core.multiarray._reconstruct', _globals(payload))
    payload = payload.replace(b'numpy._core.multiarray',
                              b'numpy.core.multiarray')
    self.assertIn('numpy.core.multiarray.scalar', _globals(payload))
    self._write_cifar100(directory, payload)
    ds = data.load_cifar_pickle(directory, 'cifar100')
    np.testing.assert_array_equal(ds.train_labels, [7, 8])

  def test_str_keys(self):
    directory = self.tmpdir()
    self._write_cifar100(directory, {'data': _rows(2), 'fine_labels': [1, 2]})
    ds = data.load_cifar_pickle(directory, 'cifar100')
    np.testing.assert_array_equal(ds.test_labels, [1, 2])

  @parameterized.named_parameters(
      ('not_a_dict', [1, 2, 3], 'not a CIFAR python batch'),
      ('truncated', pickle.dumps({b'data': _rows(2)})[:50], 'cannot read'),
      ('garbage', b'\x80\x05garbage', 'cannot read'),
      ('empty', b'', 'cannot read'),
      ('object_labels', {b'data': _rows(2), b'fine_labels': ['a', 'b']},
       'integers'),
      ('huge_label', {b'data': _rows(2), b'fine_labels': [2**40, 1]},
       r'\[0, 100\)'),
      ('negative_label', {b'data': _rows(2), b'fine_labels': [-1, 1]},
       r'\[0, 100\)'),
  )
  def test_bad_batches(self, batch, regex):
    directory = self.tmpdir()
    if isinstance(batch, bytes):
      self._write_cifar100(directory, batch)
    else:
      self._write_cifar100(directory, batch, protocol=2)
    self.assert_one_line_error(regex, data.load_cifar_pickle, directory,
                               'cifar100')


class LabelTest(TestCase):

  def _save(self, **arrays):
    path = os.path.join(self.tmpdir(), 'mine.npz')
    rng = np.random.default_rng(0)
    defaults = dict(train_images=rng.integers(0, 256, (8, 6, 6), np.uint8),
                    train_labels=np.arange(8) % 3,
                    test_images=rng.integers(0, 256, (2, 6, 6), np.uint8),
                    test_labels=np.array([0, 2]))
    np.savez(path, **{**defaults, **arrays})
    return path

  @parameterized.named_parameters(
      ('int64_2_pow_40', np.array([0, 1, 2, 2**40] * 2, np.int64)),
      ('int64_2_pow_32', np.array([0, 1, 2, 2**32] * 2, np.int64)),
      ('uint64_huge', np.array([0, 1, 2, 2**63 + 1] * 2, np.uint64)),
      ('int64_2_pow_31', np.array([0, 1, 2, 2**31] * 2, np.int64)),
      ('negative', np.array([0, 1, 2, -1] * 2, np.int64)),
      ('int8_negative', np.array([0, 1, 2, -128] * 2, np.int8)),
  )
  def test_out_of_range_labels_are_refused_not_wrapped(self, labels):
    path = self._save(train_labels=labels)
    self.assert_one_line_error('train labels must be class indices',
                               data.load_npz, path)
    # Also when num_classes is stored: 2**40 is not class 0 of 10.
    path = self._save(train_labels=labels, num_classes=10)
    self.assert_one_line_error(r'\[0, 10\)', data.load_npz, path)

  def test_labels_beyond_stored_num_classes(self):
    path = self._save(test_labels=np.array([0, 3]), num_classes=3)
    self.assert_one_line_error(r'test labels .*\[0, 3\).*got 0\.\.3',
                               data.load_npz, path)

  @parameterized.named_parameters(
      ('float', np.zeros(8, np.float32)), ('bool', np.ones(8, bool)),
      ('one_hot', np.eye(8, 3, dtype=np.int64)))
  def test_non_index_labels(self, labels):
    self.assert_one_line_error('labels must be', data.load_npz,
                               self._save(train_labels=labels))

  def test_fewer_than_two_classes(self):
    path = self._save(train_labels=np.zeros(8, np.int64),
                      test_labels=np.zeros(2, np.int64))
    self.assert_one_line_error('at least 2', data.load_npz, path)
    for bad in (1, 0, -3, 2**40):
      path = self._save(num_classes=bad)
      self.assert_one_line_error('num_classes must be in', data.load_npz,
                                 path)

  @parameterized.named_parameters(
      ('float', np.float32(10)), ('vector', np.array([10, 10])),
      ('string', np.array('ten')))
  def test_bad_num_classes_key(self, value):
    self.assert_one_line_error('num_classes must be one integer',
                               data.load_npz, self._save(num_classes=value))

  def test_two_classes_and_wide_dtypes_are_fine(self):
    path = self._save(train_labels=np.arange(8, dtype=np.uint64) % 2,
                      test_labels=np.array([1, 0], np.int16))
    ds = data.load_npz(path)
    self.assertEqual(ds.num_classes, 2)
    self.assertEqual(ds.train_labels.dtype, np.int32)

  def test_dataset_needs_two_classes(self):
    with self.assertRaisesRegex(data.DataError, 'at least 2 classes'):
      data.Dataset('x', np.zeros((2, 1, 1, 1), np.uint8),
                   np.zeros(2, np.int32), np.zeros((1, 1, 1, 1), np.uint8),
                   np.zeros(1, np.int32), 1, (0.5,), (0.25,))


class CorruptNpzTest(TestCase):

  def _good(self, compressed=False):
    path = os.path.join(self.tmpdir(), 'mine.npz')
    rng = np.random.default_rng(0)
    (np.savez_compressed if compressed else np.savez)(
        path, train_images=rng.integers(0, 256, (64, 8, 8), np.uint8),
        train_labels=np.arange(64) % 4,
        test_images=rng.integers(0, 256, (16, 8, 8), np.uint8),
        test_labels=np.arange(16) % 4)
    data.load_npz(path)  # Sound before the damage.
    return path

  @parameterized.product(keep=[0.1, 0.5, 0.9, 0.99], compressed=[False, True])
  def test_truncated(self, keep, compressed):
    path = self._good(compressed)
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
      f.truncate(int(size * keep))
    self.assert_one_line_error('cannot read npz file .*truncated or corrupt',
                               data.load_npz, path)

  @parameterized.parameters(False, True)
  def test_flipped_bytes(self, compressed):
    path = self._good(compressed)
    with open(path, 'r+b') as f:
      raw = bytearray(f.read())
      middle = len(raw) // 3
      raw[middle:middle + 64] = bytes(b ^ 0xFF for b in raw[middle:middle + 64])
      f.seek(0)
      f.write(raw)
    self.assert_one_line_error('cannot read npz file', data.load_npz, path)

  def test_not_a_zip_and_npy_and_pickled(self):
    directory = self.tmpdir()
    path = os.path.join(directory, 'text.npz')
    with open(path, 'w') as f:
      f.write('hello')
    self.assert_one_line_error('cannot read npz file', data.load_npz, path)
    path = os.path.join(directory, 'single.npy')
    np.save(path, np.zeros(3))
    self.assert_one_line_error('not an .npz archive', data.load_npz, path)
    path = os.path.join(directory, 'objects.npz')
    np.savez(path, train_images=np.array([None, 1], dtype=object),
             train_labels=[0], test_images=[0], test_labels=[0])
    self.assert_one_line_error('cannot read npz file', data.load_npz, path)

  def test_string_images(self):
    path = os.path.join(self.tmpdir(), 'mine.npz')
    np.savez(path, train_images=np.full((2, 2, 2), 'a'),
             train_labels=[0, 1], test_images=np.full((2, 2, 2), 'a'),
             test_labels=[0, 1])
    self.assert_one_line_error('uint8 pixels', data.load_npz, path)


if __name__ == '__main__':
  absltest.main()
