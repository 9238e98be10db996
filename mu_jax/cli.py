"""Runs a mu_jax unlearning experiment: the `mu-jax` command and main.py.

  mu-jax                                           # default experiment, offline
  mu-jax --config configs/default.py:smoke --workdir runs/smoke
  mu-jax --method retrain --mode random --lr 0.005 --epoches 2  # the original
      # project's command lines (mu_main.py) work as shortcuts.

`python main.py` in a checkout takes the same flags. A relative `--config`
path is read from the current directory if it is there, else from the folder
that holds the `configs` package (the checkout, or site-packages), so
`--config configs/scrub.py` works from any directory.

Several processes (`--config.distributed.enabled=True`, one per host or
GPU) run the same command; all compute, process 0 writes the report and
prints the table. An error on any process ends all of them: the one that
failed prints its `mu_jax: error: ...` line, the others one saying that
another process failed (`parallel.end_process`).
"""

import errno
import importlib.util
import inspect
import logging as std_logging
import os
import re
import signal
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from mu_jax import errors


def _configs_parent() -> str:
  """The folder that holds the `configs` package (checkout or site-packages)."""
  spec = importlib.util.find_spec('configs')
  if spec is not None and spec.submodule_search_locations:
    return os.path.dirname(os.path.abspath(
        list(spec.submodule_search_locations)[0]))
  # Not importable: mu_jax and configs are installed side by side.
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_DEFAULT_CONFIG = os.path.join(_configs_parent(), 'configs', 'default.py')

_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG, 'Experiment configuration file.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', '', 'Output folder (default: runs/<data>_<model>/<experiment>).')


def _whole_number(value: str) -> int:
  try:
    return int(value)
  except ValueError:
    raise errors.ConfigError('expected a whole number') from None


def _number(value: str) -> float:
  try:
    return float(value)
  except ValueError:
    raise errors.ConfigError('expected a number') from None


def _classes(value: str) -> tuple[int, ...]:
  try:
    return tuple(int(c) for c in str(value).split(','))
  except ValueError:
    raise errors.ConfigError(
        'expected class indices such as 0 or 1,3') from None


def _at_least_one(value: int) -> int:
  if value < 1:
    raise errors.ConfigError('must be at least 1')
  return value


# The original project's flags (mu/arg_parser.py), as shortcuts for config
# fields: flag -> (config path, converter). `--method` and `--mode` also
# install that method's defaults for that mode (configs/<method>.py).
_SHORTCUTS = {
    'method': ('method.name', str),
    'mode': ('split.mode', str),
    'forget_class': ('split.forget_classes', _classes),
    'forget_num': ('split.forget_num',
                   lambda v: _at_least_one(_whole_number(v))),
    'saved_data_path': ('split.saved_data_path', str),
    'lr': ('method.optim.lr', _number),
    'epoches': ('method.epochs', _whole_number),
    'epochs': ('method.epochs', _whole_number),
    'batch_size': ('method.batch_size', _whole_number),
    'loss_weight': ('method.loss_weight', _number),
    'supervised_mode': ('method.supervised_mode', str),
    'data_augment': ('method.data_augment', str),
    'augment_num': ('method.augment_num', _whole_number),
    'seed': ('seed', _whole_number),
}
for _name, (_path, _) in _SHORTCUTS.items():
  flags.DEFINE_string(_name, None, f'Shortcut for --config.{_path}.')

# The flags of OPTML-Group/Unlearn-Saliency (SalUn's code, the most-cited
# PyTorch unlearning code), where they map cleanly; its --seed is ours.
# flag -> (config path, converter), as `_SHORTCUTS`; --unlearn and
# --class_to_replace are read by `_resolve_config`.
_SALUN_SHORTCUTS = {
    'unlearn_epochs': ('method.epochs', _whole_number),
    'unlearn_lr': ('method.optim.lr', _number),
}
for _name, (_path, _) in _SALUN_SHORTCUTS.items():
  flags.DEFINE_string(_name, None, f'Unlearn-Saliency\'s flag: '
                      f'--config.{_path}.')
