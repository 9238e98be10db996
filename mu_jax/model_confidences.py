"""Per-example confidences of many models, which many-model statistics compare.

The NeurIPS 2023 unlearning challenge's forgetting quality
(mu_jax/challenge.py) and U-LiRA (mu_jax/likelihood_ratio.py) both compare,
forget example by forget example, N unlearned models with N models retrained
without the forget set. Their input is one confidence per (model, example),
`logit_scaled_confidence`, stacked into [models, forget examples] arrays
that `model_matrices` checks.
"""

import numpy as np
import numpy.typing as npt
from scipy import special

from mu_jax import mia


def logit_scaled_confidence(
    logits: npt.ArrayLike, labels: npt.ArrayLike) -> np.ndarray:
  """Logit-scaled confidence of the true label: log p_y - log sum_{k!=y} p_k.

  The per-example statistic of the NeurIPS 2023 unlearning challenge and of
  LiRA / U-LiRA. With z the logits, it equals
  `z_y - logsumexp_{k != y} z_k` (the log-softmax normaliser cancels), which
  is what is computed here, in float64: no probability is formed, so nothing
  underflows and the value is finite for any finite logits.

  Relation to the challenge's `compute_logit_scaled_confidence` (metric.py):
  it forms the softmax probabilities (exponentiating in the logits' dtype,
  float32 for PyTorch outputs) and returns
  `log(p_y + 1e-45) - log(sum_{k!=y} p_k + 1e-45)`. For non-degenerate
  inputs the two differ by about `1e-45 / p_y - 1e-45 / sum_{k!=y} p_k`,
  i.e. they agree to float rounding (and to the float32 rounding of its
  softmax). They differ once a probability underflows: there, its value
  saturates near +-log(1e-45) = +-103.6 (e.g. 103.6 for logits [1000, 0, 0]
  and label 0), while this one keeps growing (1000 - log 2 = 999.31).

  Orientation: higher = the model is more confident in the true label;
  0 means p_y = 1/2. Unbounded in both directions.

  Args:
    logits: [N, C] logits, C >= 2 classes (any float dtype; finite).
    labels: [N] integer labels in [0, C).

  Returns:
    [N] float64 logit-scaled confidences.

  Raises:
    ValueError: if logits are not a finite, non-empty [N, C] array with
      C >= 2, or labels are not N integers in [0, C).
  """
  logits = np.asarray(logits)
  labels = np.asarray(labels)
  if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
    raise ValueError(
        f'logits must have shape [examples, classes] with at least 1 example '
        f'and 2 classes, got shape {logits.shape}.')
  logits = mia.require_finite('logits', logits.astype(np.float64),
                              'check the model outputs.')
  if labels.shape != logits.shape[:1]:
    raise ValueError(
        f'labels must have shape ({logits.shape[0]},) to match logits '
        f'{logits.shape}, got shape {labels.shape}.')
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
        f'labels must be integer class indices, got dtype {labels.dtype}; '
        'convert with .astype(int) (one-hot labels: argmax first).')
  num_classes = logits.shape[1]
  if np.any(labels < 0) or np.any(labels >= num_classes):
    raise ValueError(
        f'labels must lie in [0, {num_classes}), got values in '
        f'[{labels.min()}, {labels.max()}].')
  rows = np.arange(logits.shape[0])
  true_logit = logits[rows, labels]
  others = logits.copy()
  others[rows, labels] = -np.inf
  return true_logit - special.logsumexp(others, axis=1)


def _as_model_matrix(
    name: str, values: npt.ArrayLike, min_models: int) -> np.ndarray:
  """Returns `values` as a finite float64 [models, examples] array."""
  array = np.asarray(values, dtype=np.float64)
  if array.ndim != 2:
    raise ValueError(
        f'{name} must be a 2-D [models, forget examples] array, got shape '
        f'{array.shape}; stack one row of per-example confidences per model.')
  if array.shape[1] == 0:
    raise ValueError(f'{name} has no forget examples; pass at least one.')
  if array.shape[0] < min_models:
    raise ValueError(
        f'{name} has {array.shape[0]} model(s) (rows); pass at least '
        f'{min_models}, one row per independently unlearned/retrained model.')
  return mia.require_finite(
      name, array,
      'use logit_scaled_confidence, which is finite for finite logits.')


def model_matrices(
    unlearned_confs: npt.ArrayLike, retrained_confs: npt.ArrayLike,
    min_models: int) -> tuple[np.ndarray, np.ndarray]:
  """The two [models, forget examples] arrays as float64, validated.

  Both must be finite, 2-D, with at least `min_models` rows (models) and
  the same columns (the forget examples, in the same order).

  Raises:
    ValueError: naming the argument that does not fit and how to fix it.
  """
  unlearned = _as_model_matrix('unlearned_confs', unlearned_confs, min_models)
  retrained = _as_model_matrix('retrained_confs', retrained_confs, min_models)
  if unlearned.shape[1] != retrained.shape[1]:
    raise ValueError(
        f'unlearned_confs has {unlearned.shape[1]} forget examples (columns) '
        f'but retrained_confs has {retrained.shape[1]}; both must score the '
        'same forget set in the same order.')
  return unlearned, retrained
