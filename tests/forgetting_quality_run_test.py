"""The many-model forgetting quality of a run (mu_jax/forgetting_quality.py)."""

import os
import tempfile
from unittest import mock

from absl.testing import absltest

from mu_jax import classifiers
from mu_jax import errors
from mu_jax import experiment
from mu_jax import forgetting_quality
from mu_jax import pipeline
from mu_jax import unlearning
from tests import test_util


class ForgettingQualityRunTest(absltest.TestCase):

  def test_smoke_run_reports_it_and_resumes(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = test_util.smoke_config(tmp)
      config.eval.forgetting_quality_models = 3
      config.guard.enabled = False
      report = pipeline.run(config, f'{tmp}/run')
      quality = report['forgetting_quality']
      self.assertEqual(quality['models'], 3)
      self.assertBetween(quality['forgetting_quality'], 0.0, 1.0)
      self.assertEqual(report['metrics']['unlearned']['forgetting_quality'],
                       quality['forgetting_quality'])
      forget = report['split']['forget']
      self.assertEqual(sum(quality['epsilon_histogram']['counts']), forget)
      self.assertBetween(quality['ulira']['auc'], 0.0, 1.0)
      self.assertFalse(quality['retrain']['vmapped'])  # CPU: one at a time.
      # Two extra retrain models, each in its own checkpoint folder.
      self.assertLen(quality['retrain']['checkpoints'], 2)
      for folder in quality['retrain']['checkpoints']:
        self.assertTrue(os.path.isdir(folder))
      self.assertIn('forgetting quality over 3', report['table'])
      self.assertLen(os.listdir(f'{tmp}/run/forgetting_quality'), 2)
      # Again: the extra models come from their checkpoints and files; only
      # the run's own unlearning runs.
      real = unlearning.unlearn
      calls = []

      def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

      with mock.patch.object(unlearning, 'unlearn', counting):
        again = pipeline.run(config, f'{tmp}/run')
      self.assertLen(calls, 1)
      self.assertEqual(again['forgetting_quality']['forgetting_quality'],
                       quality['forgetting_quality'])

  def test_reference_rows_reuse_the_runs_retrain_models(self):
    with tempfile.TemporaryDirectory() as tmp:
      config = test_util.smoke_config(tmp)
      dataset, mesh = experiment.setup(config)
      split = experiment.make_split(config, dataset)
      exp = experiment.Experiment(config, dataset, mesh)
      rows = forgetting_quality.reference_rows(exp, split, counts=(2,))
      self.assertEqual([r['models'] for r in rows], [2])
      for key in ('retrain_vs_retrain', 'original_vs_retrain'):
        self.assertBetween(rows[0][key], 0.0, 1.0)
      # 4 retrain models (the run's and 3 of their own seeds) and 2
      # originals, each in a checkpoint folder; a second call trains none.
      folders = os.listdir(f'{tmp}/checkpoints')
      self.assertLen([f for f in folders if '_all_' in f], 2)
      self.assertLen([f for f in folders if '_random' in f], 4)
      with mock.patch.object(classifiers, 'train_or_reuse',
                             wraps=classifiers.train_or_reuse) as spy:
        again = forgetting_quality.reference_rows(exp, split, counts=(2,))
      self.assertEqual(again, rows)
      self.assertEqual(sorted(os.listdir(f'{tmp}/checkpoints')),
                       sorted(folders))
      self.assertEqual(spy.call_count, 6)  # Each one restored, none new.

  def test_model_seeds_are_distinct_and_model_zero_is_the_run(self):
    seeds = {classifiers.model_seed(0, i) for i in range(8)}
    self.assertLen(seeds, 8)
    self.assertEqual(classifiers.model_seed(5, 0), 5)
    self.assertNotEqual(classifiers.model_seed(5, 1),
                        classifiers.model_seed(6, 1))

  def test_bad_settings(self):
    with self.assertRaisesRegex(errors.ConfigError, 'auto, always, never'):
      forgetting_quality._vmapped('sometimes')
    self.assertTrue(forgetting_quality._vmapped('always'))
    self.assertFalse(forgetting_quality._vmapped('never'))


if __name__ == '__main__':
  absltest.main()