flags.DEFINE_string('unlearn', None, "Unlearn-Saliency's flag: --method "
                    '(FT, GA, RL, retrain... are read as finetune, neggrad, '
                    'random_label, retrain).')
flags.DEFINE_string('class_to_replace', None,
                    "Unlearn-Saliency's flag: -1 forgets random examples "
                    '(--mode random), a class index that class '
                    '(--mode class_wise --forget_class C).')
flags.DEFINE_string('num_indexes_to_replace', None,
                    "Unlearn-Saliency's flag: random mode, --forget_num; "
                    'class-wise, the number of train images of the class '
                    '(checked: mu_jax forgets whole classes).')


def _set(config, path: str, value):
  *parents, leaf = path.split('.')
  for parent in parents:
    config = config[parent]
  config[leaf] = value


def _apply_shortcuts(config, method_only: bool = False):
  """Sets the config fields of the shortcut flags given on the command line.

  Args:
    config: the config (unlocked).
    method_only: only those inside `config.method`.
  """
  for name, (path, convert) in {**_SHORTCUTS, **_SALUN_SHORTCUTS}.items():
    value = flags.FLAGS[name].value
    if (value is None or name == 'method'  # Installed by _resolve_config.
        or method_only != path.startswith('method.')):
      continue
    try:
      converted = convert(value)
    except errors.ConfigError as e:
      raise errors.ConfigError(
          f'--{name}={value!r} is not valid ({e})') from None
    _set(config, path, converted)


def _method_flag() -> str | None:
  """--method, or Unlearn-Saliency's --unlearn (both: they must agree)."""
  from mu_jax import methods  # pylint: disable=g-import-not-at-top
  method, unlearn = flags.FLAGS.method, flags.FLAGS.unlearn
  if method is not None and unlearn is not None and (
      methods.canonical_name(method) != methods.canonical_name(unlearn)):
    raise errors.ConfigError(f'--method {method} and --unlearn {unlearn} name '
                             'different methods; give one of them')
  return method if method is not None else unlearn


def _apply_salun_split_flags(config):
  """Unlearn-Saliency's --class_to_replace and --num_indexes_to_replace.

  Its random forgetting is `--class_to_replace -1 --num_indexes_to_replace
  N`, its class-wise forgetting `--class_to_replace C` with N the class's
  train images (4500 of CIFAR-10's 45,000); mu_jax forgets whole classes, so
  N is checked against the class's count once the data is loaded
  (`split.class_wise_count`).
  """
  target, count = (flags.FLAGS.class_to_replace,
                   flags.FLAGS.num_indexes_to_replace)
  if target is None and count is None:
    return
  try:
    target = None if target is None else _whole_number(target)
    count = None if count is None else _at_least_one(_whole_number(count))
  except errors.ConfigError as e:
    raise errors.ConfigError(
        f'--class_to_replace={flags.FLAGS.class_to_replace!r} / '
        f'--num_indexes_to_replace={flags.FLAGS.num_indexes_to_replace!r} '
        f'is not valid ({e})') from None
  if target is not None and target < -1:
    raise errors.ConfigError(
        f'--class_to_replace={target}: use -1 (random forgetting) or a class '
        'index')
  if target is not None and target >= 0:
    config.split.mode = 'class_wise'
    config.split.forget_classes = (target,)
    config.split.class_wise_count = count or 0
  else:
    config.split.mode = 'random'
    if count is not None:
      config.split.forget_num = count


