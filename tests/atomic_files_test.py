"""mu_jax/atomic_files.py: files written whole, content keys, keyed store."""

import errno
import hashlib
import json
import os
import stat
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from mu_jax import atomic_files


class WriteTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())

  def test_writes_text_json_and_npz_into_new_folders(self):
    text = atomic_files.write_text(f'{self.dir}/a/b/t.md', 'héllo\n')
    with open(text, encoding='utf-8') as f:
      self.assertEqual(f.read(), 'héllo\n')
    path = atomic_files.write_json(f'{self.dir}/j.json', {'x': (1, 2)})
    with open(path) as f:
      self.assertEqual(f.read(), '{\n  "x": [\n    1,\n    2\n  ]\n}\n')
    path = atomic_files.write_npz(f'{self.dir}/n.npz', {'a': np.arange(3)},
                                  compressed=True)
    with np.load(path) as saved:
      np.testing.assert_array_equal(saved['a'], [0, 1, 2])
    self.assertEqual(sorted(os.listdir(self.dir)), ['a', 'j.json', 'n.npz'])

  def test_new_files_are_as_readable_as_open_makes_them(self):
    path = atomic_files.write_text(f'{self.dir}/t', 'x')
    with open(f'{self.dir}/plain', 'w'):
      pass
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
    self.assertEqual(mode(path), mode(f'{self.dir}/plain'))

  def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(self):
    path = atomic_files.write_text(f'{self.dir}/t', 'old')

    def fail(f):
      f.write(b'half')
      raise OSError(errno.ENOSPC, 'No space left on device')

    with self.assertRaises(OSError):
      atomic_files.write(path, fail)
    full = OSError(errno.ENOSPC, 'No space left on device')
    with mock.patch.object(os, 'replace', side_effect=full):
      with self.assertRaises(OSError):
        atomic_files.write_text(path, 'new')
    with open(path) as f:
      self.assertEqual(f.read(), 'old')
    self.assertEqual(os.listdir(self.dir), ['t'])

  def test_a_payload_that_is_not_json_touches_nothing(self):
    with self.assertRaises(TypeError):
      atomic_files.write_json(f'{self.dir}/sub/j.json', {'x': object()})
    self.assertEqual(os.listdir(self.dir), [])


class ContentKeyTest(absltest.TestCase):

  def test_is_the_sha256_of_sorted_json(self):
    # The encoding existing caches were keyed with; it must not change.
    expected = hashlib.sha256(
        json.dumps({'a': [1, 2], 'b': 1}, sort_keys=True).encode()).hexdigest()
    self.assertEqual(atomic_files.content_key({'b': 1, 'a': (1, 2)}),
                     expected)
    self.assertEqual(atomic_files.content_key({'a': 1}, 8),
                     atomic_files.content_key({'a': 1})[:8])
    self.assertNotEqual(atomic_files.content_key({'a': 1}),
                        atomic_files.content_key({'a': 2}))


class KeyedStoreTest(absltest.TestCase):

  def test_round_trip_and_misses(self):
    directory = os.path.join(
        self.enterContext(tempfile.TemporaryDirectory()), 'trials')
    store = atomic_files.KeyedStore(directory)
    inputs = {'method': 'salun', 'lr': 0.1}
    self.assertIsNone(store.get(inputs))
    path = store.put(inputs, {'status': 'ok'})
    self.assertEqual(store.get({'lr': 0.1, 'method': 'salun'}),
                     {'status': 'ok'})
    self.assertIsNone(store.get({'method': 'salun', 'lr': 0.2}))
    self.assertEqual(os.path.basename(path),
                     atomic_files.content_key(inputs, 20) + '.json')
    with open(path) as f:
      self.assertEqual(json.load(f)['key'], inputs)

  def test_writes_with_the_writer_it_is_given(self):
    written = []
    store = atomic_files.KeyedStore(
        self.enterContext(tempfile.TemporaryDirectory()),
        writer=lambda path, payload: written.append(payload))
    store.put({'a': 1}, 2)
    self.assertEqual(written, [{'key': {'a': 1}, 'result': 2}])


if __name__ == '__main__':
  absltest.main()
