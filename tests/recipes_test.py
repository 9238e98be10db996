"""The paper-scale recipes (configs/cifar10_resnet18.py, docs/RECIPES.md).

Pins every method's reference recipe per forgetting mode, checks that none
of it comes from the methods' CPU defaults, and that the recipes mean what
docs/RECIPES.md says once a method turns them into steps (full passes).
"""

import contextlib
import importlib
import sys
import types
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import ml_collections

from configs import cifar10_resnet18
from configs import default
from configs import suite_cifar10_resnet18
from mu_jax import methods
from mu_jax.methods import base

# Key fields of every recipe, as docs/RECIPES.md tables them. Dotted keys
# are nested fields (optim.lr is config.method.optim.lr).
_SGD_SALUN = {'optim.name': 'sgd', 'optim.momentum': 0.9,
              'optim.weight_decay': 5e-4, 'optim.schedule': 'constant',
              'optim.milestones': (), 'optim.warmup_epochs': 0,
              'optim.nesterov': False}
_FINETUNE = {'epochs': 10, 'batch_size': 256, 'forget_batch_size': 0,
             'retain_batch_size': 0, 'augment': True, 'optim.lr': 0.01,
             **_SGD_SALUN}
_RANDOM_LABEL = {'epochs': 10, 'batch_size': 256, 'forget_batch_size': 0,
                 'retain_batch_size': 0, 'augment': True, 'optim.lr': 0.013,
                 'loop': 'sequential', 'retain_steps': 0,
                 'different_label': False, 'retain_weight': 1.0,
                 **_SGD_SALUN}
_SALUN = {**_RANDOM_LABEL, 'mask_ratio': 0.5}
_NEGGRAD = {'epochs': 5, 'batch_size': 256, 'forget_batch_size': 0,
            'retain_batch_size': 0, 'augment': True, 'optim.lr': 1e-4,
            **_SGD_SALUN}
_NEGGRAD_PLUS = {'epochs': 23, 'batch_size': 32, 'forget_batch_size': 16,
                 'retain_batch_size': 32, 'augment': False, 'alpha': 0.9999,
                 'optim.name': 'sgd', 'optim.lr': 0.01, 'optim.momentum': 0.0,
                 'optim.weight_decay': 0.0, 'optim.schedule': 'constant'}
_BAD_TEACHING = {'epochs': 1, 'batch_size': 256, 'forget_batch_size': 64,
                 'retain_batch_size': 192, 'augment': False,
                 'temperature': 1.0, 'retain_fraction': 0.3,
                 'variant': 'canonical', 'optim.name': 'adam',
                 'optim.lr': 1e-4, 'optim.weight_decay': 0.0,
                 'optim.schedule': 'constant'}
_SCRUB_RANDOM = {'epochs': 5, 'batch_size': 32, 'forget_batch_size': 16,
                 'retain_batch_size': 32, 'augment': False, 'msteps': 3,
                 'temperature': 4.0, 'alpha': 0.5, 'gamma': 1.0,
                 'retain_fraction': 1.0, 'lr_decay_epochs': (3, 5, 9),
                 'lr_decay_rate': 0.1, 'variant': 'canonical',
                 'optim.name': 'sgd', 'optim.lr': 5e-4,
                 'optim.momentum': 0.9, 'optim.weight_decay': 5e-4,
                 'optim.schedule': 'constant'}
_SCRUB_CLASS_WISE = {'epochs': 3, 'batch_size': 256, 'forget_batch_size': 512,
                     'retain_batch_size': 256, 'augment': False, 'msteps': 2,
                     'temperature': 4.0, 'alpha': 0.001, 'gamma': 0.99,
                     'retain_fraction': 1.0, 'lr_decay_epochs': (3, 5, 9),
                     'lr_decay_rate': 0.1, 'variant': 'canonical',
                     'optim.name': 'sgd', 'optim.lr': 5e-4,
                     'optim.momentum': 0.9, 'optim.weight_decay': 5e-4,
                     'optim.schedule': 'constant'}
EXPECTED = {
    ('finetune', 'random'): _FINETUNE,
    ('finetune', 'class_wise'): _FINETUNE,
    ('random_label', 'random'): _RANDOM_LABEL,
    ('random_label', 'class_wise'): _RANDOM_LABEL,
    ('salun', 'random'): _SALUN,
    ('salun', 'class_wise'): _SALUN,
    ('neggrad', 'random'): _NEGGRAD,
    ('neggrad', 'class_wise'): _NEGGRAD,
    ('neggrad_plus', 'random'): _NEGGRAD_PLUS,
    ('neggrad_plus', 'class_wise'): _NEGGRAD_PLUS,
    ('bad_teaching', 'random'): _BAD_TEACHING,
    ('bad_teaching', 'class_wise'): _BAD_TEACHING,
    ('scrub', 'random'): _SCRUB_RANDOM,
    ('scrub', 'class_wise'): _SCRUB_CLASS_WISE,
}
_CASES = [dict(name=n, mode=m) for n, m in EXPECTED]
# Fields of the mu_jax extensions: off in every reference.
_EXTENSIONS_OFF = {'loss_weight': 0.0, 'supervised_mode': 'simple',
                   'ssl_no_grad': False, 'data_augment': 'none'}