def _resolve_config(config):
  """The config after the shortcut flags, with the method's mode defaults.

  `config.method` is replaced by the method's section for the run's mode,
  from the config's table of sections (`config.method_configs`: each
  method's defaults in configs/<method>.py, or a config's recipe table),
  when `--method` names a method or when the section was made for another
  forgetting mode than the run's (e.g. `--method scrub --mode class_wise`,
  or `--config.split.mode=class_wise` on a random-mode config); the user's
  `--config.method.*` and method shortcut flags are applied on top. The
  table is then dropped, so that report.json holds the section used, unless
  the tuner reads it (configs/tune.py: each method starts from its own).
  """
  from mu_jax import methods  # pylint: disable=g-import-not-at-top
  from mu_jax import splits  # pylint: disable=g-import-not-at-top
  method_flag = _method_flag()
  with config.unlocked():
    _apply_shortcuts(config)
    _apply_salun_split_flags(config)
    config.split.mode = splits.canonical_mode(config.split.mode)
    name = method_flag or config.method.name
    if (method_flag is not None
        or config.method.get('mode') != config.split.mode):
      if method_flag is None:
        logging.info('using %s\'s %s section from the config\'s '
                     'method_configs table', name, config.split.mode)
      config.method = methods.section(config, name, config.split.mode)
      overrides = config_flags.get_override_values(flags.FLAGS['config'])
      for path, value in overrides.items():
        if path.startswith('method.'):
          _set(config, path, value)
    _apply_shortcuts(config, method_only=True)
    if 'method_configs' in config and 'tune' not in config:
      del config.method_configs
  if flags.FLAGS.forget_class is not None and config.split.mode != 'class_wise':
    # Random forgetting ignores split.forget_classes: the run would forget
    # random examples of every class instead of the class asked for.
    raise errors.ConfigError(
        f'--forget_class {flags.FLAGS.forget_class} forgets whole classes, '
        f'but this run forgets in {config.split.mode} mode (random examples '
        'of every class); add --mode class_wise')
  return config


# `--config=PATH`, `-config=PATH`, or `--config`/`-config` then PATH: the
# spellings ml_collections' config flag accepts (not `--config.a.b=...`).
_CONFIG_ARG = re.compile(r'^(-{1,2}config)(=(.*))?$', re.DOTALL)


def _resolve_config_path(value: str) -> str:
  """`value` (PATH or PATH:VARIANT) with PATH made findable from any cwd.

  A path that exists as given is kept as given; a relative one that does not
  but exists under the folder holding the `configs` package becomes that
  absolute path. The `:VARIANT` suffix is kept.

  Raises:
    FileNotFoundError: the file is in neither place.
  """
  path, colon, variant = value.partition(':')
  if not path or os.path.exists(path):
    return value
  candidate = os.path.join(_configs_parent(), path)
  if not os.path.isabs(path) and os.path.isfile(candidate):
    return candidate + colon + variant
  if os.path.isabs(path):
    raise FileNotFoundError(f'--config: no such file {path!r}')
  raise FileNotFoundError(
      f'--config: no such file {path!r} (looked in {os.getcwd()} and in '
      f'{_configs_parent()})')


def _with_config_paths(argv: list[str]) -> list[str]:
  """`argv` with each `--config` path resolved by `_resolve_config_path`."""
  argv = list(argv)
  i = 1
  while i < len(argv):
    if argv[i] == '--':  # Positional arguments follow.
      break
    match = _CONFIG_ARG.match(argv[i])
    if match and match.group(2) is not None:  # --config=PATH
      argv[i] = f'{match.group(1)}={_resolve_config_path(match.group(3))}'
    elif match and i + 1 < len(argv):  # --config PATH
      i += 1
      argv[i] = _resolve_config_path(argv[i])
    i += 1
  return argv


def _verbose() -> bool:
  """Whether --verbosity asks for debug output (1 or more)."""
  try:
    return logging.get_verbosity() >= logging.DEBUG
  except Exception:  # pylint: disable=broad-except
    return False  # Flags not parsed yet, or torn down at exit.


