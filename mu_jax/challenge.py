"""The NeurIPS 2023 Machine Unlearning Challenge's many-model statistics.

They compare N unlearned models with N models retrained without the forget
set, example by example, from [models, forget examples] statistics
(`logit_scaled_confidence`):

* `forgetting_quality`: the challenge's forgetting-quality estimate F, from
  per-example (epsilon, delta) estimates; `challenge_score` folds in the
  challenge's utility ratios.
* `ulira_attack`: a U-LiRA-style per-example likelihood-ratio attack.

mu_jax/forgetting_quality.py trains and runs the N models and calls these;
the per-model attacks of the usual table are in mu_jax/mia.py.

References:
  J. Triantafillou et al. NeurIPS 2023 Machine Unlearning Challenge starting
  kit (`unlearning-challenge/starting-kit`).
  E. Triantafillou et al. `Are we making progress in unlearning? Findings
  from the first NeurIPS unlearning competition`, arXiv:2406.09073, 2024
  (`google-deepmind/unlearning_evaluation: metric.py, main.py`).
  J. Hayes et al. `Inexact Unlearning Needs More Careful Evaluations to
  Avoid a False Sense of Privacy`, arXiv:2403.01218, 2024 (U-LiRA).
"""

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import special
from scipy import stats
from sklearn import metrics

