"""Vmapped multi-seed training equals sequential per-seed training.

mu_jax/multiseed.py must reproduce `train.run` seed by seed (init, batch
order, augmentation, step rngs), write the checkpoints the pipeline reuses,
and resume after a kill.
"""

import copy
import os
import tempfile
from unittest import mock

import jax
import numpy as np
from absl.testing import absltest

from mu_jax import checkpoint as checkpoint_lib
from mu_jax import classifiers
from mu_jax import data as data_lib
from mu_jax import experiment
from mu_jax import multiseed
from mu_jax import parallel
from mu_jax import splits as splits_lib
from mu_jax import train
from tests import test_util

_SEEDS = (0, 1, 2)


def _dataset() -> data_lib.Dataset:
  return data_lib.Dataset(
      name='tiny', train_images=test_util.tiny_images(64),
      train_labels=test_util.tiny_labels(64),
      test_images=test_util.tiny_images(32, seed=7),
      test_labels=test_util.tiny_labels(32, seed=7), num_classes=4,
      mean=(0.5,), std=(0.25,))


def _experiments(tmp: str, model: str = 'cnn', seeds=_SEEDS):
  """One Experiment per seed; augmentation on, to check its rngs too."""
  config = test_util.smoke_config(tmp)
  config.model.name, config.model.width = model, 4
  config.train.epochs, config.train.batch_size = 2, 16
  config.train.augment = True
  config.split.forget_num = 16
  dataset, mesh = _dataset(), parallel.make_mesh(1)
  out = []
  for seed in seeds:
    seed_config = copy.deepcopy(config)
    seed_config.seed = seed
    out.append(experiment.Experiment(seed_config, dataset, mesh))
  return out


def _jobs(experiments, kind: str):
  jobs = []
  for exp in experiments:
    split = (experiment.make_split(exp.config, exp.dataset)
             if kind == 'retrain' else None)
    jobs.append(classifiers.classifier_job(exp, kind, split))
  return jobs


def _restore(job):
  checkpointer = checkpoint_lib.Checkpointer(job.directory)
  try:
    return checkpointer.restore(job.template)
  finally:
    checkpointer.close()


def _assert_trees_close(test, a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  test.assertEqual(len(leaves_a), len(leaves_b))
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5,
                               atol=1e-6)


class MultiseedTest(absltest.TestCase):

  def _check_equals_sequential(self, model: str, kind: str, seeds=_SEEDS):
    with tempfile.TemporaryDirectory() as tmp:
      jobs = _jobs(_experiments(tmp, model, seeds), kind)
      infos = multiseed.train_jobs(jobs, parallel.make_mesh(1))
      for job in jobs:
        self.assertEqual(infos[job.name]['seeds'], len(seeds))
        expected = train.run(
            job.method, job.template, job.data, epochs=job.epochs,
            batch_size={'retain': job.batch_size}, seed=job.seed,
            prep=job.prep, mesh=parallel.make_mesh(1))
        state, _, meta = _restore(job)
        _assert_trees_close(self, state.params, expected.state.params)
        _assert_trees_close(self, state.model_state,
                            expected.state.model_state)
        self.assertEqual(int(state.step), int(expected.state.step))
        self.assertTrue(meta['done'])
        self.assertEqual(meta['recipe'], job.recipe)
        for got, want in zip(meta['history'], expected.history):
          self.assertCountEqual(got, want)
          for key in want:
            self.assertAlmostEqual(got[key], want[key], places=4)
      # Different seeds really are different models.
      first, second = (_restore(job)[0].params for job in jobs[:2])
      self.assertFalse(np.allclose(jax.tree.leaves(first)[0],
                                   jax.tree.leaves(second)[0]))

  def test_cnn_original_equals_sequential(self):
    self._check_equals_sequential('cnn', 'original')

  def test_retrain_on_per_seed_splits_equals_sequential(self):
    self._check_equals_sequential('cnn', 'retrain')

  def test_batchnorm_resnet_equals_sequential(self):
    self._check_equals_sequential('resnet8', 'original', seeds=(0, 1))

  def test_pipeline_reuses_the_checkpoints(self):
    with tempfile.TemporaryDirectory() as tmp:
      experiments = _experiments(tmp)
      multiseed.train_jobs(_jobs(experiments, 'original') +
                           _jobs(experiments, 'retrain'),
                           parallel.make_mesh(1))
      exp = experiments[1]
      split = experiment.make_split(exp.config, exp.dataset)
      with mock.patch.object(train, 'run', side_effect=AssertionError(
          'trained again')):
        original, info, _, retrain_info = classifiers.train_classifiers(
            exp, split)
      self.assertTrue(info['reused'])
      self.assertTrue(retrain_info['reused'])
      self.assertGreater(info['seconds'], 0)
      # A second multiseed call finds everything done.
      again = multiseed.train_jobs(_jobs(experiments, 'original'),
                                   parallel.make_mesh(1))
      self.assertTrue(all(i['reused'] for i in again.values()))
      self.assertEqual(again[_jobs(experiments, 'original')[1].name]['seeds'],
                       len(_SEEDS))
      self.assertIsNotNone(original)

  def test_killed_run_resumes_to_the_same_weights(self):
    with tempfile.TemporaryDirectory() as tmp:
      jobs = _jobs(_experiments(tmp), 'original')
      real_save = checkpoint_lib.Checkpointer.save
      saves = []

      def save_then_die(self_, *args, **kwargs):
        real_save(self_, *args, **kwargs)
        saves.append(1)
        if len(saves) == len(_SEEDS):  # Every seed has saved epoch 1.
          raise KeyboardInterrupt

      with mock.patch.object(checkpoint_lib.Checkpointer, 'save',
                             save_then_die):
        with self.assertRaises(KeyboardInterrupt):
          multiseed.train_jobs(jobs, parallel.make_mesh(1))
      self.assertEqual(_restore(jobs[0])[2]['epoch'], 1)
      infos = multiseed.train_jobs(jobs, parallel.make_mesh(1))
      with tempfile.TemporaryDirectory() as fresh:
        reference = _jobs(_experiments(fresh), 'original')
        multiseed.train_jobs(reference, parallel.make_mesh(1))
        for job, ref in zip(jobs, reference):
          self.assertFalse(infos[job.name]['reused'])
          _assert_trees_close(self, _restore(job)[0].params,
                              _restore(ref)[0].params)
          self.assertLen(_restore(job)[2]['history'], 2)

  def test_another_recipe_gets_a_folder_of_its_own(self):
    # Folders are keyed by the recipe's content: neither refused nor reused.
    with tempfile.TemporaryDirectory() as tmp:
      experiments = _experiments(tmp)
      first = _jobs(experiments[:1], 'original')
      multiseed.train_jobs(first, parallel.make_mesh(1))
      experiments[0].config.train.optim.lr = 0.5
      other = _jobs(experiments[:1], 'original')
      self.assertNotEqual(first[0].directory, other[0].directory)
      infos = multiseed.train_jobs(other, parallel.make_mesh(1))
      self.assertFalse(infos[other[0].name]['reused'])
      self.assertTrue(os.path.isdir(first[0].directory))

  def test_split_sizes_are_the_same_across_seeds(self):
    # What lets one program train all seeds' retrain models.
    dataset = _dataset()
    sizes = {len(splits_lib.make_split(
        dataset.train_labels, dataset.test_labels, 4, mode='random',
        forget_num=16, forget_fraction=0.1, forget_classes=(0,),
        seed=seed).retain) for seed in _SEEDS}
    self.assertLen(sizes, 1)


if __name__ == '__main__':
  absltest.main()