class _DropLibraryInfo:
  """Keeps the log records of chatty libraries out of the terminal.

  Orbax logs every file operation at INFO and, at ERROR with TensorStore
  specs hundreds of characters long, every write that failed in one of its
  threads (a full disk, a read-only folder); the same error reaches mu_jax,
  which reports it in one line. So Orbax's records are kept only when
  `--verbosity=1` (or more) asks for debug output. JAX logs at INFO that it
  found no TPU library on every machine that has none; its warnings stay.
  asyncio's "Future exception was never retrieved" for a failed write is
  dropped too.
  """

  def filter(self, record):
    if _verbose():
      return True
    if 'orbax' in record.pathname:
      return False
    if (record.exc_info and 'asyncio' in record.pathname
        and errors.file_error(record.exc_info[1], None, '', '') is not None):
      return False
    return record.levelno >= std_logging.WARNING or (
        'xla_bridge' not in record.pathname)


def _orbax_coroutine(obj) -> bool:
  """Whether `obj` is a coroutine of Orbax's code."""
  return inspect.iscoroutine(obj) and (
      f'{os.sep}orbax{os.sep}' in obj.cr_code.co_filename)


def _quiet_closed_event_loops() -> None:
  """Drops what Orbax's abandoned asynchronous work prints when collected.

  When a checkpoint write fails (a full disk), TensorStore's threads still
  complete futures of the asyncio loop Orbax has closed; Python reports
  each as an unraisable RuntimeError 'Event loop is closed'. When a restore
  fails (a checkpoint of another model width), the reads Orbax started for
  the other arrays are abandoned, and each coroutine, closed when collected,
  is reported with its error and a TensorStore spec (about 60 lines each).
  mu_jax has said what failed in one line; `--verbosity=1` shows them.
  Other unraisable exceptions reach the previous hook.
  """
  previous = sys.unraisablehook
  if getattr(previous, 'mu_jax_quiet', False):
    return

  def hook(unraisable):
    closed_loop = (unraisable.object is None
                   and unraisable.exc_type is RuntimeError
                   and str(unraisable.exc_value) == 'Event loop is closed')
    if _verbose() or not (closed_loop or _orbax_coroutine(unraisable.object)):
      previous(unraisable)

  hook.mu_jax_quiet = True
  sys.unraisablehook = hook


# Exit status of a run ended by Ctrl-C (SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
# Exit status of a run that finished but did not forget (guard.outcome
# not_forgotten or kept_original); --config.guard.allow_unmet=True gives 0.
EXIT_NOT_FORGOTTEN = 3
# Exit status when the reader of the standard output left (`mu-jax ... |
# head -1`): what shells report for a process ended by SIGPIPE, as `cat`
# would be, so `set -o pipefail` sees the same as for any other command.
EXIT_CLOSED_PIPE = 141
# The fix for a file-system error on a path that no one place owns.
_PATH_FIX = ('check the folders given to --workdir, --config.checkpoint_dir, '
             '--saved_data_path and --config.data.path')


def _exit(status: int, wait_for_others: bool = True) -> None:
  """sys.exit, or, in a multi-process run, `parallel.end_process`."""
  parallel = sys.modules.get('mu_jax.parallel')  # Not imported for --help.
  if parallel is not None:
    parallel.end_process(status, wait_for_others)
  sys.exit(status)


def _fail(message, wait_for_others: bool = True) -> None:
  """Prints `mu_jax: error: <message>` on one line and exits with status 2.

  `wait_for_others`: see `parallel.end_process`.
  """
  print(f"mu_jax: error: {' '.join(str(message).split())}", file=sys.stderr)
  _exit(2, wait_for_others)


def _interrupted() -> None:
  """Ends a run stopped by Ctrl-C: one line, exit status 130.

  Further Ctrl-Cs are ignored from here on: a second one (a double press)
  would otherwise interrupt the exit handlers (JAX's, Orbax's) with a
  traceback.
  """
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  sys.stdout.flush()
  print('mu_jax: interrupted; every checkpoint saved so far is complete, and '
        'the same command resumes from the last one', file=sys.stderr)
  _exit(EXIT_INTERRUPTED)


