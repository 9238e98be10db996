"""U-LiRA: a per-example likelihood-ratio attack, unlearned vs retrained.

Hayes et al. (2024) judge unlearning by how well an attacker that has seen
many unlearned and many retrained models can tell them apart, example by
example. mu_jax/forgetting_quality.py runs it beside the challenge's
forgetting quality (mu_jax/challenge.py) on the same [models, forget
examples] confidences (mu_jax/model_confidences.py); the per-model attacks
of the usual table are in mu_jax/mia.py.

References:
  J. Hayes et al. `Inexact Unlearning Needs More Careful Evaluations to
  Avoid a False Sense of Privacy`, arXiv:2403.01218, 2024 (U-LiRA).
"""

import numpy as np
import numpy.typing as npt
from scipy import stats
from sklearn import metrics

from mu_jax import model_confidences


def _leave_one_out_gaussians(
    values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-example mean and variance of each row's M - 1 sibling rows.

  Args:
    values: [M, E], M >= 3.

  Returns:
    (mean, var), each [M, E]: entry [m, i] is fitted on column i without
    row m (maximum likelihood: the variance divides by M - 1, the number of
    values fitted).
  """
  count = values.shape[0]
  mean = values.mean(axis=0)
  deviation = values - mean
  sum_squares = np.sum(deviation**2, axis=0)
  # Removing x_m moves the mean by -(x_m - mean) / (M - 1) and the sum of
  # squared deviations by -(x_m - mean)**2 * M / (M - 1).
  loo_mean = mean - deviation / (count - 1)
  loo_sum_squares = sum_squares - deviation**2 * (count / (count - 1))
  return loo_mean, np.maximum(loo_sum_squares, 0.0) / (count - 1)


def _gaussian_log_density(x, mean, var, std_floor):
  """log N(x; mean, std) without the -log(2 pi) / 2 that cancels in ratios."""
  std = np.maximum(np.sqrt(var), std_floor)
  return -0.5 * ((x - mean) / std)**2 - np.log(std)


def ulira_attack(
    unlearned_confs: npt.ArrayLike,
    retrained_confs: npt.ArrayLike,
    *,
    std_floor: float = 1e-6,
) -> dict[str, float | np.ndarray]:
  """U-LiRA-style per-example likelihood-ratio attack: unlearned vs retrained.

  After Hayes et al. (2024): for each forget example, Gaussians are fitted to
  its confidence under the unlearned models and under the retrained models
  (per-example mean and standard deviation), and a model's confidence x
  scores log N(x; unlearned fit) - log N(x; retrained fit), the log
  likelihood ratio (> 0 leans "unlearned"). To keep the test honest, no
  model is scored by a Gaussian fitted on itself (leave one model out): an
  unlearned model is scored against the unlearned fit of the other Mu - 1
  unlearned models and the retrained fit of all Mr retrained ones, and a
  retrained model the other way round. The paper fits on shadow models and
  attacks separate target models; leave-one-out is that scheme with every
  model in turn the target and the others the shadows.

  The fits are maximum likelihood (`np.std`, as in LiRA) on the models
  fitted; a standard deviation is at least `std_floor` so constant
  confidences give finite scores. Use `logit_scaled_confidence`, which is
  roughly Gaussian per example; raw probabilities are not.

  Orientation: AUC 0.5 (and TPR at 1% FPR near 0.01) = the unlearned models
  are indistinguishable from retraining, the ideal; 1.0 = every unlearned
  model is told apart. Below 0.5 is possible by chance or when each
  model's own fit matters (few models).

  Args:
    unlearned_confs: [Mu, E] confidence of each forget example under each of
      Mu >= 3 unlearned models.
    retrained_confs: [Mr, E] the same under Mr >= 3 retrained models.
    std_floor: the smallest standard deviation used, in confidence units.

  Returns:
    A dict with
      'auc': ROC AUC of the scores over all Mu * E unlearned (positive) and
        Mr * E retrained (model, example) pairs; ties count one half.
      'tpr_at_1pct_fpr': the largest TPR on the ROC curve at FPR <= 0.01.
      'accuracy': balanced accuracy of the fixed rule score > 0 (likelihood
        ratio > 1) predicts "unlearned": the mean of the two classes'
        accuracies; 0.5 = chance.
      'example_auc': [E] the AUC of each example's Mu + Mr scores, to find
        the examples that are least forgotten.
      'unlearned_scores': [Mu, E] and 'retrained_scores': [Mr, E], the log
        likelihood ratios.

  Raises:
    ValueError: if an input is not a finite 2-D array, has fewer than 3 rows
      (models) or no columns, the column counts differ, or std_floor <= 0.
  """
  unlearned, retrained = model_confidences.model_matrices(
      unlearned_confs, retrained_confs, min_models=3)
  if not 0.0 < std_floor < np.inf:
    raise ValueError(f'std_floor must be positive and finite, got {std_floor}.')
  loo_mean_u, loo_var_u = _leave_one_out_gaussians(unlearned)
  loo_mean_r, loo_var_r = _leave_one_out_gaussians(retrained)
  mean_u, var_u = unlearned.mean(axis=0), unlearned.var(axis=0)
  mean_r, var_r = retrained.mean(axis=0), retrained.var(axis=0)
  unlearned_scores = (
      _gaussian_log_density(unlearned, loo_mean_u, loo_var_u, std_floor) -
      _gaussian_log_density(unlearned, mean_r, var_r, std_floor))
  retrained_scores = (
      _gaussian_log_density(retrained, mean_u, var_u, std_floor) -
      _gaussian_log_density(retrained, loo_mean_r, loo_var_r, std_floor))

  scores = np.concatenate([unlearned_scores.ravel(), retrained_scores.ravel()])
  labels = np.concatenate([np.ones(unlearned_scores.size),
                           np.zeros(retrained_scores.size)])
  fpr, tpr, _ = metrics.roc_curve(labels, scores)
  # Per example: Mann-Whitney U from ranks (ties averaged), as roc_auc_score.
  num_u, num_r = unlearned.shape[0], retrained.shape[0]
  ranks = stats.rankdata(
      np.concatenate([unlearned_scores, retrained_scores]), axis=0)
  example_auc = ((ranks[:num_u].sum(axis=0) - num_u * (num_u + 1) / 2) /
                 (num_u * num_r))
  return {
      'auc': float(metrics.roc_auc_score(labels, scores)),
      'tpr_at_1pct_fpr': float(tpr[fpr <= 0.01].max()),
      'accuracy': float(0.5 * (np.mean(unlearned_scores > 0) +
                               np.mean(retrained_scores <= 0))),
      'example_auc': example_auc,
      'unlearned_scores': unlearned_scores,
      'retrained_scores': retrained_scores,
  }
