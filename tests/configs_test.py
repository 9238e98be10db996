"""Every config file loads, names a known method, and its smoke run works;
config files are data (no mu_jax imports) with a table of every method's
sections."""

import ast
import glob
import importlib
import os
import sys

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
from ml_collections import config_flags

from mu_jax import methods

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIGS = sorted(
    os.path.basename(p)[:-3] for p in glob.glob(f'{_ROOT}/configs/*.py')
    if not p.endswith('__init__.py'))


def _imports(path: str) -> set[str]:
  """The top-level modules that the file at `path` imports."""
  with open(path) as f:
    tree = ast.parse(f.read())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name.split('.')[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and not node.level:
      names.add(node.module.split('.')[0])
  return names


class ConfigsTest(parameterized.TestCase):

  @parameterized.parameters(*_CONFIGS)
  def test_config_loads(self, name):
    module = importlib.import_module(f'configs.{name}')
    for arg in (None, 'smoke'):
      config = module.get_config(arg)
      self.assertIn(methods.canonical_name(config.method.name),
                    methods.AVAILABLE)
      self.assertGreaterEqual(config.method.epochs, 1)

  @parameterized.parameters(*_CONFIGS)
  def test_every_config_carries_the_method_table(self, name):
    module = importlib.import_module(f'configs.{name}')
    for arg in (None, 'smoke'):
      config = module.get_config(arg)
      table = config.method_configs
      self.assertCountEqual(table, ('random', 'class_wise'))
      for mode, sections in table.items():
        self.assertCountEqual(sections, methods.AVAILABLE)
        for method, section in sections.items():
          self.assertEqual((section.name, section.mode), (method, mode))
          if arg == 'smoke':
            self.assertEqual((section.epochs, section.batch_size), (1, 32))
      # The section run is the table's (a copy), unless a variant edits it.
      if name in ('default', 'cifar10_resnet18', 'finetune', 'salun'):
        self.assertEqual(
            config.method.to_dict(),
            table[config.split.mode][config.method.name].to_dict())
        self.assertIsNot(config.method,
                         table[config.split.mode][config.method.name])

  def test_method_config_files_are_found_by_file(self):
    from configs import default  # pylint: disable=g-import-not-at-top
    self.assertEqual(default.method_names(), list(methods.AVAILABLE))
    # Module names only: aliases are mu_jax's (methods.canonical_name).
    with self.assertRaisesRegex(ValueError, "unknown method 'GA'"):
      default.method_config('GA')
    with self.assertRaisesRegex(ValueError, 'class_wise'):
      default.method_config('salun', 'classwise')

  def test_configs_are_data(self):
    # configs/ imports ml_collections, the standard library and itself;
    # mu_jax imports configs only in its API's default config.
    allowed = {'ml_collections', 'configs', *sys.stdlib_module_names}
    for path in glob.glob(f'{_ROOT}/configs/*.py'):
      for top in _imports(path):
        self.assertIn(top, allowed, os.path.relpath(path, _ROOT))
    importers = sorted(
        os.path.relpath(path, _ROOT)
        for path in glob.glob(f'{_ROOT}/mu_jax/**/*.py', recursive=True)
        if 'configs' in _imports(path))
    self.assertEqual(importers, ['mu_jax/api.py'])

  def test_unknown_variant(self):
    from configs import default  # pylint: disable=g-import-not-at-top
    with self.assertRaisesRegex(ValueError, 'smoke'):
      default.get_config('huge')

  def test_command_line_overrides(self):
    values = flags.FlagValues()
    argv = ['prog', f'--config={_ROOT}/configs/default.py:smoke',
            '--config.method.optim.lr=0.3', '--config.split.forget_classes=(1,2)']
    config_flags.DEFINE_config_file('config', None, 'cfg', flag_values=values,
                                    sys_argv=argv, lock_config=True)
    values(argv)
    self.assertEqual(values.config.method.optim.lr, 0.3)
    self.assertEqual(tuple(values.config.split.forget_classes), (1, 2))
    self.assertEqual(values.config.data.max_train, 512)  # The smoke variant.


if __name__ == '__main__':
  absltest.main()
