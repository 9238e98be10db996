"""Loads image-classification datasets into host numpy arrays.

`load(config)` picks a loader from `config.name` and `config.source`. Every
loader returns a `Dataset` of uint8 [N, H, W, C] images and int32 labels, so
later stages never care where the data came from. Sources:

- 'embedded': a 12,000-image Fashion-MNIST subset shipped in the package
  (`mu_jax/datasets/`), so tests and smoke runs need no download.
- 'idx': MNIST / Fashion-MNIST IDX files, e.g. from the Debian package
  `dataset-fashion-mnist`.
- 'cifar': the CIFAR-10 / CIFAR-100 "python version" pickle batches, read
  with an unpickler that admits only numpy arrays and plain values, so a
  crafted batch file cannot run code.
- 'npz': any dataset saved as an .npz with train/test images and labels.
- 'tfds': `tfds.data_source`, which reads array_record data without
  TensorFlow and downloads only when asked to.
- 'auto': IDX files for fashion_mnist if present, else tfds.
"""

import dataclasses
import functools
import gzip
import hashlib
import importlib.resources
import importlib.util
import os
import pickle
from typing import Any

import numpy as np

from mu_jax import errors

DEBIAN_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
EMBEDDED_NAME = 'fashion_mnist_subset'
TFDS_NAMES = ('fashion_mnist', 'mnist', 'cifar10', 'cifar100', 'svhn_cropped')
NAMES = (EMBEDDED_NAME,) + TFDS_NAMES
SOURCES = ('auto', 'embedded', 'tfds', 'idx', 'cifar', 'npz')
_ARRAYS = ('train_images', 'train_labels', 'test_images', 'test_labels')

# Per-channel (mean, std) of pixel / 255, as used by the original project.
_NORMALIZATION = {
    'cifar10': ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    'cifar100': ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    'svhn_cropped': ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    'mnist': ((0.1307,), (0.3081,)),
    'fashion_mnist': ((0.2860,), (0.3530,)),
    EMBEDDED_NAME: ((0.2860,), (0.3530,)),
}
_IDX_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
              't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')  # _ARRAYS.
# CIFAR name -> (archive folder, label key, train files, test files).
_CIFAR_LAYOUTS = {
    'cifar10': ('cifar-10-batches-py', 'labels',
                [f'data_batch_{i}' for i in range(1, 6)], ['test_batch']),
    'cifar100': ('cifar-100-python', 'fine_labels', ['train'], ['test']),
}
# Labels are stored as int32 class indices; checked on the raw array first, so
# a label of 2**40 is refused rather than wrapped to another class.
_MAX_CLASSES = 2**31 - 1


class DataError(errors.MuJaxError, ValueError):
  """Bad or missing data; message is one actionable line."""


@dataclasses.dataclass(frozen=True, eq=False)  # == on arrays is ambiguous.
class Dataset:
  """Train and test uint8 [N, H, W, C] images with int32 [N] labels.

  (float32 images are the library face's: already preprocessed.)

  The arrays are made read-only, so the cached fingerprint cannot go stale;
  copy an array before editing it.
  """
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  mean: tuple[float, ...]  # Per-channel mean of pixel / 255.
  std: tuple[float, ...]  # Per-channel std of pixel / 255.

  def __post_init__(self):
    if not 2 <= self.num_classes <= _MAX_CLASSES:
      raise DataError(f'{self.name}: num_classes must be in [2, {_MAX_CLASSES}]'
                      f', got {self.num_classes}; a classifier needs at least '
                      '2 classes.')
    for split in ('train', 'test'):
      images = getattr(self, f'{split}_images')
      labels = getattr(self, f'{split}_labels')
      # float32 images are already in their model's preprocessing (the
      # library face, mu_jax/api.py); mean and std then go unused.
      if (images.dtype not in (np.uint8, np.float32) or images.ndim != 4 or
          labels.dtype != np.int32 or labels.shape != images.shape[:1]):
        raise DataError(
            f'{self.name}: {split} needs uint8 [N, H, W, C] images and int32 '
            f'[N] labels, got {images.dtype} {images.shape} and '
            f'{labels.dtype} {labels.shape}; fix the files or the loader.')
      if labels.size and not 0 <= labels.min() <= labels.max() < (
          self.num_classes):
        raise DataError(f'{self.name}: {split} labels must lie in '
                        f'[0, {self.num_classes}); fix num_classes or labels.')
      images.flags.writeable = labels.flags.writeable = False
    if self.test_images.dtype != self.train_images.dtype:
      raise DataError(f'{self.name}: train images are '
                      f'{self.train_images.dtype}, test images '
                      f'{self.test_images.dtype}; give both one dtype.')
    if self.test_images.shape[1:] != self.train_images.shape[1:]:
      raise DataError(f'{self.name}: train and test images differ in shape; '
                      'fix the files.')

  def fingerprint(self) -> str:
    """Returns a sha256 hex digest of the arrays and num_classes (not name)."""
    return self._fingerprint

  @functools.cached_property  # Writes to __dict__, which frozen allows.
  def _fingerprint(self) -> str:
    digest = hashlib.sha256(f'num_classes={self.num_classes};'.encode())
    for key in _ARRAYS:
      array = np.ascontiguousarray(getattr(self, key))
      digest.update(f'{key}:{array.dtype.str}:{array.shape};'.encode())
      digest.update(array.data)
    return digest.hexdigest()


