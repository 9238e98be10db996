"""Runs a mu_jax unlearning experiment.

  python main.py                                   # default experiment, offline
  python main.py --config configs/default.py --workdir runs/ft \
      --config.method.optim.lr=0.02
  python main.py --method retrain --mode random --lr 0.005 --epoches 2  # the
      # original project's command lines (mu_main.py) work as shortcuts.

Kept short on purpose: the logic lives in mu_jax.pipeline.
"""

import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/default.py', 'Experiment configuration file.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', '', 'Output folder (default: runs/<data>_<model>/<experiment>).')

# The original project's flags (mu/arg_parser.py), as shortcuts for config
# fields. Each maps to (config path, converter).
_SHORTCUTS = {
    'method': ('method.name', str),  # Also installs the method's defaults.
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


def _apply_shortcuts(config):
  """Applies the original project's flags on top of the config."""
  from configs import default  # pylint: disable=g-import-not-at-top
  from mu_jax import methods  # pylint: disable=g-import-not-at-top
  with config.unlocked():
    if flags.FLAGS.method is not None:
      # The chosen method's own defaults, then the user's --config.method.*.
      config.method = methods.get_config(flags.FLAGS.method)
      if config.variant == 'smoke':
        default.shrink_method(config.method)
      overrides = config_flags.get_override_values(flags.FLAGS['config'])
      for path, value in overrides.items():
        if path.startswith('method.'):
          _set(config, path, value)
    for name, (path, convert) in _SHORTCUTS.items():
      value = flags.FLAGS[name].value
      if value is None or name == 'method':
        continue
      try:
        _set(config, path, convert(value))
      except ValueError as e:
        raise ValueError(f'--{name}={value!r} is not valid ({e})') from None
  return config


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
  from mu_jax import parallel  # pylint: disable=g-import-not-at-top
  from mu_jax import pipeline  # pylint: disable=g-import-not-at-top
  from mu_jax import errors  # pylint: disable=g-import-not-at-top
  try:
    config = _apply_shortcuts(_CONFIG.value)
    # Before any JAX computation: two host devices on a multi-core CPU (both
    # cores busy; JAX_NUM_CPU_DEVICES=1 restores one), the model's faster CPU
    # convolution kernels and the persistent compilation cache
    # (docs/PERFORMANCE.md).
    parallel.configure_host(cpu_convolutions=parallel.cpu_convolutions_for(
        config.model.name, config.mesh.cpu_convolutions))
    if 'suite' in config:  # configs/suite*.py: every method, many seeds.
      from mu_jax import suite  # pylint: disable=g-import-not-at-top
      result = suite.run(config, _WORKDIR.value)
    else:
      result = pipeline.run(config, _WORKDIR.value)
  except errors.USER_ERRORS as e:
    print(f'mu_jax: error: {e}', file=sys.stderr)
    sys.exit(2)
  print(result['table'])
  logging.info('report: %s', os.path.join(
      result['workdir'], 'report.json'))
  print(f"report: {os.path.join(result['workdir'], 'report.json')}")


if __name__ == '__main__':
  app.run(main)
