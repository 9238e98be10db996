"""Every config file loads, names a known method, and its smoke run works."""

import glob
import importlib
import os

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
from ml_collections import config_flags

from mu_jax import methods

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIGS = sorted(
    os.path.basename(p)[:-3] for p in glob.glob(f'{_ROOT}/configs/*.py')
    if not p.endswith('__init__.py'))


class ConfigsTest(parameterized.TestCase):

  @parameterized.parameters(*_CONFIGS)
  def test_config_loads(self, name):
    module = importlib.import_module(f'configs.{name}')
    for arg in (None, 'smoke'):
      config = module.get_config(arg)
      self.assertIn(methods.canonical_name(config.method.name),
                    methods.AVAILABLE)
      self.assertGreaterEqual(config.method.epochs, 1)

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