# The config's split at paper scale (50,000 images): 5,000 forget samples in
# both modes (10% random, or class 0).
_NUM_FORGET, _NUM_RETAIN = 5000, 45000


def _flat(section, prefix=''):
  out = {}
  for key, value in section.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = value
  return out


def _absurd_section(name='absurd', mode='random', **unused):
  """A CPU-default section where every value is wrong."""
  del unused
  return ml_collections.ConfigDict({
      'name': name, 'mode': mode, 'variant': 'capstone', 'epochs': 999,
      'batch_size': 7, 'forget_batch_size': 3, 'retain_batch_size': 5,
      'augment': True, 'loss_weight': 9.0, 'supervised_mode': 'original',
      'ssl_no_grad': True, 'data_augment': 'arpl', 'augment_num': 1,
      'alpha': 0.777, 'gamma': 0.777, 'temperature': 0.777,
      'retain_fraction': 0.777, 'mask_ratio': 0.777, 'retain_weight': 0.777,
      'msteps': 99, 'retain_steps': 14, 'loop': 'summed',
      'different_label': True, 'lr_decay_epochs': (1,),
      'lr_decay_rate': 0.777,
      'optim': {'name': 'adam', 'lr': 123.0, 'momentum': 0.123,
                'weight_decay': 0.5, 'nesterov': True, 'schedule': 'cosine',
                'milestones': (1,), 'gamma': 0.777, 'warmup_epochs': 7}})


def _cpu_defaults(name, mode):
  """The method's CPU (Fashion-MNIST) defaults: configs/<name>.py:method."""
  return default.method_config(name, mode)


def _patch_cpu_defaults(stack, name):
  """Makes every source of CPU defaults return `_absurd_section`."""
  targets = [(default, 'method_section'),
             (importlib.import_module(f'configs.{name}'), 'method')]
  for owner, attribute in targets:
    stack.enter_context(mock.patch.object(
        owner, attribute, lambda *args, **kwargs: _absurd_section(name)))
  return len(targets)


