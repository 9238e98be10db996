"""Tests for mu_jax.splits: invariants, determinism, errors and saved files."""

import dataclasses
import os
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import hypothesis
from hypothesis import strategies as st
import numpy as np

from mu_jax import splits

_FAST = hypothesis.settings(max_examples=50, deadline=None)


def _labels(n, num_classes, seed):
  """Labels in which every class occurs (if n >= num_classes)."""
  labels = np.arange(n) % num_classes
  return np.random.default_rng(seed).permutation(labels)


def _random(n=100, m=20, num_classes=10, **kwargs):
  kwargs = {'mode': 'random', 'forget_num': 10, 'seed': 0, **kwargs}
  return splits.make_split(_labels(n, num_classes, 1),
                           _labels(m, num_classes, 2), num_classes, **kwargs)


def _class_wise(n=100, m=20, num_classes=10, **kwargs):
  kwargs = {'mode': 'class_wise', 'forget_classes': (3,), 'seed': 0, **kwargs}
  return splits.make_split(_labels(n, num_classes, 1),
                           _labels(m, num_classes, 2), num_classes, **kwargs)


class InvariantsTest(parameterized.TestCase):

  def assert_partition(self, first, second, size):
    for array in (first, second):
      self.assertEqual(array.dtype, np.int64)
      self.assertEqual(array.ndim, 1)
      np.testing.assert_array_equal(array, np.unique(array))  # Sorted, unique.
    self.assertEmpty(np.intersect1d(first, second))
    np.testing.assert_array_equal(np.union1d(first, second), np.arange(size))

  @_FAST
  @hypothesis.given(
      n=st.integers(2, 3000),
      m=st.integers(1, 50),
      seed=st.integers(0, 2**32 - 1),
      data=st.data(),
  )
  def test_random_split(self, n, m, seed, data):
    k = data.draw(st.integers(1, n - 1), label='forget_num')
    train, test = _labels(n, 5, seed), _labels(m, 5, seed + 1)
    split = splits.make_split(train, test, 5, mode='random', forget_num=k,
                              seed=seed)
    self.assertEqual(split.forget.size, k)
    self.assert_partition(split.forget, split.retain, n)
    np.testing.assert_array_equal(split.test, np.arange(m))
    self.assertEmpty(split.forget_test)
    self.assertEqual(split.forget_classes, ())
    self.assertEqual(split.name, f'random{k}')
    # The documented draw: the first k of a Generator permutation.
    expected = np.sort(np.random.default_rng(seed).permutation(n)[:k])
    np.testing.assert_array_equal(split.forget, expected)
    again = splits.make_split(train, test, 5, mode='random', forget_num=k,
                              seed=seed)
    self.assertEqual(again.digest(), split.digest())
    self.assertEqual(again, split)

  @_FAST
  @hypothesis.given(n=st.integers(2, 3000), fraction=st.floats(0.001, 0.999))
  def test_random_fraction_size(self, n, fraction):
    k = round(fraction * n)
    hypothesis.assume(0 < k < n)
    split = splits.make_split(np.zeros(n, np.int64), [0], 1, mode='random',
                              forget_fraction=fraction)
    self.assertEqual(split.forget.size, k)
    self.assert_partition(split.forget, split.retain, n)

  def test_forget_num_takes_precedence_over_fraction(self):
    split = _random(forget_num=7, forget_fraction=0.5)
    self.assertEqual(split.forget.size, 7)

  @_FAST
  @hypothesis.given(n=st.integers(1000, 5000), seed=st.integers(0, 2**31))
  def test_different_seeds_differ(self, n, seed):
    labels = np.zeros(n, np.int64)
    a = splits.make_split(labels, [0], 1, mode='random', forget_num=n // 10,
                          seed=seed)
    b = splits.make_split(labels, [0], 1, mode='random', forget_num=n // 10,
                          seed=seed + 1)
    self.assertFalse(np.array_equal(a.forget, b.forget))
    self.assertNotEqual(a.digest(), b.digest())

  @_FAST
  @hypothesis.given(
      num_classes=st.integers(2, 12),
      seed=st.integers(0, 2**32 - 1),
      data=st.data(),
  )
  def test_class_wise_split(self, num_classes, seed, data):
    n = data.draw(st.integers(num_classes, 500), label='n')
    m = data.draw(st.integers(num_classes, 200), label='m')
    classes = data.draw(
        st.lists(st.integers(0, num_classes - 1), min_size=1,
                 max_size=num_classes - 1, unique=True), label='classes')
    train, test = _labels(n, num_classes, seed), _labels(m, num_classes, seed)
    mode = data.draw(st.sampled_from(['class_wise', 'classwise']))
    split = splits.make_split(train, test, num_classes, mode=mode,
                              forget_classes=classes, seed=seed)
    self.assertEqual(split.mode, 'class_wise')
    self.assertEqual(split.forget_classes, tuple(sorted(classes)))
    self.assertEqual(split.name,
                     'class' + '-'.join(map(str, sorted(classes))))
    self.assert_partition(split.forget, split.retain, n)
    self.assert_partition(split.test, split.forget_test, m)
    self.assertTrue(np.isin(train[split.forget], classes).all())
    self.assertFalse(np.isin(train[split.retain], classes).any())
    self.assertTrue(np.isin(test[split.forget_test], classes).all())
    self.assertFalse(np.isin(test[split.test], classes).any())
    self.assertEqual(split.forget.size, np.isin(train, classes).sum())

  def test_class_wise_name_is_sorted(self):
    self.assertEqual(_class_wise(forget_classes=(7, 1, 3)).name, 'class1-3-7')
    self.assertEqual(_class_wise(forget_classes=0).name, 'class0')

  def test_full_size_indices_regression_int16(self):
    # The original drew from np.arange(50000, dtype=np.int16), which wraps
    # above 32767: images were shared by forget and retain, others unused.
    n = 50000
    split = splits.make_split(np.zeros(n, np.int64), [0], 1, mode='random',
                              forget_num=5000, seed=123)
    self.assertGreaterEqual(split.forget.max(), 32768)
    self.assertGreaterEqual(split.retain.max(), 32768)
    self.assertGreater(np.sum(split.forget >= 32768), 1000)
    self.assertEmpty(np.intersect1d(split.forget, split.retain))
    np.testing.assert_array_equal(
        np.union1d(split.forget, split.retain), np.arange(n))
    self.assertEqual(split.forget.dtype, np.int64)

  def test_arrays_are_read_only(self):
    split = _random()
    with self.assertRaises(ValueError):
      split.forget[0] = 1
    with self.assertRaises(dataclasses.FrozenInstanceError):
      split.seed = 3  # pytype: disable=annotation-type-mismatch


