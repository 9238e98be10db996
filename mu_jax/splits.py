"""Forget / retain / test index splits for unlearning experiments.

A `Split` holds sorted int64 indices into a dataset's train and test sets:

* `random` mode ("instance-wise") forgets `k` train examples drawn without
  replacement from `np.random.default_rng(seed).permutation(N)`, and tests on
  the whole test set.
* `class_wise` mode forgets every train example of one or more classes; the
  test examples of those classes form `forget_test`, the rest form `test`.

In both modes a stratified `val_fraction` of the test examples outside the
forgotten classes is held out as `val`: a validation set that model
selection (the guard rails, the tuner) may use and that test accuracy and
the membership-inference attacks never see.

Splits can be saved to and loaded from `.npz` files tagged with a dataset
fingerprint, so every method, the retrain baseline and auxiliary models of one
experiment share one fixed forget set (the original project's
`--saved_data_path`).

The original project built its random split from
`np.arange(50000, dtype=np.int16)`, which wraps above 32767: 2852 images ended
up in both the forget and the retain set and 15536 were never used. Here every
index array is int64, and every `Split` checks that forget and retain are
disjoint and cover the train set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Sequence

import numpy as np
import numpy.typing as npt

from mu_jax import atomic_files
from mu_jax import errors

MODES = ('random', 'class_wise')

# Bump when the file layout changes; `load_split` refuses other versions.
# 2: the validation set `val`.
_FORMAT_VERSION = 2

# Seed stream of the validation draw, apart from the forget set's.
_VAL_STREAM = 1

_MODE_ALIASES = {'classwise': 'class_wise'}

_DELETE_HINT = 'delete it or choose another --saved_data_path'


class SplitError(errors.MuJaxError, ValueError):
  """A split request, or a saved split file, is invalid."""


def canonical_mode(mode: str) -> str:
  """`mode` with its alias spelled out ('classwise', the original project's
  spelling, is 'class_wise'); the one place modes are normalised."""
  return _MODE_ALIASES.get(mode, mode)


def _normalize_mode(mode: str) -> str:
  mode = canonical_mode(mode)
  if mode not in MODES:
    raise SplitError(
        f'Unknown split mode {mode!r}; use one of {MODES} '
        "('classwise' is accepted as an alias of 'class_wise').")
  return mode


def _as_index_array(name: str, values: npt.ArrayLike) -> np.ndarray:
  """Returns `values` as a read-only 1-D int64 array."""
  array = np.asarray(values)
  if array.size == 0:
    # An empty list becomes float64; an empty split is still well-typed.
    array = array.astype(np.int64)
  if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
    raise SplitError(
        f'Split.{name} must be a 1-D integer array, got shape {array.shape} '
        f'and dtype {array.dtype}.')
  # A copy, so that freezing it cannot affect the caller's array.
  array = array.astype(np.int64, copy=True)
  array.setflags(write=False)
  return array


def _check_partition(parts: dict[str, np.ndarray]) -> None:
  """Checks that sorted unique arrays partition `range(total size)`."""
  for name, array in parts.items():
    if array.size > 1 and np.any(np.diff(array) <= 0):
      raise SplitError(f'Split.{name} must be sorted and free of duplicates.')
  names = list(parts)
  for i, first in enumerate(names):
    for second in names[i + 1:]:
      overlap = np.intersect1d(parts[first], parts[second])
      if overlap.size:
        raise SplitError(
            f'Split.{first} and Split.{second} share {overlap.size} '
            f'indices (e.g. {overlap[0]}); they must be disjoint.')
  total = sum(array.size for array in parts.values())
  union = np.concatenate(list(parts.values()))
  if total and (union.min() != 0 or union.max() != total - 1):
    raise SplitError(
        f'Split.{" and Split.".join(names)} must together cover '
        f'range({total}) exactly, got indices from {union.min()} to '
        f'{union.max()}.')


def _split_name(
    mode: str, forget_size: int, forget_classes: Sequence[int]
) -> str:
  if mode == 'random':
    return f'random{forget_size}'
  return 'class' + '-'.join(str(c) for c in sorted(forget_classes))


def _filename(name: str, seed: int) -> str:
  return f'split_{name}_s{seed}.npz'


@dataclasses.dataclass(frozen=True)
class Split:
  """Index sets of one unlearning experiment.

  All arrays are read-only, sorted, unique int64 arrays.

  Attributes:
    mode: 'random' or 'class_wise'.
    seed: Seed of the random draw (recorded, but unused, in class_wise mode).
    forget: Train indices to forget.
    retain: Train indices to keep; the complement of `forget`.
    test: Test indices used for test accuracy and the MIA: the test set in
      random mode, the test examples of the non-forgotten classes in
      class_wise mode, less `val` in both.
    forget_test: Test indices of the forgotten classes; empty in random mode.
    forget_classes: Sorted forgotten classes; () in random mode.
    val: Test indices held out for model selection (outside the forgotten
      classes); may be empty.
  """

  mode: str
  seed: int
  forget: np.ndarray
  retain: np.ndarray
  test: np.ndarray
  forget_test: np.ndarray
  forget_classes: tuple[int, ...]
  val: np.ndarray = ()

  def __post_init__(self):
    # Frozen dataclass: assignment has to bypass the frozen __setattr__.
    set_field = lambda name, value: object.__setattr__(self, name, value)
    set_field('mode', _normalize_mode(self.mode))
    set_field('seed', int(self.seed))
    for name in ('forget', 'retain', 'test', 'forget_test', 'val'):
      set_field(name, _as_index_array(name, getattr(self, name)))
    set_field('forget_classes', tuple(int(c) for c in self.forget_classes))

    if self.forget.size == 0 or self.retain.size == 0:
      raise SplitError(
          f'Split has {self.forget.size} forget and {self.retain.size} retain '
          'indices; both must be non-empty.')
    if self.test.size == 0 and self.val.size == 0:
      # Only a validation set is needed to unlearn (the library face,
      # mu_jax/api.py, gets no test set); measuring needs a test set, which
      # make_split and load_split always give.
      raise SplitError('Split.test and Split.val are empty; the test set '
                       'needs examples outside the forgotten classes.')
    _check_partition({'forget': self.forget, 'retain': self.retain})
    # test, val and forget_test together are the whole test set.
    _check_partition({'test': self.test, 'val': self.val,
                      'forget_test': self.forget_test})
    if self.mode == 'random':
      if self.forget_classes or self.forget_test.size:
        raise SplitError('A random split must have empty forget_classes and '
                         'forget_test; use mode class_wise to forget classes.')
    else:
      classes = self.forget_classes
      if not classes or list(classes) != sorted(set(classes)):
        raise SplitError(
            f'Split.forget_classes must be non-empty, sorted and unique in '
            f'class_wise mode, got {classes}.')

  # The generated __eq__/__hash__ would compare arrays elementwise and fail.
  def __eq__(self, other: object) -> bool:
    if not isinstance(other, Split):
      return NotImplemented
    return (self.digest() == other.digest() and self.seed == other.seed
            and self.forget_classes == other.forget_classes)

  def __hash__(self) -> int:
    return hash((self.digest(), self.seed, self.forget_classes))

  @property
  def name(self) -> str:
    """Short id for file names: 'random1000', 'class0' or 'class1-3-7'."""
    return _split_name(self.mode, self.forget.size, self.forget_classes)

  def digest(self) -> str:
    """The sha256 hex digest of the mode and every index array."""
    return self._digest(('forget', 'retain', 'test', 'forget_test', 'val'))

  def train_digest(self) -> str:
    """The digest of what a model trained on this split depends on.

    The mode, forget and retain sets: a retrained model (or a generator
    trained on the forget set) is the same whatever the test set's
    division into `test` and `val`.
    """
    return self._digest(('forget', 'retain'))

  def _digest(self, names: Sequence[str]) -> str:
    sha = hashlib.sha256()
    sha.update(self.mode.encode())
    for name in names:
      array = getattr(self, name)
      # Name and length delimit the arrays; fixed byte order makes the digest
      # the same on every platform.
      sha.update(f'|{name}:{array.size}|'.encode())
      sha.update(array.astype('<i8').tobytes())
    return sha.hexdigest()


def _labels(name: str, labels: npt.ArrayLike, num_classes: int) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.size == 0:
    labels = labels.astype(np.int64)  # An empty list arrives as float64.
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise SplitError(
        f'{name} must be a 1-D integer array, got shape {labels.shape} and '
        f'dtype {labels.dtype}.')
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise SplitError(
        f'{name} has labels in [{labels.min()}, {labels.max()}], outside '
        f'[0, {num_classes}); pass the dataset\'s num_classes.')
  return labels


def _forget_size(n: int, forget_num: int, forget_fraction: float) -> int:
  """Number of train examples a random split forgets."""
  if forget_fraction and not 0.0 < forget_fraction < 1.0:
    raise SplitError(
        f'forget_fraction={forget_fraction} must be in (0, 1).')
  if forget_num > 0:
    k = int(forget_num)
  elif forget_fraction:
    k = int(round(forget_fraction * n))
  else:
    raise SplitError(
        f'Random split needs forget_num > 0 or forget_fraction in (0, 1), got '
        f'forget_num={forget_num}, forget_fraction={forget_fraction}.')
  if k <= 0:
    raise SplitError(
        f'forget_fraction={forget_fraction} of {n} train examples forgets '
        'nothing; increase forget_fraction or set forget_num.')
  if k >= n:
    raise SplitError(
        f'Forget size {k} must be below the {n} train examples; it must leave '
        'a non-empty retain set.')
  return k


def _check_val_fraction(val_fraction: float) -> float:
  if not 0.0 <= val_fraction < 1.0:
    raise SplitError(
        f'val_fraction={val_fraction} must be in [0, 1): the fraction of the '
        'test set held out for validation (--config.split.val_fraction).')
  return float(val_fraction)


def _draw_val(candidates: np.ndarray, test_labels: np.ndarray,
              val_fraction: float, seed: int) -> np.ndarray:
  """A stratified `val_fraction` of `candidates` (test indices), sorted.

  Per class, round(val_fraction * n_c) examples, drawn with a numpy
  Generator of its own stream, so the forget set does not depend on it.
  """
  rng = np.random.default_rng([int(seed), _VAL_STREAM])
  chosen = []
  for label in np.unique(test_labels[candidates]):
    members = candidates[test_labels[candidates] == label]
    k = int(round(val_fraction * members.size))
    chosen.append(rng.permutation(members)[:k])
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def _check_classes(
    forget_classes: Sequence[int], num_classes: int
) -> tuple[int, ...]:
  array = np.atleast_1d(np.asarray(forget_classes))
  if array.size and not np.issubdtype(array.dtype, np.integer):
    raise SplitError(
        f'forget_classes must be integer class ids, got {forget_classes!r}.')
  classes = tuple(int(c) for c in array.ravel())
  if not classes:
    raise SplitError('class_wise split needs forget_classes, e.g. (0,).')
  bad = [c for c in classes if not 0 <= c < num_classes]
  if bad:
    raise SplitError(
        f'forget_classes {bad} are outside [0, {num_classes}); use valid class '
        'ids.')
  if len(set(classes)) != len(classes):
    raise SplitError(f'forget_classes {classes} has duplicates; list each '
                     'class once.')
  if len(classes) == num_classes:
    raise SplitError(
        f'forget_classes {classes} forgets all {num_classes} classes; keep at '
        'least one class.')
  return tuple(sorted(classes))


def make_split(
    train_labels: npt.ArrayLike,
    test_labels: npt.ArrayLike,
    num_classes: int,
    *,
    mode: str,
    forget_num: int = 0,
    forget_fraction: float = 0.0,
    forget_classes: Sequence[int] = (),
    seed: int = 0,
    val_fraction: float = 0.0,
) -> Split:
  """Builds a forget/retain/test/val split.

  Args:
    train_labels: [N] integer labels of the train set.
    test_labels: [M] integer labels of the test set.
    num_classes: Number of classes; labels must lie in [0, num_classes).
    mode: 'random', 'class_wise' or its alias 'classwise'.
    forget_num: Random mode: forget exactly this many examples if > 0.
    forget_fraction: Random mode: otherwise forget round(fraction * N).
    forget_classes: class_wise mode: the classes to forget (one or several).
      Ignored in random mode.
    seed: Seed of `np.random.default_rng` for the random forget set and the
      validation draw. Recorded in both modes.
    val_fraction: Fraction in [0, 1) of the test examples outside the
      forgotten classes held out as `val`, stratified by class.

  Returns:
    The split. Random mode takes the first k entries of
    `np.random.default_rng(seed).permutation(N)`; the same seed gives the same
    split on every numpy version that keeps Generator streams stable, and the
    same forget set whatever `val_fraction` is.

  Raises:
    SplitError: if the request is invalid or yields an empty split.
  """
  mode = _normalize_mode(mode)
  val_fraction = _check_val_fraction(val_fraction)
  if num_classes < 1:
    raise SplitError(f'num_classes={num_classes} must be positive.')
  if int(seed) < 0:
    raise SplitError(f'seed={seed} must be non-negative.')
  train_labels = _labels('train_labels', train_labels, num_classes)
  test_labels = _labels('test_labels', test_labels, num_classes)
  n, m = train_labels.size, test_labels.size
  if m == 0:
    raise SplitError('test_labels is empty; the test split needs examples.')

  if mode == 'random':
    k = _forget_size(n, forget_num, forget_fraction)
    # int64, never a small dtype: the original's int16 indices wrapped.
    order = np.random.default_rng(int(seed)).permutation(n).astype(np.int64)
    forget = np.sort(order[:k])
    retain = np.sort(order[k:])
    test = np.arange(m, dtype=np.int64)
    forget_test = np.zeros(0, dtype=np.int64)
    classes = ()
  else:
    classes = _check_classes(forget_classes, num_classes)
    in_train = np.isin(train_labels, classes)
    in_test = np.isin(test_labels, classes)
    forget = np.flatnonzero(in_train).astype(np.int64)
    retain = np.flatnonzero(~in_train).astype(np.int64)
    test = np.flatnonzero(~in_test).astype(np.int64)
    forget_test = np.flatnonzero(in_test).astype(np.int64)
    if forget.size == 0:
      raise SplitError(
          f'No train examples have forget_classes {classes}; the forget split '
          'is empty, pick classes present in the train set.')
    if retain.size == 0:
      raise SplitError(
          f'Every train example is in forget_classes {classes}; the retain '
          'split is empty, forget fewer classes.')
    if test.size == 0:
      raise SplitError(
          f'Every test example is in forget_classes {classes}; the test split '
          'is empty, forget fewer classes.')
  val = _draw_val(test, test_labels, val_fraction, seed)
  test = np.setdiff1d(test, val).astype(np.int64)
  if test.size == 0:
    raise SplitError(
        f'val_fraction={val_fraction} leaves no test examples; lower it.')
  return Split(mode=mode, seed=int(seed), forget=forget, retain=retain,
               test=test, forget_test=forget_test, forget_classes=classes,
               val=val)


def save_split(
    split: Split, directory: str | os.PathLike[str], dataset_fingerprint: str
) -> str:
  """Writes `split` to `directory` atomically.

  Args:
    split: The split to save.
    directory: Target directory; created if needed.
    dataset_fingerprint: Identifies the dataset the indices refer to;
      `load_split` refuses the file for any other fingerprint.

  Returns:
    Path of the written file, `directory/split_<name>_s<seed>.npz`.
  """
  path = os.path.join(os.fspath(directory),
                      _filename(split.name, split.seed))
  # Written whole: readers never see a partly written file, and concurrent
  # writers of the same split both win.
  atomic_files.write_npz(path, dict(
      format_version=np.int64(_FORMAT_VERSION),
      dataset_fingerprint=np.str_(dataset_fingerprint),
      mode=np.str_(split.mode),
      seed=np.int64(split.seed),
      forget_classes=np.asarray(split.forget_classes, dtype=np.int64),
      forget=split.forget,
      retain=split.retain,
      test=split.test,
      forget_test=split.forget_test,
      val=split.val,
  ))
  return path


def load_split(path: str | os.PathLike[str], dataset_fingerprint: str) -> Split:
  """Reads a split written by `save_split` and checks it.

  Args:
    path: The `.npz` file.
    dataset_fingerprint: Fingerprint of the dataset in use; must equal the one
      the file was saved with.

  Returns:
    The split.

  Raises:
    SplitError: if the file is unreadable or corrupt, was made for another
      dataset, or holds indices that are not a valid split.
  """
  path = os.fspath(path)
  try:
    with np.load(path, allow_pickle=False) as data:
      fields = {key: data[key] for key in data.files}
  # np.load and zipfile raise many types on damaged files (BadZipFile, zlib
  # errors, EOFError, ValueError, AttributeError for a bare .npy, ...); all
  # mean the same to the user.
  except Exception as e:  # pylint: disable=broad-exception-caught
    raise SplitError(
        f'Cannot read split file {path} ({type(e).__name__}: {e}); '
        f'{_DELETE_HINT}.') from e

  if 'format_version' in fields and int(fields['format_version']) == 1:
    raise SplitError(
        f'Split file {path} was saved by an older mu_jax without a '
        f'validation set; {_DELETE_HINT} (the same seed draws the same forget '
        'set again).')
  required = ('format_version', 'dataset_fingerprint', 'mode', 'seed',
              'forget_classes', 'forget', 'retain', 'test', 'forget_test',
              'val')
  missing = [key for key in required if key not in fields]
  if missing:
    raise SplitError(
        f'Split file {path} lacks {missing}; {_DELETE_HINT}.')
  if int(fields['format_version']) != _FORMAT_VERSION:
    raise SplitError(
        f'Split file {path} has format version {fields["format_version"]}, '
        f'expected {_FORMAT_VERSION}; {_DELETE_HINT}.')
  saved_fingerprint = str(fields['dataset_fingerprint'])
  if saved_fingerprint != str(dataset_fingerprint):
    raise SplitError(
        f'Split file {path} was made for a different dataset (fingerprint '
        f'{saved_fingerprint!r}, expected {str(dataset_fingerprint)!r}); '
        f'{_DELETE_HINT}.')
  if not np.size(fields['test']):
    raise SplitError(f'Split file {path} has an empty test split; '
                     f'{_DELETE_HINT}.')
  try:
    return Split(
        mode=str(fields['mode']),
        seed=int(fields['seed']),
        forget=fields['forget'],
        retain=fields['retain'],
        test=fields['test'],
        forget_test=fields['forget_test'],
        forget_classes=tuple(
            int(c) for c in np.atleast_1d(fields['forget_classes'])),
        val=fields['val'],
    )
  except (TypeError, ValueError) as e:  # SplitError is a ValueError.
    raise SplitError(
        f'Split file {path} holds an invalid split ({e}); {_DELETE_HINT}.'
    ) from e


def get_split(
    train_labels: npt.ArrayLike,
    test_labels: npt.ArrayLike,
    num_classes: int,
    dataset_fingerprint: str,
    *,
    mode: str,
    forget_num: int,
    forget_fraction: float,
    forget_classes: Sequence[int],
    seed: int,
    val_fraction: float = 0.0,
    saved_data_path: str | os.PathLike[str] = '',
    save: bool = True,
) -> Split:
  """Returns the requested split, shared through `saved_data_path` if set.

  With an empty `saved_data_path` this is `make_split`. Otherwise the split
  file for this request is loaded from that directory if it exists, and made
  and saved there if not, so that every run of an experiment uses the same
  indices.

  Args:
    train_labels: [N] integer labels of the train set.
    test_labels: [M] integer labels of the test set.
    num_classes: Number of classes.
    dataset_fingerprint: Identifies the dataset; stored in and checked against
      the saved file.
    mode: See `make_split`.
    forget_num: See `make_split`.
    forget_fraction: See `make_split`.
    forget_classes: See `make_split`.
    seed: See `make_split`.
    val_fraction: See `make_split`.
    saved_data_path: Directory of saved splits, or '' to not save.
    save: Whether a split drawn here is saved to `saved_data_path` (False on
      the processes of a multi-process run other than process 0, which
      saves it; a saved one is read either way).

  Returns:
    The split.

  Raises:
    SplitError: if the request is invalid, or the saved file is unreadable,
      made for another dataset or does not match the request.
  """
  kwargs = dict(mode=mode, forget_num=forget_num,
                forget_fraction=forget_fraction, forget_classes=forget_classes,
                seed=seed, val_fraction=val_fraction)
  if not os.fspath(saved_data_path):
    return make_split(train_labels, test_labels, num_classes, **kwargs)

  # Validate the request and compute the file name without drawing the split.
  mode = _normalize_mode(mode)
  val_fraction = _check_val_fraction(val_fraction)
  train_labels = _labels('train_labels', train_labels, num_classes)
  test_labels = _labels('test_labels', test_labels, num_classes)
  if mode == 'random':
    want_size = _forget_size(train_labels.size, forget_num, forget_fraction)
    want_classes = ()
  else:
    want_classes = _check_classes(forget_classes, num_classes)
    want_size = int(np.isin(train_labels, want_classes).sum())
  name = _split_name(mode, want_size, want_classes)
  path = os.path.join(os.fspath(saved_data_path), _filename(name, int(seed)))

  if not os.path.exists(path):
    split = make_split(train_labels, test_labels, num_classes, **kwargs)
    if not save:
      return split
    try:
      save_split(split, saved_data_path, dataset_fingerprint)
    except OSError as e:  # A file in the way, read-only, a full disk...
      error = errors.file_error(
          e, os.fspath(saved_data_path), 'cannot save the split in',
          'set --saved_data_path (--config.split.saved_data_path) to a '
          'writable folder, or to \'\' to not save it')
      if error is None:
        raise
      raise SplitError(str(error)) from e
    return split

  split = load_split(path, dataset_fingerprint)
  got = (split.mode, split.forget.size, split.forget_classes, split.seed)
  want = (mode, want_size, want_classes, int(seed))
  if got != want:
    raise SplitError(
        f'Split file {path} holds (mode, forget size, classes, seed) = {got}, '
        f'but {want} was requested; {_DELETE_HINT}.')
  sizes = (split.forget.size + split.retain.size,
           split.test.size + split.val.size + split.forget_test.size)
  if sizes != (train_labels.size, test_labels.size):
    raise SplitError(
        f'Split file {path} covers {sizes} (train, test) examples, but the '
        f'dataset has {(train_labels.size, test_labels.size)}; {_DELETE_HINT}.')
  kept = test_labels[~np.isin(test_labels, want_classes)]
  want_val = sum(int(round(val_fraction * np.sum(kept == label)))
                 for label in np.unique(kept))
  if split.val.size != want_val or np.isin(test_labels[split.val],
                                           want_classes).any():
    raise SplitError(
        f'Split file {path} holds a validation set of {split.val.size} '
        f'examples, but val_fraction={val_fraction} asks for {want_val} '
        f'outside the forgotten classes; {_DELETE_HINT}.')
  if mode == 'class_wise' and (
      not np.isin(train_labels[split.forget], want_classes).all()
      or np.isin(train_labels[split.retain], want_classes).any()):
    raise SplitError(
        f'Split file {path} does not match the labels of forget_classes '
        f'{want_classes}; {_DELETE_HINT}.')
  return split
