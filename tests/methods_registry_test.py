"""Every list of methods comes from the method modules (their `CARD`).

A dummy method, registered as a module would be by its file, is picked up
by `--method` (its alias), the suite's default rows and labels, the tuner's
grid (its knob), the benchmarks and the robustness tool.
"""

import os
import sys
import tempfile
import types
from unittest import mock

from absl.testing import absltest

import configs
from configs import default
from configs import suite as suite_config
from configs import tune as tune_config
from mu_jax import methods
from mu_jax import suite
from mu_jax import suite_report
from mu_jax import tune
from mu_jax.methods import base
from mu_jax.methods import finetune
from tests import test_util

_DUMMY_CONFIG = '''"""The dummy method's config file: fine-tuning's defaults."""

from configs import default


def method(mode='random'):
  section = default.method_config('finetune', mode)
  section.name = 'dummy'
  return section
'''


def _robustness():
  return test_util.load_tool('robustness')


class RegistryTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    dummy = types.ModuleType('mu_jax.methods.dummy')
    dummy.CARD = base.Card(label='Dummy', aliases=('dm',), order=50,
                           knob=('epochs', (1, 3)))
    dummy.make = finetune.make
    # Its config file, configs/dummy.py (found by file, in a folder added
    # to the configs package's path): fine-tuning's defaults.
    folder = self.enter_context(tempfile.TemporaryDirectory())
    with open(os.path.join(folder, 'dummy.py'), 'w') as f:
      f.write(_DUMMY_CONFIG)
    self.enter_context(mock.patch.object(
        configs, '__path__', [*configs.__path__, folder]))
    # configs.dummy, imported by the table, goes with the test.
    self.enter_context(mock.patch.dict(sys.modules, {
        'mu_jax.methods.dummy': dummy}))
    self.enter_context(mock.patch.object(
        methods, 'AVAILABLE', (*methods.AVAILABLE, 'dummy')))
    self.dummy = dummy

  def test_names_and_order(self):
    self.assertIs(methods.get('DM'), self.dummy)
    self.assertEqual(methods.canonical_name('dm'), 'dummy')
    # The SalUn paper's rows first, the dummy after them.
    self.assertEqual(methods.unlearning_methods(),
                     ['finetune', 'random_label', 'neggrad', 'neggrad_plus',
                      'bad_teaching', 'scrub', 'salun', 'dummy'])
    self.assertEqual(suite_report.labels()['dummy'], 'Dummy')

  def test_its_config_file_joins_the_table(self):
    self.assertIn('dummy', default.method_names())
    config = default.get_config()
    for mode in ('random', 'class_wise'):
      self.assertEqual(config.method_configs[mode].dummy.name, 'dummy')
    # `--method dm --mode class_wise`: the alias, resolved by mu_jax.
    section = methods.section(config, 'DM', 'class_wise')
    self.assertEqual((section.name, section.mode), ('dummy', 'class_wise'))

  def test_suite_tuner_benchmarks_and_robustness_pick_it_up(self):
    config = suite_config.get_config('smoke')
    names, _, _ = suite.plan(config)
    self.assertEqual(names[-1], 'dummy')
    grid = tune._grid(tune_config.get_config().tune, 'dummy',
                      default.method_config('finetune'), seed=0)
    self.assertEqual({point['epochs'] for point in grid[1:]}, {1, 3})
    from benchmarks import mu_jax_side  # pylint: disable=g-import-not-at-top
    self.assertIn('dummy', mu_jax_side.default_methods())
    self.assertIn('dummy', _robustness().parse_args([]).methods)

  def test_every_method_has_a_card(self):
    for name in methods.AVAILABLE:
      if name != 'dummy':
        self.assertTrue(hasattr(methods.get(name), 'CARD'), name)


if __name__ == '__main__':
  absltest.main()
