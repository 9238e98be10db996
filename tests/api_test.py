"""The library face (mu_jax/api.py) with a model of the test's own.

The README's example ("Unlearn your own model") is run as it is written:
its BatchNorm CNN, trained briefly on the embedded Fashion-MNIST subset,
unlearned with SalUn, evaluated, saved and reloaded. The same model then
goes through every method in both modes (small configs: the plumbing and
the invariants, not the forgetting, which the guard's tests and the grids
measure), and through each kind of bad input.
"""

import os
import re
import tempfile

import jax
import numpy as np
from absl.testing import absltest

import mu_jax
from mu_jax import api
from mu_jax import methods
from mu_jax import unlearned_model

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_example() -> str:
  """The first python block under README.md's "Unlearn your own model"."""
  with open(os.path.join(_ROOT, 'README.md')) as f:
    text = f.read()
  section = text.split('## Unlearn your own model', 1)[1]
  return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def _leaves(tree):
  return jax.tree_util.tree_leaves_with_path(tree)


def _same_structure(test, a, b):
  test.assertEqual(jax.tree.structure(a), jax.tree.structure(b))
  for (path, x), (_, y) in zip(_leaves(a), _leaves(b)):
    test.assertEqual((np.shape(x), np.asarray(x).dtype),
                     (np.shape(y), np.asarray(y).dtype), path)


def _identical(a, b) -> bool:
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for (_, x), (_, y) in zip(_leaves(a), _leaves(b)))


def small_config(method: str, mode: str):
  """The method's defaults, shrunk: one short epoch, a small budget."""
  config = api.default_config(method, mode)
  config.method.epochs = 1
  config.method.batch_size = 32
  config.method.forget_batch_size = config.method.retain_batch_size = 0
  config.train.epochs = 2  # The guard's budget: 25 % of 2 retrain epochs.
  config.train.batch_size = 32
  config.eval.batch_size = 128
  return config


class ReadmeExampleTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.TemporaryDirectory()
    cwd = os.getcwd()
    os.chdir(cls.tmp.name)  # The example saves into the current directory.
    try:
      cls.ns = {}
      exec(readme_example(), cls.ns)  # pylint: disable=exec-used
    finally:
      os.chdir(cwd)

  @classmethod
  def tearDownClass(cls):
    cls.tmp.cleanup()
    super().tearDownClass()

  def test_example_unlearns_and_reloads_bit_identically(self):
    ns = self.ns
    result = ns['result']
    self.assertIn(result.outcome, ('forgotten', 'not_forgotten',
                                   'kept_original'))
    self.assertEqual(set(result.variables), {'params', 'batch_stats'})
    _same_structure(self, result.variables, ns['variables'])
    self.assertTrue(_identical(ns['restored'], result.variables))
    # The trained model is far above chance on what it learnt.
    self.assertGreater(result.report['before']['retain'], 60)
    for key in ('unlearn_acc', 'retain_acc', 'test_acc', 'mia_efficacy'):
      self.assertBetween(ns['row'][key], 0, 100)

  def test_saving_never_overwrites(self):
    folder = os.path.join(self.tmp.name, 'unlearned_cnn')
    with self.assertRaisesRegex(Exception, 'not empty'):
      mu_jax.save_variables(folder, self.ns['variables'])
    self.assertTrue(_identical(
        mu_jax.load_variables(folder, like=self.ns['variables']),
        self.ns['result'].variables))

  def test_evaluate_with_a_retrain_gives_avg_gap(self):
    ns = self.ns
    retain = ns['retain']
    row = mu_jax.evaluate(ns['model'], ns['variables'], forget=ns['forget'],
                          retain=retain, test=(ns['x_test'], ns['y_test']),
                          retrain_variables=ns['result'].variables)
    gaps = [abs(row[k] - row['retrain'][k]) for k in (
        'unlearn_acc', 'retain_acc', 'test_acc', 'mia_efficacy')]
    self.assertAlmostEqual(row['avg_gap'], np.mean(gaps), places=5)