class ValidationSetTest(parameterized.TestCase):

  @_FAST
  @hypothesis.given(
      m=st.integers(10, 400),
      fraction=st.floats(0.0, 0.9),
      class_wise=st.booleans(),
      seed=st.integers(0, 2**32 - 1),
  )
  def test_val_is_a_stratified_part_of_the_kept_test_set(
      self, m, fraction, class_wise, seed):
    test_labels = _labels(m, 5, seed + 1)
    kwargs = (dict(mode='class_wise', forget_classes=(1, 3)) if class_wise
              else dict(mode='random', forget_num=7))
    try:
      split = splits.make_split(_labels(60, 5, seed), test_labels, 5,
                                seed=seed, val_fraction=fraction, **kwargs)
    except splits.SplitError as e:  # Only when nothing is left to test on.
      self.assertIn('leaves no test examples', str(e))
      return
    # test, val and forget_test partition the test set.
    union = np.concatenate([split.test, split.val, split.forget_test])
    np.testing.assert_array_equal(np.sort(union), np.arange(m))
    self.assertEmpty(np.intersect1d(split.val, split.test))
    self.assertFalse(np.isin(test_labels[split.val],
                             split.forget_classes).any())
    for label in set(test_labels) - set(split.forget_classes):
      in_class = np.sum(test_labels == label)
      self.assertEqual(np.sum(test_labels[split.val] == label),
                       round(fraction * in_class))

  def test_forget_set_does_not_depend_on_the_validation_set(self):
    without = _random(val_fraction=0.0)
    with_val = _random(val_fraction=0.5)
    np.testing.assert_array_equal(without.forget, with_val.forget)
    self.assertEqual(without.train_digest(), with_val.train_digest())
    self.assertNotEqual(without.digest(), with_val.digest())
    self.assertEqual(with_val.val.size, 10)
    self.assertEqual(with_val.test.size, 10)
    # The draw is seeded: the same seed, the same validation set.
    np.testing.assert_array_equal(_random(val_fraction=0.5).val, with_val.val)
    self.assertFalse(np.array_equal(_random(val_fraction=0.5, seed=1).val,
                                    with_val.val))

  def test_bad_fraction(self):
    for fraction in (-0.1, 1.0):
      with self.assertRaisesRegex(splits.SplitError, 'val_fraction'):
        _random(val_fraction=fraction)

  def test_overlapping_val_is_refused(self):
    split = _random(val_fraction=0.5)
    with self.assertRaisesRegex(splits.SplitError, 'disjoint'):
      dataclasses.replace(split, val=split.test[:1].tolist() + split.val[1:]
                          .tolist())


class ErrorsTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('unknown_mode', dict(mode='instance'), 'random'),
      ('no_size', dict(forget_num=0), 'forget_num > 0'),
      ('negative_num', dict(forget_num=-5), 'forget_num > 0'),
      ('num_equals_n', dict(forget_num=100), 'non-empty retain'),
      ('num_above_n', dict(forget_num=101), 'non-empty retain'),
      ('fraction_one', dict(forget_num=0, forget_fraction=1.0), r'\(0, 1\)'),
      ('fraction_big', dict(forget_num=0, forget_fraction=1.5), r'\(0, 1\)'),
      ('fraction_negative', dict(forget_num=0, forget_fraction=-0.1),
       r'\(0, 1\)'),
      ('fraction_nan', dict(forget_num=0, forget_fraction=float('nan')),
       r'\(0, 1\)'),
      ('fraction_rounds_to_zero', dict(forget_num=0, forget_fraction=0.001),
       'forgets nothing'),
      ('fraction_rounds_to_n', dict(forget_num=0, forget_fraction=0.999),
       'non-empty retain'),
      ('negative_seed', dict(seed=-1), 'non-negative'),
  )
  def test_random_errors(self, kwargs, message):
    with self.assertRaisesRegex(splits.SplitError, message):
      _random(**kwargs)

  @parameterized.named_parameters(
      ('no_classes', dict(forget_classes=()), 'needs forget_classes'),
      ('negative_class', dict(forget_classes=(-1,)), r'outside \[0, 10\)'),
      ('class_too_big', dict(forget_classes=(10,)), r'outside \[0, 10\)'),
      ('duplicate', dict(forget_classes=(2, 2)), 'duplicates'),
      ('all_classes', dict(forget_classes=tuple(range(10))), 'all 10'),
      ('float_class', dict(forget_classes=(1.5,)), 'integer class ids'),
  )
  def test_class_wise_errors(self, kwargs, message):
    with self.assertRaisesRegex(splits.SplitError, message):
      _class_wise(**kwargs)

  def test_class_absent_from_train_is_empty_forget(self):
    with self.assertRaisesRegex(splits.SplitError, 'forget split is empty'):
      splits.make_split([0, 1, 1], [0, 1], 3, mode='class_wise',
                        forget_classes=(2,))

  def test_only_forgotten_class_in_train_is_empty_retain(self):
    with self.assertRaisesRegex(splits.SplitError, 'retain split is empty'):
      splits.make_split([1, 1, 1], [0, 1], 3, mode='class_wise',
                        forget_classes=(1,))

  def test_only_forgotten_class_in_test_is_empty_test(self):
    with self.assertRaisesRegex(splits.SplitError, 'test split is empty'):
      splits.make_split([0, 1, 1], [1, 1], 3, mode='class_wise',
                        forget_classes=(1,))

  def test_empty_test_set(self):
    with self.assertRaisesRegex(splits.SplitError, 'test_labels is empty'):
      splits.make_split([0, 1, 1], [], 3, mode='random', forget_num=1)

  def test_label_out_of_range(self):
    with self.assertRaisesRegex(splits.SplitError, 'num_classes'):
      splits.make_split([0, 5], [0], 3, mode='random', forget_num=1)

  def test_float_labels(self):
    with self.assertRaisesRegex(splits.SplitError, 'integer array'):
      splits.make_split([0.0, 1.0], [0], 3, mode='random', forget_num=1)

  def test_a_split_needs_a_test_or_a_validation_set(self):
    # The library face (mu_jax/api.py) unlearns with a validation set only.
    split = splits.Split(mode='random', seed=0, forget=[0], retain=[1],
                         test=[], forget_test=[], forget_classes=(), val=[0])
    self.assertEmpty(split.test)
    with self.assertRaisesRegex(splits.SplitError, 'are empty'):
      splits.Split(mode='random', seed=0, forget=[0], retain=[1], test=[],
                   forget_test=[], forget_classes=(), val=[])

  def test_errors_are_value_errors(self):
    self.assertTrue(issubclass(splits.SplitError, ValueError))

  @parameterized.named_parameters(
      ('overlap', dict(forget=[0, 1], retain=[1, 2]), 'disjoint'),
      ('gap', dict(forget=[0], retain=[2]), 'cover'),
      ('negative', dict(forget=[-1], retain=[0]), 'cover'),
      ('unsorted', dict(forget=[1, 0], retain=[2]), 'sorted'),
      ('empty_forget', dict(forget=[], retain=[0, 1]), 'non-empty'),
      ('float', dict(forget=[0.0], retain=[1]), 'integer'),
  )
  def test_split_checks_invariants(self, kwargs, message):
    with self.assertRaisesRegex(splits.SplitError, message):
      splits.Split(mode='random', seed=0, test=[0], forget_test=[],
                   forget_classes=(), **kwargs)


class SaveLoadTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = self.enterContext(tempfile.TemporaryDirectory())

  @parameterized.parameters(_random, _class_wise)
  def test_round_trip(self, make):
    split = (make(forget_classes=(1, 4), val_fraction=0.3)
             if make is _class_wise else make(val_fraction=0.3))
    self.assertNotEmpty(split.val)
    path = splits.save_split(split, os.path.join(self.directory, 'new'), 'fp')
    self.assertEqual(os.path.basename(path), f'split_{split.name}_s0.npz')
    # Only the final file: the temporary file was renamed, not left behind.
    self.assertEqual(os.listdir(os.path.dirname(path)),
                     [os.path.basename(path)])
    loaded = splits.load_split(path, 'fp')
    self.assertEqual(loaded, split)
    self.assertEqual(loaded.digest(), split.digest())
    self.assertEqual(loaded.mode, split.mode)
    self.assertEqual(loaded.seed, split.seed)
    self.assertEqual(loaded.forget_classes, split.forget_classes)
    for name in ('forget', 'retain', 'test', 'forget_test', 'val'):
      np.testing.assert_array_equal(getattr(loaded, name), getattr(split, name))
      self.assertEqual(getattr(loaded, name).dtype, np.int64)

  def test_a_saved_split_without_test_is_refused(self):
    split = splits.Split(mode='random', seed=0, forget=[0], retain=[1],
                         test=[], forget_test=[], forget_classes=(), val=[0])
    path = splits.save_split(split, self.directory, 'fp')
    with self.assertRaisesRegex(splits.SplitError, 'empty test split'):
      splits.load_split(path, 'fp')

  def test_fingerprint_mismatch(self):
    path = splits.save_split(_random(), self.directory, 'cifar10-train')
    with self.assertRaisesRegex(splits.SplitError, 'different dataset'):
      splits.load_split(path, 'cifar100-train')

  def test_random_bytes(self):
    path = os.path.join(self.directory, 'split.npz')
    with open(path, 'wb') as f:
      f.write(np.random.default_rng(0).bytes(1000))
    with self.assertRaisesRegex(splits.SplitError, 'delete it'):
      splits.load_split(path, 'fp')

  @parameterized.parameters(0.1, 0.5, 0.9)
  def test_truncated_file(self, keep):
    path = splits.save_split(_random(), self.directory, 'fp')
    with open(path, 'rb') as f:
      data = f.read()
    with open(path, 'wb') as f:
      f.write(data[:int(len(data) * keep)])
    with self.assertRaisesRegex(splits.SplitError, 'delete it'):
      splits.load_split(path, 'fp')

  def test_flipped_byte(self):
    path = splits.save_split(_random(), self.directory, 'fp')
    with open(path, 'rb') as f:
      data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    with open(path, 'wb') as f:
      f.write(bytes(data))
    with self.assertRaisesRegex(splits.SplitError, 'delete it'):
      splits.load_split(path, 'fp')

  def test_npy_file(self):
    path = os.path.join(self.directory, 'split.npz')
    with open(path, 'wb') as f:
      np.save(f, np.arange(3))
    with self.assertRaisesRegex(splits.SplitError, 'Cannot read'):
      splits.load_split(path, 'fp')

  def test_missing_file(self):
    with self.assertRaisesRegex(splits.SplitError, 'Cannot read'):
      splits.load_split(os.path.join(self.directory, 'nope.npz'), 'fp')

  def _edit(self, path, **changes):
    with np.load(path) as data:
      fields = dict(data)
    fields.update(changes)
    np.savez(path, **fields)

  @parameterized.named_parameters(
      ('overlap', dict(forget=np.array([0, 1, 2]),
                       retain=np.arange(2, 100)), 'invalid split.*disjoint'),
      ('out_of_range', dict(forget=np.array([0, 1, 100]),
                            retain=np.arange(2, 99)), 'invalid split.*cover'),
      ('not_covering', dict(forget=np.array([0, 1]),
                            retain=np.arange(3, 100)), 'invalid split.*cover'),
      ('test_overlap', dict(test=np.arange(20),
                            forget_test=np.array([5])), 'invalid split'),
      ('bad_mode', dict(mode=np.str_('nope')), 'invalid split'),
      ('missing_key', dict(), 'lacks'),
      ('version', dict(format_version=np.int64(99)), 'format version'),
      ('no_validation_set', dict(format_version=np.int64(1)),
       'without a validation set.*same forget set'),
  )
  def test_hand_edited_file_refused(self, changes, message):
    path = splits.save_split(_random(), self.directory, 'fp')
    if changes:
      self._edit(path, **changes)
    else:
      with np.load(path) as data:
        fields = {k: v for k, v in data.items() if k != 'retain'}
      np.savez(path, **fields)
    with self.assertRaisesRegex(splits.SplitError, message):
      splits.load_split(path, 'fp')


class GetSplitTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = self.enterContext(tempfile.TemporaryDirectory())
    self.train, self.test = _labels(200, 10, 1), _labels(50, 10, 2)

  def _get(self, fingerprint='fp', train=None, **kwargs):
    kwargs = {'mode': 'random', 'forget_num': 20, 'forget_fraction': 0.0,
              'forget_classes': (), 'seed': 0,
              'saved_data_path': self.directory, **kwargs}
    train = self.train if train is None else train
    return splits.get_split(train, self.test, 10, fingerprint, **kwargs)

  def test_without_path_makes_split(self):
    split = self._get(saved_data_path='')
    expected = splits.make_split(self.train, self.test, 10, mode='random',
                                 forget_num=20, seed=0)
    self.assertEqual(split, expected)
    self.assertEmpty(os.listdir(self.directory))

  @parameterized.parameters(
      dict(mode='random', forget_num=20),
      dict(mode='random', forget_num=0, forget_fraction=0.1),
      dict(mode='classwise', forget_classes=(2, 5)),
  )
  def test_saves_then_reuses(self, **kwargs):
    first = self._get(**kwargs)
    self.assertLen(os.listdir(self.directory), 1)
    path = os.path.join(self.directory, f'split_{first.name}_s0.npz')
    self.assertTrue(os.path.exists(path))
    with mock.patch.object(splits, 'make_split', side_effect=AssertionError):
      second = self._get(**kwargs)
    self.assertEqual(second, first)

  def test_refuses_another_validation_fraction(self):
    self._get(val_fraction=0.2)
    self._get(val_fraction=0.2)  # Reused.
    with self.assertRaisesRegex(splits.SplitError, 'validation set of 10'):
      self._get(val_fraction=0.4)

  def test_reuses_saved_indices_not_a_new_draw(self):
    # A file from another numpy version could hold a different draw; the saved
    # indices win, which is the point of --saved_data_path.
    other = splits.make_split(self.train, self.test, 10, mode='random',
                              forget_num=20, seed=7)
    splits.save_split(dataclasses.replace(other, seed=0), self.directory, 'fp')
    split = self._get()
    np.testing.assert_array_equal(split.forget, other.forget)

  def test_refuses_mismatching_request(self):
    path = splits.save_split(
        splits.make_split(self.train, self.test, 10, mode='random',
                          forget_num=20, seed=1), self.directory, 'fp')
    os.replace(path, os.path.join(self.directory, 'split_random20_s0.npz'))
    with self.assertRaisesRegex(splits.SplitError, 'was requested'):
      self._get()

  def test_refuses_other_dataset_size(self):
    self._get()
    train = np.concatenate([self.train, [0]])
    with self.assertRaisesRegex(splits.SplitError, 'dataset has'):
      self._get(train=train, forget_num=20)

  def test_refuses_fingerprint_mismatch(self):
    self._get()
    with self.assertRaisesRegex(splits.SplitError, 'different dataset'):
      self._get(fingerprint='other')

  def test_refuses_corrupt_file(self):
    with open(os.path.join(self.directory, 'split_random20_s0.npz'), 'wb') as f:
      f.write(b'not a split')
    with self.assertRaisesRegex(splits.SplitError, 'saved_data_path'):
      self._get()

  def test_invalid_request_with_path(self):
    with self.assertRaisesRegex(splits.SplitError, 'forget_num > 0'):
      self._get(forget_num=0)
    self.assertEmpty(os.listdir(self.directory))


if __name__ == '__main__':
  absltest.main()
