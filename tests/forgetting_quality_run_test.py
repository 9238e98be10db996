"""The many-model forgetting quality of a run (mu_jax/forgetting_quality.py)."""

import os
import tempfile
from unittest import mock

from absl.testing import absltest

from mu_jax import classifiers
from mu_jax import errors
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