def _other_process_failed(error: BaseException) -> str:
  """The message of a process that survived another one of its run."""
  import jax  # pylint: disable=g-import-not-at-top
  lines = str(error).strip().splitlines() or [type(error).__name__]
  return (f'process {jax.process_index()} of {jax.process_count()} stops '
          'because another process of this distributed run failed or '
          f'became unreachable ({lines[0][:200]}); the first error is in '
          "that process's output")


def _config_file(argv: list[str]) -> str:
  """The file of the last `--config` in `argv` (the one absl keeps), without
  its :VARIANT; the default config's when there is none."""
  path = _DEFAULT_CONFIG
  for i, arg in enumerate(argv[1:], 1):
    if arg == '--':  # Positional arguments follow.
      break
    match = _CONFIG_ARG.match(arg)
    if match and match.group(2) is not None:  # --config=PATH
      path = match.group(3)
    elif match and i + 1 < len(argv):  # --config PATH
      path = argv[i + 1]
  return path.partition(':')[0]


def _raised_by_config(error: BaseException, config_file: str) -> bool:
  """Whether `error` was raised in a config file: the `--config` file or a
  module of the `configs` package it builds on (the innermost frame of its
  traceback is one of theirs)."""
  tb = error.__traceback__
  if tb is None:
    return False
  while tb.tb_next is not None:
    tb = tb.tb_next
  raiser = os.path.realpath(tb.tb_frame.f_code.co_filename)
  package = os.path.realpath(os.path.join(_configs_parent(), 'configs'))
  return (raiser == os.path.realpath(config_file)
          or os.path.dirname(raiser) == package)


def _user_error_in(error: BaseException,
                   config_file: str = '') -> BaseException | None:
  """The user's error that `error` was raised from, if any (the innermost).

  A MuJaxError, or a ValueError raised by a config file (`config_file` or
  configs/): config files import no mu_jax, so they report a bad variant or
  method name as a ValueError with a one-line message. ml_collections
  re-raises an error of the config file as the same type with a traceback
  for a message, and absl wraps that in a flags.Error.
  """
  found, seen = None, set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if ((isinstance(error, errors.MuJaxError)
         or (isinstance(error, ValueError) and config_file
             and _raised_by_config(error, config_file)))
        and not str(error).startswith('Error whilst parsing config file')):
      found = error
    error = error.__cause__ or error.__context__
  return found


def _raised_by_overrides(error: BaseException) -> bool:
  """Whether ml_collections raised `error` applying a --config.a.b override."""
  tb = error.__traceback__
  while tb is not None:
    if tb.tb_frame.f_code.co_filename.endswith(
        os.path.join('config_flags', 'config_path.py')):
      return True
    tb = tb.tb_next
  return False


def _unknown_override(error: BaseException, argv: list[str]) -> str:
  """The message for a --config.a.b override of a field that does not exist."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]  # AttributeError(KeyError(...)) for a leaf.
  text = str(error.args[0]) if error.args else str(error)
  key, _, hint = text.partition('\n')
  key = key.strip('\'"')
  overrides = [a for a in argv[1:] if re.match(r'^--?config\.', a)]
  named = [a for a in overrides
           if key in re.split(r'[.=]', a.split('=', 1)[0])[1:]]
  where = (named or overrides or ['--config'])[0]
  hint = hint.strip()
  hint = f' ({hint[:1].lower()}{hint[1:]})' if hint else ''
  return (f'{where}: the config has no field {key!r}{hint}; the fields are '
          'listed in configs/default.py')


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every error a user can make as one line.

  A config file that raises anything but a MuJaxError or a ValueError of its
  own (`_user_error_in`) is a bug in it: its traceback is kept, above the
  one line.
  """
  try:
    return flags.FLAGS(argv)
  except SyntaxError as e:  # The config file (or a module it imports).
    _fail(f'--config: {e.filename}, line {e.lineno}: syntax error '
          f'({e.msg}); fix that file')
  except flags.Error as e:
    cause = _user_error_in(e, _config_file(argv))
    if cause is not None:
      _fail(f'--config: {cause}')
    message = str(e)
    if 'Traceback' in message:
      print(message, file=sys.stderr)
      _fail('--config: the config file raised an exception (traceback above)')
    _fail(f'{message}; see --helpfull for the flags')
  except (KeyError, AttributeError) as e:
    if not _raised_by_overrides(e):
      raise
    _fail(_unknown_override(e, argv))