def _mean_std(images: np.ndarray) -> tuple[tuple[float, ...], ...]:
  """Per-channel mean and std of [N, H, W, C] images / 255."""
  channels = images.shape[-1]
  total, total_sq = np.zeros(channels), np.zeros(channels)
  # Chunks avoid a float copy of the whole set (1.2 GB for CIFAR-10).
  for start in range(0, len(images), 4096):
    x = images[start:start + 4096].reshape(-1, channels) / 255.0
    total += x.sum(axis=0)
    total_sq += (x * x).sum(axis=0)
  count = max(images.size // channels, 1)
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
  return tuple(map(float, mean)), tuple(map(float, std))


def _check_labels(name: str, split: str, labels: np.ndarray,
                  num_classes: int | None) -> None:
  """Checks raw labels (any dtype) before they are cast to int32.

  Integers in [0, num_classes), or in [0, 2**31 - 1) when num_classes is not
  known yet; compared as Python ints, so nothing wraps.
  """
  if labels.dtype.kind not in 'iu':
    raise DataError(f'{name}: {split} labels must be integers, got '
                    f'{labels.dtype}; store class indices.')
  if labels.ndim != 1:
    raise DataError(f'{name}: {split} labels must be one class index per '
                    f'image ([N]), got shape {labels.shape}; store class '
                    'indices, not one-hot vectors.')
  if not labels.size:
    return
  low, high = int(labels.min()), int(labels.max())
  limit = _MAX_CLASSES if num_classes is None else num_classes
  if low < 0 or high >= limit:
    what = (f'[0, {num_classes}) (num_classes={num_classes})'
            if num_classes is not None else f'[0, {_MAX_CLASSES})')
    raise DataError(f'{name}: {split} labels must be class indices in {what},'
                    f' got {low}..{high}; fix the labels or num_classes.')


def _make_dataset(name: str, arrays: list[Any], num_classes: int | None = None,
                  known: bool = True) -> Dataset:
  """Builds a Dataset from the four `_ARRAYS`; images may lack the C axis.

  A known `name` (with `known`) fixes num_classes and normalisation;
  otherwise num_classes defaults to max label + 1 and the normalisation is
  computed from the train images. Labels are range-checked before the cast
  to int32.
  """
  arrays = [np.asarray(a) for a in arrays]
  known = known and name in NAMES
  if known and num_classes is None:
    num_classes = 100 if name == 'cifar100' else 10
  if num_classes is not None and not 2 <= num_classes <= _MAX_CLASSES:
    raise DataError(f'{name}: num_classes must be in [2, {_MAX_CLASSES}], got '
                    f'{num_classes}; a classifier needs at least 2 classes.')
  for i in (0, 2):
    if arrays[i].ndim == 3:
      arrays[i] = arrays[i][..., None]  # Grayscale: add the channel axis.
    _check_labels(name, _ARRAYS[i + 1].split('_')[0], arrays[i + 1],
                  num_classes)
  if num_classes is None:
    num_classes = 1 + max(int(arrays[1].max(initial=0)),
                          int(arrays[3].max(initial=0)))
    if num_classes < 2:
      raise DataError(f'{name}: all labels are 0, so there is only 1 class; a '
                      'classifier needs at least 2 (fix the labels, or store '
                      'num_classes in the npz).')
  for i in (1, 3):
    arrays[i] = arrays[i].astype(np.int32)  # Safe: range checked above.
  mean, std = _NORMALIZATION[name] if known else _mean_std(arrays[0])
  return Dataset(name, *arrays, int(num_classes), mean, std)


@functools.lru_cache(maxsize=1)  # Safe to share: Dataset arrays are read-only.
def load_embedded() -> Dataset:
  """Returns the Fashion-MNIST subset shipped in `mu_jax/datasets/`.

  10,000 train and 2,000 test 28x28 images, 1,000 / 200 per class; see
  `mu_jax/datasets/PROVENANCE.md` for how it was made.
  """
  resource = importlib.resources.files('mu_jax.datasets').joinpath(
      f'{EMBEDDED_NAME}.npz')
  with resource.open('rb') as f, np.load(f) as z:
    return _make_dataset(EMBEDDED_NAME, [z[k] for k in _ARRAYS])


def _read_idx(path: str, ndim: int) -> np.ndarray:
  """Reads one IDX file (gzipped or not) holding an `ndim`-D uint8 array."""
  try:
    with (gzip.open if path.endswith('.gz') else open)(path, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError) as err:  # BadGzipFile is an OSError.
    raise DataError(f'cannot read IDX file {path} ({err}); re-download '
                    'it.') from err
  # Magic: two zero bytes, type 0x08 (uint8), then the number of dimensions.
  if raw[:4] != bytes((0, 0, 8, ndim)):
    raise DataError(f'{path} is not a uint8 {ndim}-D IDX file (magic '
                    f'{raw[:4].hex()}); check the path or re-download it.')
  shape = tuple(int(d) for d in np.frombuffer(raw[4:4 + 4 * ndim], '>u4'))
  if len(raw) != 4 + 4 * ndim + int(np.prod(shape)):
    raise DataError(f'{path} has {len(raw)} bytes, but its header says '
                    f'{shape}; the file is truncated or corrupt, re-download.')
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(directory: str, base: str) -> str | None:
  paths = [os.path.join(directory, base + ext) for ext in ('.gz', '')]
  return next((p for p in paths if os.path.isfile(p)), None)


def load_idx(directory: str, name: str = 'fashion_mnist') -> Dataset:
  """Loads MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`, ...)."""
  arrays = []
  for base in _IDX_FILES:
    path = _find_idx(directory, base)
    if path is None:
      raise DataError(f'{base}[.gz] not found in {directory!r}; for '
                      'Fashion-MNIST run `apt-get install dataset-fashion-'
                      'mnist`, else set --config.data.path to the IDX folder.')
    arrays.append(_read_idx(path, 3 if 'images' in base else 1))
  return _make_dataset(name, arrays)


def _latin1_encode(text: str, encoding: str = 'latin1') -> bytes:
  """`_codecs.encode` as Python 3 pickles bytes (protocols 0-2), latin1 only."""
  if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
    raise pickle.UnpicklingError(f'_codecs.encode({type(text).__name__}, '
                                 f'{encoding!r}) is not how pickle stores '
                                 'bytes')
  return text.encode('latin1')


# The only globals a CIFAR python batch (a dict of bytes / str keys to lists,
# bytes, ints and numpy arrays) needs, across pickle protocols 0-5, Python 2
# (the original files) and numpy 1 / 2 module names.
_CIFAR_GLOBALS = {
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('_codecs', 'encode'): _latin1_encode,
}
for _module in ('numpy.core', 'numpy._core'):
  _CIFAR_GLOBALS[(f'{_module}.multiarray', '_reconstruct')] = (
      np._core.multiarray._reconstruct)  # pylint: disable=protected-access
  _CIFAR_GLOBALS[(f'{_module}.multiarray', 'scalar')] = (
      np._core.multiarray.scalar)  # pylint: disable=protected-access
  _CIFAR_GLOBALS[(f'{_module}.numeric', '_frombuffer')] = (
      np._core.numeric._frombuffer)  # pylint: disable=protected-access
del _module


class _CifarUnpickler(pickle.Unpickler):
  """Unpickles plain values and numpy arrays; refuses every other global.

  A pickle can call any importable callable (os.system, builtins.exec, ...)
  through its globals; `find_class` is where each one is looked up, so
  refusing there stops a crafted file before anything runs.
  """

  def __init__(self, file, path: str):
    super().__init__(file, encoding='bytes')  # Python 2 str -> bytes.
    self._path = path

  def find_class(self, module: str, name: str) -> Any:
    try:
      return _CIFAR_GLOBALS[(module, name)]
    except KeyError:
      raise DataError(
          f'refusing to load CIFAR batch {self._path}: it refers to '
          f'{module}.{name}, which a CIFAR python batch never needs (the file '
          'could run code); re-download the python version of the dataset.'
      ) from None


def _batch_field(batch: dict, key: str) -> Any:
  """`batch[key]`, whether keys are bytes (the real files) or str."""
  return batch.get(key.encode(), batch.get(key))


def _read_cifar_batch(path: str, label_key: str) -> list[np.ndarray]:
  """Reads one pickled CIFAR batch; its rows are 3072 bytes in CHW order."""
  try:
    with open(path, 'rb') as f:
      batch = _CifarUnpickler(f, path).load()
  except DataError:
    raise
  except Exception as err:  # pylint: disable=broad-except
    # Corrupt pickles raise nearly anything (ValueError, KeyError, ...).
    reason = ' '.join(f'{type(err).__name__}: {err}'.split())[:200]
    raise DataError(f'cannot read CIFAR batch {path} ({reason}); re-download '
                    'the python version of the dataset.') from err
  if not isinstance(batch, dict):
    raise DataError(f'{path} is not a CIFAR python batch (a pickled dict, got '
                    f'{type(batch).__name__}); check the path.')
  data = np.asarray(_batch_field(batch, 'data'))
  labels = np.asarray(_batch_field(batch, label_key))
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or (
      labels.shape != data.shape[:1]):
    raise DataError(f'{path} is not a CIFAR python batch (need uint8 data '
                    f'[N, 3072] and {label_key!r} [N]); check the path.')
  return [data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels]


def load_cifar_pickle(directory: str, name: str) -> Dataset:
  """Loads CIFAR-10 or CIFAR-100 ('cifar10' / 'cifar100') python pickles.

  `directory` holds `data_batch_1..5` and `test_batch` (CIFAR-10) or `train`
  and `test` (CIFAR-100), directly or in the archive's `cifar-10-batches-py/`
  or `cifar-100-python/` folder.
  """
  if name not in _CIFAR_LAYOUTS:
    raise DataError(f'source cifar needs name cifar10 or cifar100, got '
                    f'{name!r}.')
  subdir, label_key, *file_lists = _CIFAR_LAYOUTS[name]
  if os.path.isdir(os.path.join(directory, subdir)):
    directory = os.path.join(directory, subdir)
  arrays = []
  for files in file_lists:
    paths = [os.path.join(directory, f) for f in files]
    if missing := [p for p in paths if not os.path.isfile(p)]:
      raise DataError(f'{name}: {missing} not found; extract the python '
                      'version archive into --config.data.path.')
    batches = [_read_cifar_batch(p, label_key) for p in paths]
    arrays += [np.concatenate(parts) for parts in zip(*batches)]
  return _make_dataset(name, arrays)


def _read_npz(path: str) -> tuple[list[np.ndarray], int | None]:
  """The four `_ARRAYS` and the optional num_classes of an .npz file."""
  try:
    loaded = np.load(path, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
      raise DataError(f'{path} holds a single array, not an .npz archive; '
                      f'save {_ARRAYS} with np.savez.')
    with loaded as z:
      if missing := [k for k in _ARRAYS if k not in z.files]:
        raise DataError(f'{path} lacks keys {missing}; it needs {_ARRAYS}.')
      arrays = [z[k] for k in _ARRAYS]
      raw = z['num_classes'] if 'num_classes' in z.files else None
  except DataError:
    raise
  except Exception as err:  # pylint: disable=broad-except
    # A truncated or corrupt file raises BadZipFile, zlib.error, ValueError,
    # EOFError, OSError... depending on where the damage is.
    reason = ' '.join(f'{type(err).__name__}: {err}'.split())[:200]
    raise DataError(f'cannot read npz file {path} ({reason}); the file is '
                    'truncated or corrupt, re-create it with np.savez.'
                   ) from err
  num_classes = None
  if raw is not None:
    if raw.size != 1 or raw.dtype.kind not in 'iu':
      raise DataError(f'{path}: num_classes must be one integer, got '
                      f'{raw.dtype} {raw.shape}; store e.g. num_classes=10.')
    num_classes = int(raw.reshape(()))  # A Python int: nothing wraps.
  return arrays, num_classes


def load_npz(path: str, name: str = 'npz') -> Dataset:
  """Loads an .npz with `train_images`, `train_labels`, `test_*` arrays.

  Images are [N, H, W] or [N, H, W, C], uint8 or any dtype holding only
  integers in 0..255. Labels are integer class indices [N]. num_classes comes
  from an optional `num_classes` key, else max label + 1; it must be at least
  2. Normalisation is computed from the train images.
  """
  if not os.path.isfile(path):
    raise DataError(f'npz file {path!r} not found; set --config.data.path.')
  arrays, num_classes = _read_npz(path)
  for i in (0, 2):
    images = arrays[i]
    if images.dtype.kind not in 'biuf':
      raise DataError(f'{path}: {_ARRAYS[i]} has dtype {images.dtype}; store '
                      'uint8 pixels in 0..255.')
    with np.errstate(invalid='ignore'):  # NaN / inf: caught just below.
      arrays[i] = images.astype(np.uint8)
    # Lossless only: silently wrapping 300 or truncating 0.5 corrupts data.
    if not np.array_equal(arrays[i], images):
      raise DataError(f'{path}: {_ARRAYS[i]} ({images.dtype}) holds values '
                      'that are not integers in 0..255; scale to 0..255 and '
                      'cast to uint8 before saving.')
  return _make_dataset(name, arrays, num_classes, known=False)


def _tfds_sources(tfds: Any, name: str, data_dir: str | None,
                  download: bool) -> list[Any]:
  """Returns [train, test] data sources, or raises an actionable DataError."""
  try:
    # Always try without downloading first: offline, the download path
    # retries for minutes, while a missing dataset fails in milliseconds.
    return tfds.data_source(name, split=['train', 'test'], data_dir=data_dir,
                            download=False)
  except tfds.core.registered.DatasetNotFoundError as err:
    raise DataError(f'tfds has no dataset {name!r}; check the name (mu_jax '
                    f'knows {TFDS_NAMES}) or use source npz.') from err
  except (KeyError, NotImplementedError, AssertionError, ValueError) as err:
    first_error = err  # tfds reports missing data as any of these.
  builder = tfds.builder(name, data_dir=data_dir)
  where = builder.data_dir
  has_tf = importlib.util.find_spec('tensorflow') is not None
  if builder.is_prepared() and builder.info.file_format.value == 'tfrecord':
    # The default format of tfds.load and `tfds build`, e.g. from a TF user.
    raise DataError(
        f'tfds {name!r} at {where} is in tfrecord format, which '
        'tfds.data_source cannot read' + ('' if has_tf else
                                          ' (and TensorFlow is not installed)')
        + f': convert it with `tfds convert_format --dataset_dir={where} '
        '--out_file_format=array_record` (needs tensorflow-cpu) or use '
        'another tfds_data_dir.') from first_error
  if builder.is_prepared():
    reason = ' '.join(str(first_error).split())  # Keeps the message one line.
    raise DataError(f'cannot read tfds {name!r} at {where} ({reason}); '
                    're-prepare it or use another tfds_data_dir.'
                   ) from first_error
  if not download:
    hint = (', or run `apt-get install dataset-fashion-mnist` and set '
            '--config.data.source=idx' if name == 'fashion_mnist' else '')
    raise DataError(
        f'tfds dataset {name!r} is not prepared under {where} and download '
        'is off: set --config.data.download=True (needs network and `pip '
        'install tensorflow-cpu` to prepare), or point '
        f'--config.data.tfds_data_dir at a prepared array_record copy{hint}.'
    ) from first_error
  if not has_tf:
    # Fail before a long download: stock image builders encode with TF.
    raise DataError(f'preparing tfds {name!r} needs TensorFlow: `pip install '
                    'tensorflow-cpu`, or point --config.data.tfds_data_dir at '
                    'a prepared array_record copy.') from first_error
  return tfds.data_source(name, split=['train', 'test'], data_dir=data_dir,
                          download=True,
                          builder_kwargs={'file_format': 'array_record'})


def load_tfds(name: str, data_dir: str | None = None,
              download: bool = False) -> Dataset:
  """Loads the train and test splits of a TFDS dataset without TensorFlow.

  `name` is any TFDS dataset whose records have 'image' and 'label';
  `data_dir` None or '' means the TFDS default. Nothing is downloaded unless
  `download` (which also needs TensorFlow to prepare the data).
  """
  try:
    # Imported here: tfds is optional for the other sources.
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    sources = _tfds_sources(tfds, name, data_dir or None, download)
    arrays = []
    for source in sources:
      examples = list(source)  # Decodes one by one (PNG via pillow).
      arrays += [np.stack([ex['image'] for ex in examples]),
                 np.array([ex['label'] for ex in examples])]
    num_classes = None
    if name not in NAMES:
      num_classes = sources[0].dataset_info.features['label'].num_classes
  except ImportError as err:
    # tfds's "needs OpenCV or PIL" ImportError names no module.
    module = (getattr(err, 'name', None) or 'PIL').split('.')[0]
    package = 'pillow' if module == 'PIL' else module.replace('_', '-')
    raise DataError(f'reading tfds {name!r} needs a missing package ({err}); '
                    f'`pip install {package}`.') from err
  return _make_dataset(name, arrays, num_classes)


def load(config: Any) -> Dataset:
  """Loads the dataset that `config` (a ConfigDict or dict) describes.

  Fields: `name`, `source` (see the module docstring), `path` (idx / cifar
  folder or npz file), `tfds_data_dir` ('' = TFDS default) and `download`.
  Missing fields mean the embedded subset, source 'auto', no download. A
  `path` ending in .npz with source 'auto' or 'embedded' (the default) is
  read as source npz, named after the file unless `name` was changed.

  Raises:
    DataError: unknown name or source, or the data is missing or corrupt.
  """
  name = config.get('name', EMBEDDED_NAME)
  source = config.get('source', 'auto')
  path = config.get('path', '') or ''
  if source not in SOURCES:
    raise DataError(f'unknown data source {source!r}; use one of {SOURCES}.')
  if path.endswith('.npz') and source in ('auto', 'embedded'):
    # The suffix says it: an npz of one's own, named after its file unless
    # a name was given.
    source = 'npz'
    if name == EMBEDDED_NAME:
      name = os.path.splitext(os.path.basename(path))[0]
  if source == 'npz':
    if not path:
      raise DataError('source npz needs --config.data.path=<file.npz>.')
    return load_npz(path, name)
  if name not in NAMES:
    raise DataError(f'unknown dataset {name!r}; use one of {NAMES}, or '
                    'source npz for your own data.')
  if source == 'embedded' and name != EMBEDDED_NAME:
    raise DataError(f'source embedded has only {EMBEDDED_NAME!r}; for '
                    f'{name!r} set --config.data.source=auto (or tfds, idx, '
                    'cifar).')
  if name == EMBEDDED_NAME:
    if source not in ('auto', 'embedded'):
      raise DataError(f'{EMBEDDED_NAME!r} needs source embedded or auto, got '
                      f'{source!r}; for the full set set '
                      '--config.data.name=fashion_mnist.')
    return load_embedded()
  if name == 'fashion_mnist' and source in ('auto', 'idx'):
    path = path or DEBIAN_FASHION_MNIST_DIR
  if source == 'auto':
    has_idx = name == 'fashion_mnist' and all(
        _find_idx(path, base) for base in _IDX_FILES)
    source = 'idx' if has_idx else 'tfds'
  if source in ('idx', 'cifar') and not path:
    raise DataError(f'source {source} needs --config.data.path=<folder>.')
  if source == 'idx':
    if name not in ('mnist', 'fashion_mnist'):
      raise DataError(f'source idx needs name mnist or fashion_mnist, got '
                      f'{name!r}.')
    return load_idx(path, name)
  if source == 'cifar':
    return load_cifar_pickle(path, name)
  return load_tfds(name, data_dir=config.get('tfds_data_dir') or None,
                   download=bool(config.get('download', False)))
