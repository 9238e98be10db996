"""Evaluation: per-example outputs, the metric row and Avg. Gap by hand."""

import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

from mu_jax import evaluation
from mu_jax import parallel
from mu_jax import splits as splits_lib
from mu_jax import state as state_lib


def _linear_state():
  """A 'model' whose logits are the first 3 normalised pixels times a scale."""

  def apply_fn(variables, x, train=False):
    del train
    logits = x.reshape(x.shape[0], -1)[:, :3] * variables['params']['scale']
    return logits, logits

  params = {'scale': jnp.asarray(2.0)}
  return state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              model_state={}, opt_state=(),
                              apply_fn=apply_fn, tx=optax.identity())


class EvaluateTest(absltest.TestCase):

  def test_per_example_matches_numpy(self):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 1, 3, 1), np.uint8)
    labels = rng.integers(0, 3, 10)
    out = evaluation.per_example(_linear_state(), images, labels, mean=(0.5,),
                               std=(0.5,), mesh=parallel.make_mesh(4),
                               batch_size=4)  # 10 = 4 + 4 + padded 2.
    logits = 2.0 * (images.reshape(10, 3) / 255.0 - 0.5) / 0.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected_conf = probs[np.arange(10), labels]
    np.testing.assert_allclose(out['confidence'], expected_conf, rtol=1e-5)
    np.testing.assert_allclose(out['loss'], -np.log(expected_conf), rtol=1e-5)
    np.testing.assert_array_equal(out['correct'], logits.argmax(1) == labels)

  def test_metric_row_by_hand(self):
    split = splits_lib.make_split(
        np.array([0, 0, 1, 1, 2, 2, 1, 0]), np.array([0, 1, 2, 0, 1, 2]), 3,
        mode='class_wise', forget_classes=(0,))
    # Train: forget = {0, 1, 7}, retain = {2, .., 6}.
    train_out = {
        'correct': np.array([1, 0, 1, 1, 1, 0, 1, 0], bool),
        'confidence': np.linspace(0.1, 0.9, 8),
        'loss': np.linspace(2.0, 0.1, 8)}
    # Test: forget_test = {0, 3}, test = {1, 2, 4, 5}.
    test_out = {'correct': np.array([1, 1, 0, 0, 1, 1], bool),
                'confidence': np.linspace(0.2, 0.7, 6),
                'loss': np.linspace(1.5, 0.3, 6)}
    row = evaluation.metrics(train_out, test_out, split)
    self.assertAlmostEqual(row['forget_acc'], 100 / 3)
    self.assertAlmostEqual(row['unlearn_acc'], 200 / 3)
    self.assertAlmostEqual(row['retain_acc'], 80.0)
    self.assertAlmostEqual(row['test_acc'], 75.0)
    self.assertAlmostEqual(row['forget_test_acc'], 50.0)
    self.assertBetween(row['mia_efficacy'], 0.0, 100.0)
    self.assertBetween(row['mia_loss_auc'], 0.0, 1.0)

  def test_avg_gap_is_the_mean_of_four_absolute_gaps(self):
    # SalUn's 10% row against Retrain (SalUn, Table 1): 1.15.
    retrain = {'unlearn_acc': 5.24, 'retain_acc': 100.0, 'test_acc': 94.26,
               'mia_efficacy': 12.88}
    salun = {'unlearn_acc': 2.85, 'retain_acc': 99.62, 'test_acc': 93.93,
             'mia_efficacy': 14.39}
    self.assertAlmostEqual(evaluation.avg_gap(salun, retrain), 1.1525)
    self.assertEqual(evaluation.avg_gap(retrain, retrain), 0.0)


if __name__ == '__main__':
  absltest.main()
