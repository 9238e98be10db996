"""Files written whole, and the content keys that name cached results.

Every file the toolkit writes in one go (report.json, results.md, a saved
split, a suite cell, a tuning trial, cached model outputs) goes through
`write` or one of its typed forms: the bytes go to a temporary file in the
target's own folder, are flushed to the disk, and the file is then renamed
over the target. A rename within one file system is atomic, so a reader (or
a resumed run after a crash or a full disk) finds the old file, the new one
or none, never a half-written one; two processes writing the same path both
succeed and the last rename wins. A failed write removes its temporary file
and raises the OSError, which callers turn into their own one-line error
(`report.write_json`, the split's loader).

A cached result is looked up by a content key (`content_key`): a digest of
everything it depends on, so that a changed input misses the cache instead
of reusing a stale result. `KeyedStore` is the simplest such cache, one JSON
file per key in one folder (the tuner's trials). The suite's cells, the
forgetting-quality outputs and the trained models keep their own file
layouts (a cell is found by its mode, seed and model and checks its key
inside; models are Orbax folders, see `checkpoint.train_or_reuse`), since
renaming them would orphan every existing store; they share `content_key`
and the writers.

Writing on process 0 only, in a multi-process run, is the caller's decision
(`parallel.is_main_process`): this module writes wherever it is called.
"""

import hashlib
import json
import os
import tempfile
from typing import Any, BinaryIO, Callable, Mapping

import numpy as np


def _default_mode() -> int:
  """The permissions `open(path, 'w')` would give a new file (0o666 less the
  umask): `tempfile.mkstemp` makes its files private (0o600), and the
  outputs are meant to be as readable as any other file the user writes.
  The umask can only be read by setting it, so it is read once, at import.
  """
  umask = os.umask(0o022)
  os.umask(umask)
  return 0o666 & ~umask


_MODE = _default_mode()


def write(path: str | os.PathLike[str],
          write_to: Callable[[BinaryIO], Any]) -> str:
  """Writes the file `path` whole: `write_to(f)` fills a temporary file.

  Args:
    path: the file to (over)write; its folder is created if needed.
    write_to: writes the content to the binary file object it is given.

  Returns:
    `path`, as a string.

  Raises:
    OSError: the folder cannot be created or written; no file is left
      behind, and an existing file at `path` is unchanged.
  """
  path = os.fspath(path)
  directory, filename = os.path.split(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  # In the target's folder, so that the rename stays on one file system;
  # a name of its own per writer, so that concurrent writers never mix.
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=filename + '.tmp-')
  try:
    with os.fdopen(fd, 'wb') as f:
      write_to(f)
      f.flush()
      os.fsync(f.fileno())  # On the disk before the name points at it.
    os.chmod(tmp, _MODE)
    os.replace(tmp, path)
  except BaseException:
    try:
      os.remove(tmp)
    except OSError:
      pass  # Renamed already, or the folder went away.
    raise
  return path


def write_text(path: str | os.PathLike[str], text: str) -> str:
  """Writes `text` (UTF-8) as the whole file `path`; see `write`."""
  return write(path, lambda f: f.write(text.encode('utf-8')))


def write_json(path: str | os.PathLike[str], payload: Any, *,
               indent: int | None = 2) -> str:
  """Writes `payload` as JSON, ending in a newline; see `write`.

  The JSON is encoded before the file is opened, so a payload that cannot
  be encoded raises (TypeError) without touching the file system.
  """
  text = json.dumps(payload, indent=indent) + '\n'
  return write_text(path, text)


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, Any], *,
              compressed: bool = False) -> str:
  """Writes `arrays` as an .npz archive at exactly `path`; see `write`.

  `np.savez` given a file object neither adds '.npz' to the name nor leaves
  a partial archive under it.
  """
  save = np.savez_compressed if compressed else np.savez
  return write(path, lambda f: save(f, **arrays))


def content_key(inputs: Any, length: int | None = None) -> str:
  """The hex SHA-256 of `inputs` as sorted JSON, or its first `length` digits.

  The key of a cached result: equal inputs give the same key in every
  process and version, different ones (almost surely) another. The encoding
  must not change, or every existing cache misses: `json.dumps` with sorted
  keys and its default separators. Tuples hash as lists.
  """
  digest = hashlib.sha256(
      json.dumps(inputs, sort_keys=True).encode()).hexdigest()
  return digest if length is None else digest[:length]


class KeyedStore:
  """Results keyed by their inputs: `<directory>/<content key>.json`.

  Each file holds {'key': inputs, 'result': result}, the inputs kept for a
  reader of the folder. A result is stored once it is complete (`put`), so
  a killed run that stored some resumes with the rest.
  """

  def __init__(self, directory: str, *, key_length: int = 20,
               writer: Callable[[str, Any], Any] = write_json):
    """A store in `directory` (created at the first `put`).

    Args:
      directory: the folder of the store.
      key_length: hex digits of the content key in the file names.
      writer: `(path, payload)` writing JSON whole; e.g. `report.write_json`,
        which writes on process 0 only and raises one-line errors.
    """
    self.directory = directory
    self.key_length = key_length
    self._writer = writer

  def path(self, inputs: Any) -> str:
    return os.path.join(self.directory,
                        content_key(inputs, self.key_length) + '.json')

  def get(self, inputs: Any) -> Any | None:
    """The stored result for `inputs`, or None."""
    path = self.path(inputs)
    if not os.path.exists(path):
      return None
    with open(path) as f:
      return json.load(f)['result']

  def put(self, inputs: Any, result: Any) -> str:
    """Stores `result` for `inputs`; returns its path."""
    path = self.path(inputs)
    self._writer(path, {'key': inputs, 'result': result})
    return path