def main(argv):
  # On the handler: asyncio's records reach it through the root logger.
  logging.get_absl_handler().addFilter(_DropLibraryInfo())
  _quiet_closed_event_loops()
  # Imported here so that --help stays fast.
  from mu_jax import parallel  # pylint: disable=g-import-not-at-top
  from mu_jax import pipeline  # pylint: disable=g-import-not-at-top
  from mu_jax import report  # pylint: disable=g-import-not-at-top
  try:
    if len(argv) > 1:
      raise errors.ConfigError(
          f'unexpected arguments: {" ".join(argv[1:])}; flags take the form '
          '--name=value')
    config = _resolve_config(_CONFIG.value)
    # The report goes there at the end: refuse a folder that cannot be
    # written before hours of training (default: under ./runs).
    report.check_output_folder(_WORKDIR.value or 'runs', '--workdir')
    # Before any JAX computation: two host devices on a multi-core CPU (both
    # cores busy; JAX_NUM_CPU_DEVICES=1 restores one), the model's faster CPU
    # convolution kernels and the persistent compilation cache
    # (docs/PERFORMANCE.md).
    parallel.configure_host(cpu_convolutions=parallel.cpu_convolutions_for(
        config.model.name, config.mesh.cpu_convolutions))
    if 'suite' in config:  # configs/suite*.py: every method, many seeds.
      from mu_jax import suite  # pylint: disable=g-import-not-at-top
      result = suite.run(config, _WORKDIR.value)
    elif 'tune' in config:  # configs/tune.py: search with the oracle.
      from mu_jax import tune  # pylint: disable=g-import-not-at-top
      result = tune.run(config, _WORKDIR.value)
    else:
      result = pipeline.run(config, _WORKDIR.value)
  except errors.MuJaxError as e:
    _fail(e)
  except OSError as e:
    # A user's path that a library opened (absl, TensorBoard, numpy...):
    # one line if it names the path and is a file-system error; else a bug.
    error = errors.file_error(e, None, 'cannot use', _PATH_FIX)
    if error is None or not e.filename:
      if parallel.is_distributed():
        traceback.print_exc()
        _exit(1)  # A bug: its traceback, and no process left waiting.
      raise
    _fail(error)
  except Exception as e:  # pylint: disable=broad-except
    if parallel.peer_failure(e):
      # The failed process is gone (its connections closed): do not wait.
      _fail(_other_process_failed(e), wait_for_others=False)
    if parallel.is_distributed():
      traceback.print_exc()
      _exit(1)  # A bug: its traceback, and no process left waiting.
    raise
  if parallel.is_main_process():  # It wrote the report.
    print(result['table'])
    report_file = result.get('report_file') or os.path.join(
        result['workdir'], 'report.json')
    logging.info('report: %s', report_file)
    print(f'report: {report_file}')
  try:
    # No process reports success before process 0 has written the report.
    parallel.sync('mu_jax: run finished')
  except Exception as e:  # pylint: disable=broad-except
    if not parallel.peer_failure(e):
      raise
    _fail(_other_process_failed(e), wait_for_others=False)
  from mu_jax import guard  # pylint: disable=g-import-not-at-top
  if guard.unmet(result, config):
    _exit(EXIT_NOT_FORGOTTEN)


class _WatchedStdout:
  """sys.stdout, marking the OSErrors of its writes as the standard output's.

  Without the mark, an OSError without a file name (a closed pipe, a full
  device) could be any stream's or socket's.
  """
  mark = 'mu_jax_stdout'

  def __init__(self, stream):
    self.stream = stream

  def _marked(self, method, *args):
    try:
      return method(*args)
    except OSError as e:
      setattr(e, self.mark, True)
      raise

  def write(self, text):
    return self._marked(self.stream.write, text)

  def writelines(self, lines):
    return self._marked(self.stream.writelines, lines)

  def flush(self):
    return self._marked(self.stream.flush)

  def __getattr__(self, name):
    return getattr(self.stream, name)


