"""The NeurIPS 2023 Machine Unlearning Challenge's many-model statistics.

They compare N unlearned models with N models retrained without the forget
set, example by example, from [models, forget examples] statistics
(`model_confidences.logit_scaled_confidence`):
`forgetting_quality` is the challenge's forgetting-quality estimate F, from
per-example (epsilon, delta) estimates; `challenge_score` folds in the
challenge's utility ratios.

mu_jax/forgetting_quality.py trains and runs the N models and calls these
and U-LiRA (mu_jax/likelihood_ratio.py); the per-model attacks of the usual
table are in mu_jax/mia.py.

References:
  J. Triantafillou et al. NeurIPS 2023 Machine Unlearning Challenge starting
  kit (`unlearning-challenge/starting-kit`).
  E. Triantafillou et al. `Are we making progress in unlearning? Findings
  from the first NeurIPS unlearning competition`, arXiv:2406.09073, 2024
  (`google-deepmind/unlearning_evaluation: metric.py, main.py`).
"""

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from mu_jax import model_confidences

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
  unlearned, retrained = model_confidences.model_matrices(
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