class EveryMethodTest(absltest.TestCase):
  """Every method, both modes, through `mu_jax.unlearn` (small configs)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    ns = {}
    example = readme_example()
    # The example's model, data and training, not its unlearning.
    exec(example.split('# Forget', 1)[0], ns)  # pylint: disable=exec-used
    cls.ns = ns
    x, y = ns['x'], ns['y']
    cls.random = dict(forget=(x[:64], y[:64]), retain=(x[64:], y[64:]),
                      val=(ns['x_val'], ns['y_val']))
    cls.class_wise = dict(forget=(x[y == 3], y[y == 3]),
                          retain=(x[y != 3], y[y != 3]),
                          val=(ns['x_val'], ns['y_val']))

  def _check(self, method, mode):
    ns = self.ns
    data = self.random if mode == 'random' else self.class_wise
    result = mu_jax.unlearn(ns['model'], ns['variables'], method=method,
                            mode=mode, config=small_config(method, mode),
                            **data)
    original = ns['variables']
    _same_structure(self, result.variables, original)
    report = result.report
    self.assertEqual(report['mode'], mode)
    self.assertEqual(set(report['before']), {'forget', 'retain', 'val'})
    if method == 'retrain':
      self.assertIsNone(result.outcome)
    else:
      self.assertIn(result.outcome, ('forgotten', 'not_forgotten',
                                     'kept_original'))
    if mode == 'class_wise':
      self.assertEqual(report['forget_classes'], (3,))
    # The original variables are left as they were; the result is the
    # original exactly when the guard kept it.
    self.assertTrue(_identical(ns['variables'], original))
    self.assertEqual(_identical(result.variables, original),
                     result.outcome == 'kept_original')

  def test_every_method_in_both_modes(self):
    for method in methods.in_paper_order(methods.AVAILABLE):
      for mode in ('random', 'class_wise'):
        with self.subTest(method=method, mode=mode):
          self._check(method, mode)


class BadInputTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    ns = {}
    exec(readme_example().split('# Forget', 1)[0], ns)  # pylint: disable=exec-used
    cls.ns = ns
    x, y = ns['x'], ns['y']
    cls.data = dict(forget=(x[:64], y[:64]), retain=(x[64:], y[64:]),
                    val=(ns['x_val'], ns['y_val']))

  def _refused(self, argument: str, model=None, **changes):
    kwargs = {**self.data, **changes}
    with self.assertRaises(api.InputError) as raised:
      mu_jax.unlearn(model or self.ns['model'], self.ns['variables'],
                     config=small_config('finetune', 'random'),
                     method='finetune', **kwargs)
    message = str(raised.exception)
    self.assertNotIn('\n', message)
    self.assertTrue(message.startswith(f'{argument}:'), message)
    return message

  def test_a_config_with_its_table_gives_the_methods_section(self):
    # default.get_config() holds SalUn's section and every method's table.
    from configs import default  # pylint: disable=g-import-not-at-top
    config = default.get_config()
    checked = api._checked_config(config, 'RL', 'class_wise')
    self.assertEqual((checked.method.name, checked.method.mode),
                     ('random_label', 'class_wise'))
    self.assertNotIn('method_configs', checked)
    self.assertIn('method_configs', config)  # The caller's is untouched.
    del config.method_configs
    with self.assertRaisesRegex(api.InputError, "^config: .*'salun'"):
      api._checked_config(config, 'scrub', 'random')
    with self.assertRaisesRegex(api.InputError, '^method: unknown'):
      api._checked_config(None, 'no_such_method', 'random')

  def test_wrong_shapes_and_dtypes(self):
    x, y = self.data['forget']
    self._refused('forget', forget=(x[..., 0], y))  # [N, H, W]: no channel.
    self._refused('forget', forget=(x, y[:-1]))
    self._refused('retain', retain=(self.data['retain'][0],
                                    self.data['retain'][1].astype(float)))
    self._refused('val', val=(np.zeros((4, 14, 14, 1), np.float32),
                              np.zeros(4, int)))
    self._refused('forget', forget=x)

  def test_labels_out_of_range(self):
    x, y = self.data['forget']
    self.assertIn('10 outputs', self._refused('forget', forget=(x, y + 10)))

  def test_data_at_chance(self):
    # Images that do not go with their labels, as a preprocessing the model
    # was not trained with makes them: the model is at chance by design
    # (about 10 %, the threshold about 14 %), whatever CPU rounds it.
    x, y = self.data['retain']
    shuffled = np.random.default_rng(0).permutation(len(y))
    self.assertIn('at chance',
                  self._refused('retain', retain=(x[shuffled], y)))

  def test_model_output_not_logits(self):
    import flax.linen as nn  # pylint: disable=g-import-not-at-top

    class Pooled(nn.Module):

      @nn.compact
      def __call__(self, x):
        return nn.Dense(10)(x).mean((1, 2, 3))  # [N], not [N, classes].

    model = Pooled()
    variables = model.init(jax.random.key(0), self.data['val'][0][:1])
    with self.assertRaisesRegex(api.InputError, r'^model: .*\[N, classes\]'):
      mu_jax.unlearn(model, variables, **self.data)

  def test_self_supervised_term_without_features(self):
    # The README's model returns logits only: no hook for the term.
    config = small_config('bad_teaching', 'random')
    config.method.loss_weight = 0.5
    with self.assertRaisesRegex(api.InputError,
                                r'^model: the self-supervised term'):
      mu_jax.unlearn(self.ns['model'], self.ns['variables'],
                     method='bad_teaching', config=config, **self.data)

  def test_forget_overlapping_val(self):
    x, y = self.data['forget']
    xv, yv = self.data['val']
    message = self._refused('val', val=(np.concatenate([xv, x[:3]]),
                                        np.concatenate([yv, y[:3]])))
    self.assertIn('3 of its images are also in forget', message)


class DefaultConfigTest(absltest.TestCase):
  """`default_config` reads the configs/ shipped beside mu_jax, never a
  caller's own top-level `configs` package that happens to shadow it."""

  def test_shipped_configs_are_accepted(self):
    from configs import default  # pylint: disable=g-import-not-at-top
    api._check_shipped_configs(default)
    self.assertEqual(api.default_config('scrub', 'classwise').method.name,
                     'scrub')

  def test_a_shadowing_configs_package_is_refused(self):
    with tempfile.TemporaryDirectory() as tmp:
      os.makedirs(f'{tmp}/configs')
      shadow = type(os)('configs.default')
      shadow.__file__ = f'{tmp}/configs/default.py'
      with self.assertRaisesRegex(api.InputError,
                                  r"^config: the package 'configs' imported "
                                  r".* is not mu_jax's"):
        api._check_shipped_configs(shadow)


class SaveVariablesTest(absltest.TestCase):

  def test_round_trip_is_bit_identical(self):
    variables = {'params': {'w': np.random.default_rng(0).normal(
        size=(3, 4)).astype(np.float32)}, 'batch_stats': {
            'mean': np.arange(4, dtype=np.float32)}}
    with tempfile.TemporaryDirectory() as tmp:
      unlearned_model.save_variables(f'{tmp}/v', variables)
      restored = unlearned_model.load_variables(f'{tmp}/v', like=variables)
    self.assertTrue(_identical(restored, variables))


if __name__ == '__main__':
  absltest.main()