def _context(section, epochs=None):
  """The driver's Context for the paper-scale split (unlearning.run_method)."""
  size = section.batch_size
  batch = {'forget': section.forget_batch_size or size,
           'retain': section.retain_batch_size or size, 'mixed': size}
  counts = {'forget': _NUM_FORGET, 'retain': _NUM_RETAIN,
            'mixed': _NUM_FORGET + _NUM_RETAIN}
  return base.Context(
      num_classes=10, epochs=epochs or section.epochs,
      steps_per_epoch={s: counts[s] // batch[s] for s in counts},
      batch_size=batch, init_variables=lambda rng: None,
      iterate=lambda split: iter(()))


class RecipesTest(parameterized.TestCase):

  @parameterized.parameters(*_CASES)
  def test_key_fields_are_pinned(self, name, mode):
    flat = _flat(cifar10_resnet18.paper_method(name, mode))
    for key, value in EXPECTED[name, mode].items():
      self.assertEqual(flat[key], value, f'{name} {mode}: {key}')
      self.assertIs(type(flat[key]), type(value), f'{name} {mode}: {key}')
    self.assertEqual(flat['name'], name)
    self.assertEqual(flat['mode'], mode)
    for key, value in _EXTENSIONS_OFF.items():
      self.assertEqual(flat[key], value, f'{name} {mode}: {key}')

  @parameterized.parameters(*_CASES)
  def test_section_is_the_table(self, name, mode):
    section = cifar10_resnet18.paper_method(name, mode)
    self.assertEqual(_flat(section),
                     {**_flat(cifar10_resnet18.RECIPES[name][mode]),
                      'mode': mode})

  @parameterized.parameters(*_CASES)
  def test_table_sets_every_field_of_the_cpu_defaults(self, name, mode):
    # Every field the method's defaults have (and every optim field
    # mu_jax/optim.py reads) is in the table, with the defaults' type, so
    # that --config overrides still parse.
    paper = _flat(cifar10_resnet18.paper_method(name, mode))
    cpu = _flat(_cpu_defaults(name, mode))
    self.assertLessEqual(set(paper) - set(cpu), {'optim.nesterov', 'mode'})
    for key, value in cpu.items():
      self.assertIn(key, paper, f'{name} {mode}: {key} missing')
      self.assertIs(type(paper[key]), type(value), f'{name} {mode}: {key}')

  @parameterized.parameters(*_CASES)
  def test_cpu_defaults_cannot_leak_in(self, name, mode):
    before = _flat(cifar10_resnet18.paper_method(name, mode))
    with contextlib.ExitStack() as stack:
      self.assertGreaterEqual(_patch_cpu_defaults(stack, name), 2)
      self.assertEqual(_cpu_defaults(name, mode).epochs, 999)  # Patched.
      during = _flat(cifar10_resnet18.paper_method(name, mode))
      config = cifar10_resnet18.get_config(
          name + (',class_wise' if mode == 'class_wise' else ''))
      suite = suite_cifar10_resnet18.get_config()
    self.assertEqual(during, before)
    self.assertEqual(_flat(config.method), before)
    self.assertEqual(_flat(config.method_configs[mode][name]), before)
    self.assertEqual(_flat(suite.suite.method_configs[mode][name]), before)

  def test_sections_are_fresh_copies(self):
    section = cifar10_resnet18.paper_method('scrub', 'class_wise')
    section.optim.lr = 1.0
    section.msteps = 50
    again = cifar10_resnet18.paper_method('scrub', 'class_wise')
    self.assertEqual(again.optim.lr, 5e-4)
    self.assertEqual(again.msteps, 2)

  def test_every_method_has_a_recipe_in_both_modes(self):
    self.assertCountEqual(cifar10_resnet18.RECIPES, methods.AVAILABLE)
    for name in methods.AVAILABLE:
      self.assertCountEqual(cifar10_resnet18.RECIPES[name],
                            cifar10_resnet18.MODES)
    self.assertCountEqual({n for n, _ in EXPECTED},
                          set(methods.AVAILABLE) - {'retrain'})

  def test_aliases_and_errors(self):
    # The config knows a method by its module name; mu_jax resolves the
    # aliases (`--method GA`) before it looks a section up in the table.
    config = cifar10_resnet18.get_config()
    self.assertEqual(methods.section(config, 'GA', 'random').name, 'neggrad')
    self.assertEqual(methods.section(config, 'rl', 'random').name,
                     'random_label')
    self.assertEqual(methods.section(config, 'ft', 'random').optim.lr, 0.01)
    self.assertEqual(methods.section(config, 'scrub', 'classwise').msteps, 2)
    for alias, name in methods.aliases().items():
      self.assertIn(name, config.method_configs.random, alias)
    with self.assertRaisesRegex(ValueError, 'class_wise'):
      cifar10_resnet18.paper_method('salun', 'sideways')
    with self.assertRaisesRegex(ValueError, 'no paper recipe'):
      cifar10_resnet18.paper_method('GA')  # An alias: mu_jax's to resolve.
    with self.assertRaisesRegex(ValueError, 'unknown method'):
      methods.section(config, 'no_such_method', 'random')
    with mock.patch.object(methods, 'AVAILABLE',
                           methods.AVAILABLE + ('new_method',)):
      with mock.patch.dict(sys.modules, {
          'mu_jax.methods.new_method': types.ModuleType('new_method')}):
        with self.assertRaisesRegex(ValueError,
                                    'no random section for new_method'):
          methods.section(config, 'new_method', 'random')
    with self.assertRaisesRegex(ValueError, 'no paper recipe'):
      cifar10_resnet18.paper_method('new_method')

  @parameterized.parameters(
      # SalUn's CIFAR-10 loop: a forget pass, then a full retain pass.
      dict(name='salun', mode='random',
           plan=[('forget', 19), ('retain', 175)], epochs=10),
      dict(name='random_label', mode='class_wise',
           plan=[('forget', 19), ('retain', 175)], epochs=10),
      dict(name='finetune', mode='random', plan=[('main', 175)], epochs=10),
      dict(name='neggrad', mode='random', plan=[('main', 19)], epochs=5),
      # 23 forget passes of 312 steps ~ the reference's 5 retain passes of
      # ceil(45000 / 32) = 1407 steps (7035).
      dict(name='neggrad_plus', mode='random', plan=[('main', 312)],
           epochs=23),
      # One pass over the forget set and 30% of the retain set at once.
      dict(name='bad_teaching', mode='class_wise', plan=[('main', 78)],
           epochs=1),
      # Full forget (max) and retain (min) passes.
      dict(name='scrub', mode='random',
           plan=[('max', 312), ('min', 1406)], epochs=5),
      dict(name='scrub', mode='class_wise',
           plan=[('max', 9), ('min', 175)], epochs=3),
  )
  def test_recipe_steps(self, name, mode, plan, epochs):
    section = cifar10_resnet18.paper_method(name, mode)
    self.assertEqual(section.epochs, epochs)
    method = methods.get(name).make(section, _context(section))
    self.assertEqual(list(method.plan(0)), plan)

  def test_neggrad_plus_epochs_match_the_reference_steps(self):
    section = cifar10_resnet18.paper_method('neggrad_plus')
    method = methods.get('neggrad_plus').make(section, _context(section))
    steps = sum(n for e in range(section.epochs) for _, n in method.plan(e))
    reference = 5 * -(-_NUM_RETAIN // 32)  # 5 epochs of the retain loader.
    self.assertLess(abs(steps - reference) / reference, 0.03)

  def test_scrub_max_phases_stop_after_msteps(self):
    for mode, msteps in (('random', 3), ('class_wise', 2)):
      section = cifar10_resnet18.paper_method('scrub', mode)
      method = methods.get('scrub').make(section, _context(section))
      phases = [[p for p, _ in method.plan(e)] for e in range(section.epochs)]
      self.assertEqual(sum('max' in p for p in phases), msteps)
      self.assertTrue(all('min' in p for p in phases))

  def test_training_recipe(self):
    config = cifar10_resnet18.get_config()
    self.assertEqual(config.train.to_dict(), {
        'epochs': 182, 'batch_size': 256, 'augment': True,
        'crop_padding': 4, 'flip': True,
        'optim': {'name': 'sgd', 'lr': 0.1, 'momentum': 0.9,
                  'weight_decay': 5e-4, 'nesterov': False,
                  'schedule': 'multistep', 'milestones': (91, 136),
                  'gamma': 0.1, 'warmup_epochs': 0}})
    self.assertEqual(config.model.name, 'resnet18')
    self.assertFalse(config.model.max_pool)
    self.assertEqual(config.data.name, 'cifar10')
    self.assertEqual(config.split.forget_fraction, 0.1)
    self.assertEqual(config.split.mode, 'random')
    self.assertEqual(config.method.name, 'finetune')

  def test_the_papers_protocol_by_default_and_guarded_apart(self):
    # No guard rails and the whole test set as TA, as the papers report;
    # `python main.py --config configs/cifar10_resnet18.py:salun` runs so.
    for arg in ('salun', 'scrub,class_wise', None):
      config = cifar10_resnet18.get_config(arg)
      self.assertFalse(config.guard.enabled, arg)
      self.assertEqual(config.split.val_fraction, 0.0, arg)
    guarded = cifar10_resnet18.get_config('salun,guarded')
    self.assertEqual(guarded.method.name, 'salun')
    self.assertTrue(guarded.guard.enabled)
    self.assertEqual(guarded.split.val_fraction, 0.2)

  def test_config_variants(self):
    config = cifar10_resnet18.get_config('scrub,class_wise')
    self.assertEqual(config.split.mode, 'class_wise')
    self.assertEqual(tuple(config.split.forget_classes), (0,))
    self.assertEqual(_flat(config.method),
                     _flat(cifar10_resnet18.paper_method('scrub',
                                                         'class_wise')))
    smoke = cifar10_resnet18.get_config('salun,smoke')
    self.assertEqual(smoke.split.mode, 'random')
    self.assertEqual((smoke.method.epochs, smoke.method.batch_size), (1, 32))
    self.assertEqual(smoke.method.mask_ratio, 0.5)
    self.assertEqual(smoke.train.epochs, 1)
    with self.assertRaisesRegex(ValueError, 'more than one method'):
      cifar10_resnet18.get_config('salun,scrub')

  def test_suite_uses_each_modes_recipes(self):
    config = suite_cifar10_resnet18.get_config()
    sections = config.suite.method_configs
    self.assertCountEqual(sections.keys(), ('random', 'class_wise'))
    for mode in ('random', 'class_wise'):
      self.assertCountEqual(sections[mode].keys(),
                            set(methods.AVAILABLE) - {'retrain'})
      for name in sections[mode]:
        self.assertEqual(_flat(sections[mode][name]),
                         _flat(cifar10_resnet18.paper_method(name, mode)))
    self.assertEqual(sections.class_wise.scrub.msteps, 2)
    self.assertEqual(sections.random.scrub.msteps, 3)
    smoke = suite_cifar10_resnet18.get_config('smoke')
    for mode in ('random', 'class_wise'):
      for section in smoke.suite.method_configs[mode].values():
        self.assertEqual((section.epochs, section.batch_size,
                          section.forget_batch_size,
                          section.retain_batch_size), (1, 32, 0, 0))


if __name__ == '__main__':
  absltest.main()
