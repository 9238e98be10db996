"""End to end: `python main.py` on the smoke config, and its bad-input paths.

The subprocess runs see one CPU device (the 4 fake devices of conftest.py are
set in this process only).
"""

import json
import os
import subprocess
import sys
import tempfile

import jax
import numpy as np
from absl.testing import absltest

import mu_jax
from mu_jax import checkpoint as checkpoint_lib
from mu_jax import experiment
from mu_jax import optim
from mu_jax import pipeline
from mu_jax import splits as splits_lib
from tests import test_util

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(tmp, *args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  return subprocess.run(
      [sys.executable, 'main.py', '--config=configs/default.py:smoke',
       f'--config.checkpoint_dir={tmp}/checkpoints', *args],
      cwd=_ROOT, capture_output=True, text=True, env=env, timeout=600)


class ModelCacheTest(absltest.TestCase):

  def test_content_keyed_cache_from_any_directory(self):
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    env.pop('XLA_FLAGS', None)
    with tempfile.TemporaryDirectory() as tmp:
      env['MU_JAX_CHECKPOINT_DIR'] = f'{tmp}/cache'
      os.makedirs(f'{tmp}/a')
      os.makedirs(f'{tmp}/b')

      def run(cwd, *args):
        return subprocess.run(
            [sys.executable, os.path.join(_ROOT, 'main.py'),
             '--config=configs/default.py:smoke', '--method', 'finetune',
             *args], cwd=cwd, capture_output=True, text=True, env=env,
            timeout=600)

      first = run(f'{tmp}/a', f'--workdir={tmp}/w1')
      # Another recipe in the same cache: folders of its own, no refusal.
      other = run(f'{tmp}/b', f'--workdir={tmp}/w2',
                  '--config.train.epochs=2')
      # The first recipe again, from another directory: nothing retrained.
      again = run(f'{tmp}/b', f'--workdir={tmp}/w3')
      for proc in (first, other, again):
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
      self.assertIn('train original', first.stderr)
      self.assertIn('train original', other.stderr)
      self.assertNotIn('train original', again.stderr)
      self.assertNotIn('train retrain', again.stderr)
      folders = sorted(os.listdir(f'{tmp}/cache'))
      self.assertLen([f for f in folders if '_all_s0-' in f], 2)
      self.assertFalse(os.path.exists(f'{tmp}/a/checkpoints'))
      self.assertFalse(os.path.exists(f'{tmp}/b/checkpoints'))


class SavedModelTest(absltest.TestCase):

  def test_saved_reloaded_numbered_and_reused(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = test_util.smoke_config(tmp)
      first = pipeline.run(config, f'{tmp}/w')
      model, variables = mu_jax.load(f'{tmp}/w')
      self.assertEqual(first['checkpoints']['unlearned'],
                       os.path.abspath(f'{tmp}/w/unlearned'))
      # The reloaded weights give the report's numbers exactly.
      dataset, mesh = experiment.setup(config)
      split = experiment.make_split(config, dataset)
      exp = experiment.Experiment(config, dataset, mesh)
      state = exp.new_state(
          optim.make_optimizer(config.train.optim, 1, 1),
          jax.random.key(1)).replace(
              params=variables['params'],
              model_state={k: v for k, v in variables.items()
                           if k != 'params'})
      row = exp.evaluate(state, split)
      for key in ('forget_acc', 'retain_acc', 'test_acc', 'mia_efficacy',
                  'mia_loss_auc'):
        self.assertEqual(row[key], first['metrics']['unlearned'][key], key)
      logits, _ = model.apply(variables, np.zeros((2, 28, 28, 1), np.float32),
                              train=False)
      self.assertEqual(logits.shape, (2, 10))
      # A second run into the workdir is numbered: nothing overwritten.
      before = os.path.getmtime(f'{tmp}/w/report.json')
      second = pipeline.run(config, f'{tmp}/w')
      self.assertEqual(second['report_file'], f'{tmp}/w/report_2.json')
      self.assertEqual(os.path.getmtime(f'{tmp}/w/report.json'), before)
      for name in ('tensorboard_2', 'unlearned_2'):
        self.assertTrue(os.path.isdir(f'{tmp}/w/{name}'), name)
      # A run can start from the unlearned model.
      config.init_from = f'{tmp}/w/unlearned'
      third = pipeline.run(config, f'{tmp}/w3')
    self.assertEqual(third['metrics']['original']['forget_acc'],
                     first['metrics']['unlearned']['forget_acc'])


class EventLogTest(absltest.TestCase):

  def test_two_logs_in_one_folder_within_a_second_keep_both(self):
    # Files are named by the second: the guard's checks are logged in the
    # attempt's folder right after it ends.
    from mu_jax import report  # pylint: disable=g-import-not-at-top
    with tempfile.TemporaryDirectory() as tmp:
      first = report.EventLog(tmp, learning_rate=lambda step: 0.1)
      first(1, {'loss': 1.0})
      first.close()
      second = report.EventLog(tmp)
      second(1, {'guard/forget_acc': 50.0})
      second.close()
      self.assertEqual(test_util.event_tags(tmp),
                       {'loss', 'learning_rate', 'guard/forget_acc'})


class ExitStatusTest(absltest.TestCase):

  def test_only_a_single_run_short_of_the_target_exits_3(self):
    # guard.unmet, not through mu_jax.cli: importing the CLI defines its
    # absl flags, which other test modules' flags would clash with.
    from configs import suite as suite_config  # pylint: disable=g-import-not-at-top
    from mu_jax import guard  # pylint: disable=g-import-not-at-top
    config = test_util.smoke_config('/unused')
    config.guard.allow_unmet = False
    for outcome, expected in (('forgotten', False), ('not_forgotten', True),
                              ('kept_original', True)):
      self.assertEqual(guard.unmet({'guard': {'outcome': outcome}}, config),
                       expected, outcome)
    config.guard.allow_unmet = True
    self.assertFalse(guard.unmet({'guard': {'outcome': 'kept_original'}},
                               config))
    # A suite's 'guard' lists the cells in which the guard acted; its
    # tables mark the cells short of the target.
    suite = suite_config.get_config('smoke')
    suite.guard.allow_unmet = False
    self.assertFalse(guard.unmet({'guard': [{'model': 'finetune', 'seed': 0,
                                           'mode': 'random'}]}, suite))


class MainTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.tmp = cls._tmp.name
    # The original project's README command (retrain, instance-wise).
    cls.first = _main(cls.tmp, f'--workdir={cls.tmp}/a', '--method', 'retrain',
                      '--mode', 'random', '--saved_data_path',
                      f'{cls.tmp}/saved_data', '--lr', '0.005', '--epoches',
                      '2', '--loss_weight', '0')
    cls.second = _main(cls.tmp, f'--workdir={cls.tmp}/b',
                       f'--saved_data_path={cls.tmp}/saved_data')

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def test_first_run_writes_a_complete_report(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr[-2000:])
    with open(f'{self.tmp}/a/report.json') as f:
      report = json.load(f)
    for key in ('original', 'retrain', 'unlearned'):
      row = report['metrics'][key]
      for metric in ('forget_acc', 'retain_acc', 'test_acc', 'mia_efficacy'):
        self.assertBetween(row[metric], 0.0, 100.0)
    self.assertIn('avg_gap', report['metrics']['unlearned'])
    self.assertEqual(report['method'], 'retrain')
    method = report['config']['method']
    self.assertEqual((method['name'], method['optim']['lr'], method['epochs']),
                     ('retrain', 0.005, 2))
    # Retrain *is* the unlearned model for --method retrain.
    self.assertEqual(report['metrics']['unlearned']['avg_gap'], 0.0)
    self.assertFalse(report['timings']['original_reused'])
    self.assertEqual(report['device']['platform'], 'cpu')
    self.assertIn('jax', report['versions'])
    self.assertIn('| retrain |', self.first.stdout)
    self.assertTrue(os.listdir(f'{self.tmp}/saved_data'))

  def test_per_step_metrics_are_tensorboard_event_files(self):
    for run in ('original', 'retrain'):
      files = os.listdir(f'{self.tmp}/a/tensorboard/{run}')
      self.assertTrue(any(f.startswith('events.out.tfevents') for f in files))
    self.assertIn('learning_rate',
                  test_util.event_tags(f'{self.tmp}/a/tensorboard/original'))
    # The second run trained nothing and unlearned with SalUn under the
    # guard rails: per-step loss and learning rate, each check's accuracies,
    # the final table and the config.
    self.assertFalse(os.path.exists(f'{self.tmp}/b/tensorboard/original'))
    attempt = test_util.event_tags(
        f'{self.tmp}/b/tensorboard/unlearn/attempt1')
    for tag in ('learning_rate', 'guard/forget_acc', 'guard/retain_acc',
                'guard/val_acc'):
      self.assertIn(tag, attempt)
    self.assertTrue(any('loss' in tag for tag in attempt), attempt)
    final = test_util.event_tags(f'{self.tmp}/b/tensorboard/final')
    for tag in ('unlearned/unlearn_acc', 'unlearned/avg_gap',
                'retrain/test_acc'):
      self.assertIn(tag, final)
    self.assertTrue(any(tag.startswith('config') for tag in final), final)

  def test_second_run_reuses_checkpoints_and_split(self):
    self.assertEqual(self.second.returncode, 0, self.second.stderr[-2000:])
    with open(f'{self.tmp}/b/report.json') as f:
      report = json.load(f)
    self.assertTrue(report['timings']['original_reused'])
    self.assertTrue(report['timings']['retrain_reused'])
    self.assertEqual(report['method'], 'salun')
    self.assertNotIn('train original', self.second.stderr)
    with open(f'{self.tmp}/a/report.json') as f:
      first = json.load(f)
    self.assertEqual(first['split']['digest'], report['split']['digest'])
    self.assertEqual(first['metrics']['original'],
                     report['metrics']['original'])

  def test_a_run_that_does_not_forget_exits_3_unless_allowed(self):
    # A step too small to move the model: the guard keeps the original.
    args = ['--mode', 'class_wise', '--forget_class', '1', '--lr', '1e-12',
            '--config.guard.max_attempts=1']
    # The smoke config allows it (a plumbing check); a real run does not.
    unmet = _main(self.tmp, f'--workdir={self.tmp}/unmet', *args,
                  '--config.guard.allow_unmet=False')
    self.assertEqual(unmet.returncode, 3, unmet.stderr[-2000:])
    self.assertTrue(unmet.stdout.startswith('NOT FORGOTTEN: '),
                    unmet.stdout[:300])
    with open(f'{self.tmp}/unmet/report.json') as f:
      report = json.load(f)
    self.assertIn(report['guard']['outcome'],
                  ('not_forgotten', 'kept_original'))
    allowed = _main(self.tmp, f'--workdir={self.tmp}/allowed', *args)
    self.assertEqual(allowed.returncode, 0, allowed.stderr[-2000:])
    self.assertTrue(allowed.stdout.startswith('NOT FORGOTTEN: '))

  def test_unlearn_saliency_flags(self):
    # OPTML-Group/Unlearn-Saliency's spelling of random forgetting.
    proc = _main(self.tmp, f'--workdir={self.tmp}/salun_flags', '--unlearn',
                 'RL', '--unlearn_epochs', '1', '--unlearn_lr', '0.013',
                 '--class_to_replace', '-1', '--num_indexes_to_replace', '50')
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    with open(f'{self.tmp}/salun_flags/report.json') as f:
      report = json.load(f)
    self.assertEqual(report['method'], 'random_label')
    self.assertEqual(report['split']['name'], 'random50')
    self.assertEqual(report['config']['method']['epochs'], 1)
    self.assertEqual(report['config']['method']['optim']['lr'], 0.013)
    # Its class-wise spelling forgets a whole class, whose size is checked.
    proc = _main(self.tmp, f'--workdir={self.tmp}/salun_class', '--unlearn',
                 'RL', '--class_to_replace', '1', '--num_indexes_to_replace',
                 '7')
    self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
    last = proc.stderr.strip().splitlines()[-1]
    self.assertRegex(last, r'^mu_jax: error: --num_indexes_to_replace 7: '
                     r'class 1 has \d+ train images')
    self.assertFalse(os.path.exists(f'{self.tmp}/salun_class/report.json'))

  def test_bad_input_is_one_line_and_leaves_no_report(self):
    cases = {
        'unknown method': ['--method', 'nope'],
        'unknown supervised_mode': ['--supervised_mode', 'bogus'],
        'takes no self-supervised': ['--loss_weight', '0.5'],
        'unknown mode': ['--mode', 'sideways'],
        'outside [0, 10)': ['--mode', 'class_wise', '--forget_class', '10'],
        'at least 1': ['--forget_num', '0'],
        'retain': ['--forget_num', '512'],
        'unknown model': ['--config.model.name=vgg'],
        'choose auto': ['--config.mesh.cpu_convolutions=mkl'],
        'larger than the': ['--batch_size', '4096'],
        'diverged': ['--lr', '1e30'],
    }
    before = test_util.file_snapshot(f'{self.tmp}/checkpoints')
    for expected, args in cases.items():
      with self.subTest(expected):
        proc = _main(self.tmp, f'--workdir={self.tmp}/bad', *args)
        self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
        last = proc.stderr.strip().splitlines()[-1]
        self.assertStartsWith(last, 'mu_jax: error:')
        self.assertIn(expected, last.lower())
        self.assertFalse(os.path.exists(f'{self.tmp}/bad/report.json'))
    # Failed runs never touched the good checkpoints.
    self.assertEqual(test_util.file_snapshot(f'{self.tmp}/checkpoints'), before)


class PipelineErrorsTest(absltest.TestCase):
  """Bad input caught in-process (with 4 fake devices)."""

  def test_batch_not_divisible_by_device_count(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = test_util.smoke_config(tmp)
      config.method.batch_size = 30
      with self.assertRaisesRegex(ValueError, 'multiple of 4'):
        pipeline.run(config, f'{tmp}/w')

  def test_unknown_dataset(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = test_util.smoke_config(tmp)
      config.data.name = 'imagenet'
      with self.assertRaisesRegex(ValueError, 'imagenet'):
        pipeline.run(config, f'{tmp}/w')

  def test_missing_init_checkpoint(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = test_util.smoke_config(tmp)
      config.init_from = f'{tmp}/nothing_here'
      with self.assertRaisesRegex(checkpoint_lib.CheckpointError,
                                  'no such checkpoint'):
        pipeline.run(config, f'{tmp}/w')
      self.assertFalse(os.path.exists(f'{tmp}/nothing_here'))

  def test_corrupt_saved_split(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = test_util.smoke_config(tmp)
      config.split.saved_data_path = f'{tmp}/saved'
      config.split.forget_num = 50
      os.makedirs(f'{tmp}/saved')
      with open(f'{tmp}/saved/split_random50_s0.npz', 'wb') as f:
        f.write(b'not a split')
      with self.assertRaises(splits_lib.SplitError):
        pipeline.run(config, f'{tmp}/w')
      self.assertFalse(os.path.exists(f'{tmp}/w/report.json'))

  def test_class_wise_retrain_forgets_the_class(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = test_util.smoke_config(tmp)
      config.split.mode = 'classwise'  # The original code's spelling.
      config.split.forget_classes = (3,)
      config.method.name = 'retrain'
      report = pipeline.run(config, f'{tmp}/w')
    retrain = report['metrics']['retrain']
    self.assertEqual(report['split']['mode'], 'class_wise')
    self.assertEqual(retrain['forget_acc'], 0.0)
    self.assertEqual(retrain['forget_test_acc'], 0.0)
    self.assertGreater(report['split']['forget_test'], 0)


if __name__ == '__main__':
  absltest.main()
