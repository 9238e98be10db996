"""The exceptions that mean bad input, reported as one line by the CLI.

Every error a user can cause (a bad flag, missing or corrupt data, a split
that cannot be made, a checkpoint of another recipe, a diverging run) is a
`MuJaxError`, raised with an actionable one-line message; `mu_jax.cli`
prints it as `mu_jax: error: ...` and exits with status 2. Anything else is
a bug and keeps its traceback. Each area subclasses it where it raises
(`data.DataError`, `splits.SplitError`, `checkpoint.CheckpointError`,
`train.TrainingError`); this module imports nothing of mu_jax, so every
module can use it.

A file-system failure on a path the user chose (a folder that is a file,
read-only or on a full disk) becomes a `FileSystemError` naming the path and
the fix (`file_error`), where the path is used or at the CLI's boundary.
"""

import errno
import re


class MuJaxError(Exception):
  """Bad input or a run that cannot succeed as configured; one line."""


class ConfigError(MuJaxError, ValueError):
  """The configuration asks for something impossible or not built."""


class FileSystemError(MuJaxError):
  """A user's path cannot be read or written (full disk, read-only...).

  Attributes:
    errno: the operating system's error number.
  """

  def __init__(self, message: str, code: int | None = None):
    super().__init__(message)
    self.errno = code


# errno -> what it means for a user's path, in words.
_REASONS = {
    errno.ENOSPC: 'no space left on the device',
    errno.EDQUOT: 'disk quota exceeded',
    errno.EROFS: 'the file system is read-only',
    errno.EACCES: 'permission denied',
    errno.EPERM: 'permission denied',
    errno.ENOTDIR: 'a part of the path is a file, not a folder',
    errno.EEXIST: 'a file is in the way of a folder',
    errno.EISDIR: 'it is a folder, not a file',
    errno.ENOENT: 'no such file or folder',
    errno.ENAMETOOLONG: 'a name in the path is longer than the file system '
                        'allows',
}
# The same in the text of errors that carry no errno (TensorStore's, which
# Orbax raises as ValueError: "... No space left on device
# [os_error_code='28']").
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")
_STRERRORS = {'No space left on device': errno.ENOSPC,
              'Disk quota exceeded': errno.EDQUOT,
              'Read-only file system': errno.EROFS,
              'Permission denied': errno.EACCES}


def os_errno(err: BaseException) -> int | None:
  """The errno behind `err`: an OSError's, or one named in its message."""
  if isinstance(err, OSError) and err.errno:
    return err.errno
  text = str(err)
  match = _OS_ERROR_CODE.search(text)
  if match:
    return int(match.group(1))
  for strerror, code in _STRERRORS.items():
    if strerror in text:
      return code
  return None


def file_error(err: BaseException, path: str | None, action: str,
               fix: str) -> FileSystemError | None:
  """A one-line error for a failed file-system operation on a user's path.

  Args:
    err: the exception (an OSError, or an error whose message names one).
    path: the path concerned (None: `err.filename`).
    action: what failed, e.g. 'cannot write the report'.
    fix: what the user can do, e.g. 'choose another --workdir'.

  Returns:
    A `FileSystemError` ('<action> <path>: <reason>; <fix>'), or None when
    `err` is no file-system failure a user can fix (a bug: let it raise).
  """
  code = os_errno(err)
  if code not in _REASONS:
    return None
  if path is None:
    path = getattr(err, 'filename', None)
  where = f' {path}' if path else ''
  if code in (errno.ENOSPC, errno.EDQUOT):
    fix = f'free some space or {fix}'
  return FileSystemError(f'{action}{where}: {_REASONS[code]}; {fix}', code)