def _stdout_failed(error: OSError) -> None:
  """Ends a run whose standard output cannot be written.

  A closed pipe (the reader left: `mu-jax ... | head -1`) ends quietly with
  `EXIT_CLOSED_PIPE`; any other failure (a full device, /dev/full) with one
  line and exit status 2. Either way the run has finished and written its
  report.json (only the printed summary is lost).
  """
  # Anything still buffered, and Python's flush at exit, go nowhere now.
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 1)
  os.close(devnull)
  if error.errno == errno.EPIPE:
    _exit(EXIT_CLOSED_PIPE)
  fix = "redirect it elsewhere (a finished run's report.json holds its results)"
  message = errors.file_error(error, None, 'cannot write to the standard '
                              'output', fix)
  _fail(message or f'cannot write to the standard output '
        f'({error.strerror or error}); {fix}')


# absl's help flags; they print the flags and end with status 1, which
# `run` turns into 0 after the methods, modes and where the fields are.
_HELP_FLAGS = ('-h', '--help', '-help', '-?', '--helpshort', '-helpshort',
               '--helpfull', '-helpfull')


def _help_epilogue() -> str:
  """What --help adds to absl's list of flags."""
  from mu_jax import methods  # pylint: disable=g-import-not-at-top
  aliases = ', '.join(f'{a} = {m}' for a, m in sorted(methods.aliases().items()))
  return '\n'.join([
      '',
      'methods (--method, or --unlearn): ' + ', '.join(methods.AVAILABLE),
      f'  aliases: {aliases}',
      'modes (--mode): random, class_wise',
      'config fields (--config.a.b=value): every one is commented in '
      'configs/default.py; a method\'s own in configs/<method>.py',
      'exit status: 0 done, 2 bad input, 3 ran but did not forget '
      '(NOT FORGOTTEN), 130 interrupted, 141 closed pipe; see README.md',
  ])


def run():
  """The `mu-jax` command (and `python main.py`): parses flags, runs main.

  Bad input ends with one line `mu_jax: error: ...` and exit status 2;
  Ctrl-C with one line `mu_jax: interrupted; ...` and exit status 130,
  after the checkpoint being written (if any) is complete; a standard output
  that cannot be written, after the run, quietly with status 141 if it was a
  pipe whose reader left, else with one line and status 2.
  """
  try:
    sys.argv = _with_config_paths(sys.argv)
  except FileNotFoundError as e:
    _fail(e)
  # --help lists the key flags of the program absl runs (sys.argv[0]: main.py
  # or the mu-jax script), and its usage text is __main__'s docstring.
  for flag in flags.FLAGS.get_key_flags_for_module(__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  main_module = sys.modules.get('__main__')
  if main_module is not None and not main_module.__doc__:
    main_module.__doc__ = __doc__
  stdout = sys.stdout
  if not isinstance(stdout, _WatchedStdout):
    sys.stdout = _WatchedStdout(stdout)
  help_asked = any(arg.split('=')[0] in _HELP_FLAGS for arg in sys.argv[1:])
  try:
    try:
      app.run(main, flags_parser=_parse_flags)
    except SystemExit as e:
      if help_asked and e.code == 1:  # absl ends its help with status 1.
        print(_help_epilogue())
        e = SystemExit(0)
      # What is still buffered is written here, where a failure can be
      # reported, rather than by Python at exit, which prints a traceback.
      sys.stdout.flush()
      raise e
  except KeyboardInterrupt:
    _interrupted()
  except OSError as e:
    if not getattr(e, _WatchedStdout.mark, False):
      raise
    _stdout_failed(e)
  finally:
    sys.stdout = stdout


if __name__ == '__main__':
  run()
