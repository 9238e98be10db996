"""Runs a mu_jax unlearning experiment: the `mu-jax` command and main.py.

  mu-jax                                           # default experiment, offline
  mu-jax --config configs/default.py:smoke --workdir runs/smoke
  mu-jax --method retrain --mode random --lr 0.005 --epoches 2  # the original
      # project's command lines (mu_main.py) work as shortcuts.

`python main.py` in a checkout takes the same flags. A relative `--config`
path is read from the current directory if it is there, else from the folder
that holds the `configs` package (the checkout, or site-packages), so
`--config configs/scrub.py` works from any directory.
"""

import importlib.util
import logging as std_logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags


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

# The original project's flags (mu/arg_parser.py), as shortcuts for config
# fields: flag -> (config path, converter). `--method` and `--mode` also
# install that method's defaults for that mode (configs/<method>.py).
_SHORTCUTS = {
    'method': ('method.name', str),
    'mode': ('split.mode', str),
    'forget_class': ('split.forget_classes',
                     lambda v: tuple(int(c) for c in str(v).split(','))),
    'forget_num': ('split.forget_num', lambda v: _at_least_one(int(v))),
    'saved_data_path': ('split.saved_data_path', str),
    'lr': ('method.optim.lr', float),
    'epoches': ('method.epochs', int),
    'epochs': ('method.epochs', int),
    'batch_size': ('method.batch_size', int),
    'loss_weight': ('method.loss_weight', float),
    'supervised_mode': ('method.supervised_mode', str),
    'data_augment': ('method.data_augment', str),
    'augment_num': ('method.augment_num', int),
    'seed': ('seed', int),
}
for _name, (_path, _) in _SHORTCUTS.items():
  flags.DEFINE_string(_name, None, f'Shortcut for --config.{_path}.')


def _at_least_one(value: int) -> int:
  if value < 1:
    raise ValueError('must be at least 1')
  return value


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
  for name, (path, convert) in _SHORTCUTS.items():
    value = flags.FLAGS[name].value
    if (value is None or name == 'method'  # Installed by _resolve_config.
        or method_only != path.startswith('method.')):
      continue
    try:
      _set(config, path, convert(value))
    except ValueError as e:
      raise ValueError(f'--{name}={value!r} is not valid ({e})') from None


def _resolve_config(config):
  """The config after the shortcut flags, with the method's mode defaults.

  `config.method` is replaced by the method's section for the run's mode
  (configs/<method>.py, or the recipe table `config.method_recipes`) when
  `--method` names a method or when the section was made for another
  forgetting mode than the run's (e.g. `--method scrub --mode class_wise`,
  or `--config.split.mode=class_wise` on a random-mode config); the user's
  `--config.method.*` and method shortcut flags are applied on top.
  """
  from configs import default  # pylint: disable=g-import-not-at-top
  with config.unlocked():
    _apply_shortcuts(config)
    if config.split.mode == 'classwise':
      config.split.mode = 'class_wise'
    name = flags.FLAGS.method or config.method.name
    if (flags.FLAGS.method is not None
        or config.method.get('mode') != config.split.mode):
      if flags.FLAGS.method is None:
        logging.info('using %s\'s %s defaults (configs/%s.py)', name,
                     config.split.mode, name)
      config.method = default.method_config(
          name, config.split.mode, smoke=config.smoke,
          recipes=config.method_recipes)
      overrides = config_flags.get_override_values(flags.FLAGS['config'])
      for path, value in overrides.items():
        if path.startswith('method.'):
          _set(config, path, value)
    _apply_shortcuts(config, method_only=True)
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


class _DropLibraryInfo:
  """Keeps warnings only from chatty libraries.

  Orbax logs every file operation at INFO, and JAX logs at INFO that it found
  no TPU library on every machine that has none.
  """

  def filter(self, record):
    return (record.levelno >= std_logging.WARNING
            or ('orbax' not in record.pathname
                and 'xla_bridge' not in record.pathname))


def main(argv):
  logging.get_absl_logger().addFilter(_DropLibraryInfo())
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  # Imported here so that --help stays fast.
  from mu_jax import errors  # pylint: disable=g-import-not-at-top
  from mu_jax import parallel  # pylint: disable=g-import-not-at-top
  from mu_jax import pipeline  # pylint: disable=g-import-not-at-top
  try:
    config = _resolve_config(_CONFIG.value)
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
  except (errors.MuJaxError, ValueError) as e:
    print(f'mu_jax: error: {e}', file=sys.stderr)
    sys.exit(2)
  print(result['table'])
  logging.info('report: %s', os.path.join(
      result['workdir'], 'report.json'))
  print(f"report: {os.path.join(result['workdir'], 'report.json')}")


def run():
  """The `mu-jax` command (and `python main.py`): parses flags, runs main."""
  try:
    sys.argv = _with_config_paths(sys.argv)
  except FileNotFoundError as e:
    print(f'mu_jax: error: {e}', file=sys.stderr)
    sys.exit(2)
  # --help lists the key flags of the program absl runs (sys.argv[0]: main.py
  # or the mu-jax script), and its usage text is __main__'s docstring.
  for flag in flags.FLAGS.get_key_flags_for_module(__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  main_module = sys.modules.get('__main__')
  if main_module is not None and not main_module.__doc__:
    main_module.__doc__ = __doc__
  app.run(main)


if __name__ == '__main__':
  run()