# NeurIPS 2023 Machine Unlearning Challenge: forgetting quality.
#
# Constants of the challenge's `metric.py` (google-deepmind/
# unlearning_evaluation): DELTA, EPSILON_CAP, NUM_THRESHOLDS_PER_UNIT, the
# 2.0-unit margin of the double-threshold sweep, the 1% range ratio under
# which an example gets the cap, and the 0.5-wide score buckets.
CHALLENGE_DELTA = 1e-5
CHALLENGE_EPSILON_CAP = 50.0
CHALLENGE_THRESHOLDS_PER_UNIT = 100
_WINDOW_MARGIN = 2.0
_PEAKY_RANGE_RATIO = 0.01
_BUCKET_WIDTH = 0.5


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
  logits = logits.astype(np.float64)
  if not np.all(np.isfinite(logits)):
    raise ValueError(
        f'logits has {np.sum(~np.isfinite(logits))} NaN or infinite values; '
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
  if not np.all(np.isfinite(array)):
    raise ValueError(
        f'{name} has {np.sum(~np.isfinite(array))} NaN or infinite values; '
        'use logit_scaled_confidence, which is finite for finite logits.')
  return array


def _as_model_matrices(
    unlearned_confs: npt.ArrayLike, retrained_confs: npt.ArrayLike,
    min_models: int) -> tuple[np.ndarray, np.ndarray]:
  """Validates the two [models, examples] arrays against each other."""
  unlearned = _as_model_matrix('unlearned_confs', unlearned_confs, min_models)
  retrained = _as_model_matrix('retrained_confs', retrained_confs, min_models)
  if unlearned.shape[1] != retrained.shape[1]:
    raise ValueError(
        f'unlearned_confs has {unlearned.shape[1]} forget examples (columns) '
        f'but retrained_confs has {retrained.shape[1]}; both must score the '
        'same forget set in the same order.')
  return unlearned, retrained


def challenge_max_epsilon(num_models: int) -> float:
  """The challenge's largest scored epsilon: ceil(ln(num_models - 1)).

  A back-of-the-envelope bound on the epsilon that `num_models` samples per
  distribution can certify (`compute_forget_score_from_confs` in the
  challenge's metric.py). E.g. 2 for 4 models, 7 for 512 (the challenge).

  Args:
    num_models: number of unlearned models, >= 2.

  Returns:
    The bound, a whole number as a float (0.0 for 2 models).

  Raises:
    ValueError: if `num_models` < 2.
  """
  if num_models < 2:
    raise ValueError(f'num_models must be >= 2, got {num_models}.')
  return float(math.ceil(math.log(num_models - 1)))


def epsilon_bucket_scores(
    epsilons: npt.ArrayLike, num_models: int) -> np.ndarray:
  """Per-example points of the challenge's forgetting-quality score.

  Epsilons fall in half-open buckets of width 0.5, [0, 0.5), [0.5, 1), ...,
  up to `challenge_max_epsilon(num_models)`; bucket k scores 2**-k (1, 1/2,
  1/4, ...) and any epsilon >= that bound scores 0. An epsilon exactly on a
  boundary k/2 belongs to bucket k (the challenge tests `e < start + 0.5`).
  With 2 models the bound is 0, so every example scores 0.

  Orientation: higher = more forgotten; 1 = epsilon below 0.5.

  Args:
    epsilons: [E] per-example epsilons, >= 0 (infinity allowed: scores 0).
    num_models: number of unlearned models, which sets the bound (as in the
      challenge, whatever the number of retrained models).

  Returns:
    [E] float64 scores in {0} U {2**-k}.

  Raises:
    ValueError: if `epsilons` is not 1-D, is empty, has NaN or negative
      values, or `num_models` < 2.
  """
  epsilons = np.asarray(epsilons, dtype=np.float64)
  if epsilons.ndim != 1 or epsilons.size == 0:
    raise ValueError(
        f'epsilons must be a non-empty 1-D array, got shape {epsilons.shape}.')
  if np.any(np.isnan(epsilons)) or np.any(epsilons < 0):
    raise ValueError('epsilons must be >= 0 and not NaN.')
  num_buckets = int(round(challenge_max_epsilon(num_models) / _BUCKET_WIDTH))
  # Multiplying by 2 is exact, so floor() puts k/2 in bucket k, as the
  # challenge's sequential `e < start + 0.5` tests do.
  bucket = np.floor(epsilons / _BUCKET_WIDTH)
  in_range = bucket < num_buckets
  return np.where(in_range, 0.5 ** np.where(in_range, bucket, 0.0), 0.0)


class ForgettingQuality(NamedTuple):
  """Result of `forgetting_quality`.

  Attributes:
    score: F in [0, 1], the mean of `example_scores`; higher = better
      forgetting, 1 = every example has epsilon < 0.5.
    epsilons: [E] per-example epsilon estimates in [0, epsilon_cap]; lower =
      better forgetting.
    example_scores: [E] bucket points of each example (see
      `epsilon_bucket_scores`).
    max_epsilon: ceil(ln(N - 1)) for N unlearned models; epsilons at or above
      it score 0.
  """
  score: float
  epsilons: np.ndarray
  example_scores: np.ndarray
  max_epsilon: float

  def histogram(self) -> tuple[np.ndarray, np.ndarray]:
    """Counts examples per scoring bucket.

    Returns:
      `(edges, counts)`: edges [B + 2] = 0, 0.5, ..., max_epsilon, inf, and
      counts [B + 1], where counts[k] is the number of examples with epsilon
      in [edges[k], edges[k + 1]): bucket k, worth 2**-k, for k < B, and the
      last entry those scoring 0.
    """
    num_buckets = int(round(self.max_epsilon / _BUCKET_WIDTH))
    edges = np.append(
        _BUCKET_WIDTH * np.arange(num_buckets + 1, dtype=np.float64), np.inf)
    bucket = np.minimum(np.floor(self.epsilons / _BUCKET_WIDTH), num_buckets)
    counts = np.bincount(bucket.astype(np.int64), minlength=num_buckets + 1)
    return edges, counts


def _epsilon_table(
    num_unlearned: int, num_retrained: int, delta: float) -> np.ndarray:
  """Epsilon of a decision rule, by its error counts on the two model sets.

  Entry [a, b] is for a rule that errs on `a` unlearned and `b` retrained
  models. Which of the two rates is the FPR and which the FNR depends on the
  rule, but the challenge's epsilon is symmetric in them:
  max(log(1 - delta - FPR) - log(FNR), log(1 - delta - FNR) - log(FPR)),
  clipped at 0 (NaN where both logs are of non-positive numbers). Both rates
  0 is a perfect separation (+inf); exactly one of them 0 is NaN: such rules
  are discarded, as the challenge does (too few samples to trust them).
  """
  rate_u = np.arange(num_unlearned + 1)[:, None] / num_unlearned
  rate_r = np.arange(num_retrained + 1)[None, :] / num_retrained
  with np.errstate(divide='ignore', invalid='ignore'):
    first = np.log(1.0 - delta - rate_u) - np.log(rate_r)
    second = np.log(1.0 - delta - rate_r) - np.log(rate_u)
    # fmax skips a NaN operand (like nanmax); maximum keeps an all-NaN NaN.
    table = np.maximum(np.fmax(first, second), 0.0)
  table[0, :] = np.nan
  table[:, 0] = np.nan
  table[0, 0] = np.inf
  return table


def _count_below(sorted_values: np.ndarray, thresholds: np.ndarray):
  """How many of `sorted_values` are < each threshold."""
  return np.searchsorted(sorted_values, thresholds, side='left')


def _count_inside(sorted_values: np.ndarray, left: np.ndarray,
                  right: np.ndarray) -> np.ndarray:
  """How many of `sorted_values` lie in [left[i, j], right[i]] (0 if empty).

  Args:
    sorted_values: [M] ascending.
    left: [R, L] left ends.
    right: [R] right ends.

  Returns:
    [R * L] counts, row-major.
  """
  at_most_right = np.searchsorted(sorted_values, right, side='right')
  below_left = np.searchsorted(sorted_values, left, side='left')
  return np.maximum(at_most_right[:, None] - below_left, 0).ravel()


def _example_epsilon(
    unlearned: np.ndarray, retrained: np.ndarray, retrained_positive: bool,
    table: np.ndarray, epsilon_cap: float, thresholds_per_unit: int) -> float:
  """The challenge's epsilon for one forget example (see forgetting_quality).

  Args:
    unlearned: [Mu] sorted confidences under the unlearned models.
    retrained: [Mr] sorted confidences under the retrained models.
    retrained_positive: whether the retrained median is strictly larger.
    table: `_epsilon_table(Mu, Mr, delta)`.
    epsilon_cap: the cap.
    thresholds_per_unit: thresholds per unit of confidence.

  Returns:
    Epsilon in [0, epsilon_cap].
  """
  range_u = unlearned[-1] - unlearned[0]
  range_r = retrained[-1] - retrained[0]
  largest, smallest = max(range_u, range_r), min(range_u, range_r)
  # One distribution far peakier than the other: the cap. With both ranges 0
  # the challenge's 0 / 0 is NaN, which fails its `< 0.01`: not capped.
  if largest > 0 and smallest / largest < _PEAKY_RANGE_RATIO:
    return epsilon_cap
  num_u, num_r = unlearned.size, retrained.size
  errors_u, errors_r = [], []

  # Single-threshold rules: confidence >= t predicts the distribution with
  # the larger median ("positive"); thresholds evenly span the pooled range.
  low = min(unlearned[0], retrained[0])
  high = max(unlearned[-1], retrained[-1])
  num_single = int(np.ceil((high - low) * thresholds_per_unit))
  thresholds = np.linspace(low, high, num_single)
  if retrained_positive:
    errors_r.append(_count_below(retrained, thresholds))
    errors_u.append(num_u - _count_below(unlearned, thresholds))
  else:
    errors_u.append(_count_below(unlearned, thresholds))
    errors_r.append(num_r - _count_below(retrained, thresholds))

  # Double-threshold rules: left <= confidence <= right predicts the peakier
  # distribution: the one with the smaller range, or on a tie of ranges the
  # one that is not positive. The challenge's grid: `right` spans the peaky
  # maximum -+ 2 (written as its min + range), `thresholds_per_unit` (100)
  # per unit; for each, 4 * thresholds_per_unit `left` values span
  # right - range -+ 2.
  if retrained_positive:
    peaky_is_retrained = range_r < range_u
  else:
    peaky_is_retrained = range_r <= range_u
  peaky, other = ((retrained, unlearned) if peaky_is_retrained else
                  (unlearned, retrained))
  width = smallest
  right_low = peaky[0] + width - _WINDOW_MARGIN
  right_high = peaky[-1] + _WINDOW_MARGIN
  num_right = int(np.ceil((right_high - right_low) * thresholds_per_unit))
  right = np.linspace(right_low, right_high, num_right)
  num_left = int(np.ceil(2 * _WINDOW_MARGIN * thresholds_per_unit))
  left = np.linspace(right - width - _WINDOW_MARGIN,
                     right - width + _WINDOW_MARGIN, num_left, axis=-1)
  peaky_errors = peaky.size - _count_inside(peaky, left, right)
  other_errors = _count_inside(other, left, right)
  if peaky_is_retrained:
    errors_r.append(peaky_errors)
    errors_u.append(other_errors)
  else:
    errors_u.append(peaky_errors)
    errors_r.append(other_errors)

  values = table[np.concatenate(errors_u), np.concatenate(errors_r)]
  values = values[~np.isnan(values)]
  # The challenge asserts that some threshold survives; none does only when
  # no grid threshold splits the two samples (e.g. both constant and equal,
  # or all data within a grid step), i.e. no evidence: epsilon 0.
  epsilon = values.max() if values.size else 0.0
  return float(min(max(epsilon, 0.0), epsilon_cap))


def forgetting_quality(
    unlearned_confs: npt.ArrayLike,
    retrained_confs: npt.ArrayLike,
    *,
    delta: float = CHALLENGE_DELTA,
    epsilon_cap: float = CHALLENGE_EPSILON_CAP,
    thresholds_per_unit: int = CHALLENGE_THRESHOLDS_PER_UNIT,
) -> ForgettingQuality:
  """The NeurIPS 2023 unlearning challenge's forgetting quality F.

  For each forget example, an (epsilon, delta)-unlearning estimate from the
  empirical distributions of its confidence under N independently unlearned
  models and under independently retrained models (`compute_forget_score_
  from_confs` and `_get_epsilons` in google-deepmind/unlearning_evaluation's
  metric.py), then F = mean of per-example bucket points. Per example:

  1. "Positive" is the distribution with the larger median; on a tie, the
     unlearned one.
  2. If the smaller of the two ranges (max - min) is below 1% of the larger
     (`smallest / largest < 0.01`, strict; not when both are 0), epsilon is
     `epsilon_cap`: one distribution is far peakier than the other.
  3. Otherwise, every decision rule of two families is tried:
     single thresholds t (confidence >= t predicts positive), ceil(range *
     thresholds_per_unit) values evenly spanning the pooled range, ends
     included; and windows [left, right] (inclusive; inside predicts the
     peakier distribution, the one with the smaller range or, on a tie of
     ranges, the one that is not positive), with
     ceil((max_peaky + 2 - (min_peaky + w - 2)) * thresholds_per_unit)
     `right` values and, for each, ceil(4 * thresholds_per_unit) `left`
     values evenly spanning right - w -+ 2, w the smaller range. For each
     rule, FPR and FNR over the models give
     max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR),
     clipped at 0 (log of a non-positive number is NaN and skipped, a rule
     with both NaN discarded); FPR = FNR = 0 (perfect separation) gives
     +inf; a rule with exactly one of them 0 is discarded.
  4. The example's epsilon is the max over kept rules, clipped to
     [0, epsilon_cap].

  Finally each epsilon scores 2**-k in bucket k of [0, 0.5), [0.5, 1), ...
  below ceil(ln(N - 1)), N the number of unlearned models, and 0 from there
  on (`epsilon_bucket_scores`); F is the mean over examples.

  Orientation: higher F = better forgetting. 1 = every example is
  (epsilon < 0.5)-indistinguishable from retraining; 0 = every example is
  at or above the bound. F can only be as good as the model counts allow:
  with 2 unlearned models the bound is 0 and F is always 0; the challenge
  used 512 of each (bound 7).

  Differences from the challenge's code (all in edge cases):
  * It needs as many unlearned as retrained models (it `np.where`s the two
    arrays); here the counts may differ: each rate is over its own models.
  * It computes the single-threshold grid with `torch.linspace` in PyTorch's
    default float32 and the rates as float32 means; here all is float64.
    A rule's outcome can differ only for a confidence within float32
    rounding (~1e-7 relative) of a grid threshold, and epsilons by float32
    rounding. The double-threshold grid is the same numpy float64 grid.
  * Its check that some rule survives step 3, `assert thr_eps` on a numpy
    array, raises ValueError ("truth value ... ambiguous") as published
    whenever more than one survives; it is read here as the intended
    non-empty check. Where none survives (e.g. both distributions constant
    and equal), epsilon is 0 here.

  Args:
    unlearned_confs: [Mu, E] confidence (e.g. `logit_scaled_confidence`) of
      each of E forget examples under each of Mu >= 2 unlearned models.
    retrained_confs: [Mr, E] the same under Mr >= 2 retrained models.
    delta: the delta of (epsilon, delta); the challenge's 1e-5.
    epsilon_cap: the largest epsilon; the challenge's 50.
    thresholds_per_unit: grid density of the rule families; the challenge's
      100. The confidence's scale matters: the grids are in its units.

  Returns:
    A `ForgettingQuality`.

  Raises:
    ValueError: if an input is not a finite 2-D array, has fewer than 2 rows
      (models) or no columns, the column counts differ, or a keyword is out
      of range.
  """
  unlearned, retrained = _as_model_matrices(
      unlearned_confs, retrained_confs, min_models=2)
  if not 0.0 <= delta < 1.0:
    raise ValueError(f'delta must be in [0, 1), got {delta}.')
  if not 0.0 < epsilon_cap < np.inf:
    raise ValueError(f'epsilon_cap must be positive and finite, got '
                     f'{epsilon_cap}.')
  if int(thresholds_per_unit) != thresholds_per_unit or thresholds_per_unit < 1:
    raise ValueError(f'thresholds_per_unit must be a positive integer, got '
                     f'{thresholds_per_unit}.')
  table = _epsilon_table(unlearned.shape[0], retrained.shape[0], delta)
  retrained_positive = (
      np.median(retrained, axis=0) > np.median(unlearned, axis=0))
  unlearned_sorted = np.sort(unlearned, axis=0)
  retrained_sorted = np.sort(retrained, axis=0)
  epsilons = np.array([
      _example_epsilon(unlearned_sorted[:, i], retrained_sorted[:, i],
                       bool(retrained_positive[i]), table, float(epsilon_cap),
                       int(thresholds_per_unit))
      for i in range(unlearned.shape[1])
  ])
  num_models = unlearned.shape[0]
  example_scores = epsilon_bucket_scores(epsilons, num_models)
  return ForgettingQuality(
      score=float(example_scores.mean()),
      epsilons=epsilons,
      example_scores=example_scores,
      max_epsilon=challenge_max_epsilon(num_models))


def _mean_accuracy(name: str, value: npt.ArrayLike) -> float:
  """A scalar accuracy, or the mean of per-model accuracies; finite, >= 0."""
  array = np.asarray(value, dtype=np.float64)
  if array.ndim > 1 or array.size == 0:
    raise ValueError(
        f'{name} must be a number or a non-empty 1-D array of per-model '
        f'accuracies, got shape {array.shape}.')
  if not np.all(np.isfinite(array)) or np.any(array < 0):
    raise ValueError(f'{name} must be finite and >= 0, got {value}.')
  return float(array.mean())


def challenge_score(
    forgetting_quality: 'ForgettingQuality | float',
    retain_acc_unlearned: npt.ArrayLike,
    retain_acc_retrained: npt.ArrayLike,
    test_acc_unlearned: npt.ArrayLike,
    test_acc_retrained: npt.ArrayLike,
) -> float:
  """The challenge's final score: F * (RA_u / RA_r) * (TA_u / TA_r).

  As in the challenge's main.py, the accuracies are averages over the
  models: pass each as a number or as per-model values (averaged here).
  Accuracies may be fractions or percentages, as long as each ratio uses
  the same unit. The ratios are not clipped: an unlearned model more
  accurate than retraining raises the score, and it can exceed F (or 1).

  Orientation: higher = better; F times the relative utility.

  Args:
    forgetting_quality: F in [0, 1], or a `ForgettingQuality`.
    retain_acc_unlearned: retain-set accuracy of the unlearned models.
    retain_acc_retrained: retain-set accuracy of the retrained models, > 0.
    test_acc_unlearned: test-set accuracy of the unlearned models.
    test_acc_retrained: test-set accuracy of the retrained models, > 0.

  Returns:
    The score, >= 0.

  Raises:
    ValueError: if F is not in [0, 1], an accuracy is negative, not finite
      or of the wrong shape, or a retrained (denominator) accuracy is 0.
  """
  if isinstance(forgetting_quality, ForgettingQuality):
    forgetting_quality = forgetting_quality.score
  quality = float(forgetting_quality)
  if not 0.0 <= quality <= 1.0:
    raise ValueError(
        f'forgetting_quality must be in [0, 1], got {forgetting_quality}.')
  retain_u = _mean_accuracy('retain_acc_unlearned', retain_acc_unlearned)
  retain_r = _mean_accuracy('retain_acc_retrained', retain_acc_retrained)
  test_u = _mean_accuracy('test_acc_unlearned', test_acc_unlearned)
  test_r = _mean_accuracy('test_acc_retrained', test_acc_retrained)
  for name, value in (('retain_acc_retrained', retain_r),
                      ('test_acc_retrained', test_r)):
    if value <= 0:
      raise ValueError(
          f'{name} must be positive (it is a denominator), got {value}; '
          'check that the retrained models were evaluated.')
  return quality * (retain_u / retain_r) * (test_u / test_r)


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
  unlearned, retrained = _as_model_matrices(
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
