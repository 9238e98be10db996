"""Tests for mu_jax.mia's challenge forgetting quality and U-LiRA attack."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from scipy import stats
from sklearn import metrics

from mu_jax import challenge
from mu_jax import likelihood_ratio
from mu_jax import model_confidences

_DELTA = 1e-5


# An independent, deliberately naive transcription of the NeurIPS 2023
# challenge's per-example epsilon and score (metric.py): pure-Python loops
# over examples and thresholds, the rule families written the reference's
# way (positive / negative, swapped for the window family), and none of
# challenge.py's helpers (no sorting, no searchsorted, no error-count table).


def _naive_threshold_epsilon(fpr, fnr, delta):
  """One threshold's epsilon; None when the threshold is discarded."""
  if fpr == 0 and fnr == 0:
    return math.inf
  if fpr == 0 or fnr == 0:
    return None
  terms = []
  for a, b in ((fpr, fnr), (fnr, fpr)):
    argument = 1 - delta - a
    if argument > 0:
      terms.append(math.log(argument) - math.log(b))
    elif argument == 0:
      terms.append(-math.inf)
  if not terms:
    return None
  return max(max(terms), 0.0)


def _naive_example_epsilon(unlearned, retrained, delta, cap, per_unit):
  """The challenge's epsilon of one example, the slow way."""
  if np.median(retrained) > np.median(unlearned):
    pos, neg = list(retrained), list(unlearned)
  else:
    pos, neg = list(unlearned), list(retrained)
  pos_diff = max(pos) - min(pos)
  neg_diff = max(neg) - min(neg)
  largest = pos_diff if pos_diff > neg_diff else neg_diff
  smallest = neg_diff if pos_diff > neg_diff else pos_diff
  with np.errstate(invalid='ignore'):
    if np.float64(smallest) / np.float64(largest) < 0.01:
      return cap

  rates = set()  # (fpr, fnr) pairs reached by some threshold.
  low = min(min(pos), min(neg))
  high = max(max(pos), max(neg))
  for t in np.linspace(low, high, int(math.ceil((high - low) * per_unit))):
    true_pos = sum(1 for c in pos if c >= t)
    false_pos = sum(1 for c in neg if c >= t)
    rates.add((false_pos / len(neg), (len(pos) - true_pos) / len(pos)))

  if pos_diff >= neg_diff:  # The window predicts the peakier one.
    pos, neg = neg, pos
  pos_array, neg_array = np.array(pos), np.array(neg)
  start = min(pos) + smallest - 2.0
  stop = max(pos) + 2.0
  for right in np.linspace(start, stop,
                           int(math.ceil((stop - start) * per_unit))):
    lefts = np.linspace(right - smallest - 2.0, right - smallest + 2.0,
                        int(math.ceil(4.0 * per_unit)))
    # All lefts of this right at once; then each distinct outcome.
    true_pos = np.sum((lefts[:, None] <= pos_array) & (pos_array <= right), 1)
    false_pos = np.sum((lefts[:, None] <= neg_array) & (neg_array <= right), 1)
    for tp, fp in set(zip(true_pos.tolist(), false_pos.tolist())):
      rates.add((fp / len(neg), (len(pos) - tp) / len(pos)))

  kept = [e for e in (_naive_threshold_epsilon(fpr, fnr, delta)
                      for fpr, fnr in rates) if e is not None]
  if not kept:
    return 0.0
  return min(max(max(kept), 0.0), cap)


def _naive_score(epsilons, num_models):
  """Mean bucket points, buckets built one by one as the challenge does."""
  bound = math.ceil(math.log(num_models - 1))
  buckets = []
  start, points = 0.0, 1.0
  while start + 0.5 <= bound:
    buckets.append((start, points))
    start += 0.5
    points /= 2
  total = 0.0
  for e in epsilons:
    for bucket_start, bucket_points in buckets:
      if e < bucket_start + 0.5:
        total += bucket_points
        break
  return total / len(epsilons)


def _naive_forgetting_quality(unlearned, retrained, delta=_DELTA, cap=50.0,
                              per_unit=100):
  epsilons = [
      _naive_example_epsilon(unlearned[:, i], retrained[:, i], delta, cap,
                             per_unit)
      for i in range(unlearned.shape[1])
  ]
  return np.array(epsilons), _naive_score(epsilons, unlearned.shape[0])


def _column(values):
  return np.array(values, dtype=np.float64)[:, None]


class LogitScaledConfidenceTest(parameterized.TestCase):

  def test_hand_computed(self):
    # softmax([2, 1, 0]) = [e^2, e, 1] / Z: log(e^2 / (e + 1)) = 2 - log(1+e);
    # for label 2, log(1 / (e^2 + e)) = -(1 + log(1 + e)); uniform 3 classes
    # give log((1/3) / (2/3)) = -log 2.
    confidence = model_confidences.logit_scaled_confidence(
        [[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.5, 0.5, 0.5]], [0, 2, 1])
    np.testing.assert_allclose(
        confidence,
        [2.0 - math.log(1.0 + math.e), -1.0 - math.log(1.0 + math.e),
         -math.log(2.0)],
        rtol=1e-12)
    self.assertEqual(confidence.dtype, np.float64)

  def test_extreme_logits_stay_finite_and_exact(self):
    # [1000, 0, 0]: label 0 gives 1000 - log(e^0 + e^0) = 1000 - log 2, where
    # the challenge's +1e-45 version saturates at log(1e45) = 103.6; label 1
    # gives 0 - log(e^1000 + 1) = -1000 to float precision; [-1000, 1000, 0]
    # with label 0 gives -1000 - 1000 = -2000.
    confidence = model_confidences.logit_scaled_confidence(
        np.array([[1000.0, 0.0, 0.0], [1000.0, 0.0, 0.0],
                  [-1000.0, 1000.0, 0.0]], dtype=np.float32), [0, 1, 0])
    np.testing.assert_allclose(confidence,
                               [1000.0 - math.log(2.0), -1000.0, -2000.0],
                               rtol=1e-12)
    self.assertTrue(np.all(np.isfinite(confidence)))

  def test_matches_probability_formula_for_moderate_logits(self):
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, (50, 10))
    labels = rng.integers(0, 10, 50)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p_true = probs[np.arange(50), labels]
    expected = np.log(p_true) - np.log(probs.sum(axis=1) - p_true)
    np.testing.assert_allclose(
        model_confidences.logit_scaled_confidence(logits, labels), expected,
        rtol=1e-9, atol=1e-12)

  def test_two_classes_is_the_logit_margin(self):
    np.testing.assert_allclose(
        model_confidences.logit_scaled_confidence([[3.0, -1.5], [0.25, 2.0]],
                                                  [0, 0]),
        [4.5, -1.75], rtol=1e-12)

  @parameterized.named_parameters(
      ('one_d_logits', ([1.0, 2.0], [0]), 'shape'),
      ('one_class', ([[1.0], [2.0]], [0, 0]), '2 classes'),
      ('nan', ([[np.nan, 1.0]], [0]), 'NaN'),
      ('label_count', ([[1.0, 2.0]], [0, 1]), 'labels must have shape'),
      ('float_labels', ([[1.0, 2.0]], [0.0]), 'integer'),
      ('label_range', ([[1.0, 2.0]], [2]), r'\[0, 2\)'),
      ('negative_label', ([[1.0, 2.0]], [-1]), r'\[0, 2\)'),
  )
  def test_errors(self, args, message):
    with self.assertRaisesRegex(ValueError, message):
      model_confidences.logit_scaled_confidence(*args)


class EpsilonBucketTest(parameterized.TestCase):

  @parameterized.named_parameters(
      # ceil(ln 3) = 2: buckets [0, .5), [.5, 1), [1, 1.5), [1.5, 2).
      ('four_models', 4,
       [0.0, 0.49, 0.5, 0.99, 1.0, 1.5, 1.99, 2.0, 50.0, np.inf],
       [1.0, 1.0, 0.5, 0.5, 0.25, 0.125, 0.125, 0.0, 0.0, 0.0]),
      # ln 1 = 0: nothing scores.
      ('two_models', 2, [0.0, 0.3], [0.0, 0.0]),
      # ceil(ln 2) = 1.
      ('three_models', 3, [0.0, 0.5, 1.0], [1.0, 0.5, 0.0]),
      # ln 20 = 2.996 -> 3, ln 21 = 3.045 -> 4.
      ('twenty_one_models', 21, [2.5, 3.0], [2.0**-5, 0.0]),
      ('twenty_two_models', 22, [3.0, 3.5, 4.0], [2.0**-6, 2.0**-7, 0.0]),
      # The challenge: ceil(ln 511) = 7, 14 buckets.
      ('challenge', 512, [6.5, 6.999, 7.0], [2.0**-13, 2.0**-13, 0.0]),
  )
  def test_boundaries(self, num_models, epsilons, expected):
    np.testing.assert_array_equal(
        challenge.epsilon_bucket_scores(epsilons, num_models), expected)

  def test_max_epsilon(self):
    self.assertEqual(challenge.challenge_max_epsilon(2), 0.0)
    self.assertEqual(challenge.challenge_max_epsilon(4), 2.0)
    self.assertEqual(challenge.challenge_max_epsilon(512), 7.0)

  def test_histogram(self):
    quality = challenge.ForgettingQuality(
        score=0.0, epsilons=np.array([0.0, 0.5, 0.7, 1.9, 2.0, 50.0]),
        example_scores=np.zeros(6), max_epsilon=2.0)
    edges, counts = quality.histogram()
    np.testing.assert_array_equal(edges, [0.0, 0.5, 1.0, 1.5, 2.0, np.inf])
    np.testing.assert_array_equal(counts, [1, 2, 0, 1, 2])

  @parameterized.named_parameters(
      ('negative', ([-0.1], 4), '>= 0'),
      ('nan', ([np.nan], 4), 'NaN'),
      ('two_d', ([[0.1]], 4), '1-D'),
      ('one_model', ([0.1], 1), 'num_models'),
  )
  def test_errors(self, args, message):
    with self.assertRaisesRegex(ValueError, message):
      challenge.epsilon_bucket_scores(*args)


class ForgettingQualityTest(parameterized.TestCase):

  def test_identical_samples_score_one(self):
    rng = np.random.default_rng(0)
    confs = rng.normal(0.0, 2.0, (8, 12))
    quality = challenge.forgetting_quality(confs, confs.copy())
    np.testing.assert_array_equal(quality.epsilons, np.zeros(12))
    self.assertEqual(quality.score, 1.0)
    np.testing.assert_array_equal(quality.example_scores, np.ones(12))

  def test_separated_distributions_get_the_cap(self):
    rng = np.random.default_rng(1)
    unlearned = rng.normal(0.0, 1.0, (8, 6))
    retrained = rng.normal(0.0, 1.0, (8, 6)) + 20.0
    for args in ((unlearned, retrained), (retrained, unlearned)):
      quality = challenge.forgetting_quality(*args)
      np.testing.assert_array_equal(quality.epsilons, np.full(6, 50.0))
      self.assertEqual(quality.score, 0.0)

  def test_peaky_distribution_gets_the_cap(self):
    # Range 0.009 against 1.0: below 1%, capped before any threshold.
    unlearned = _column([0.5, 0.503, 0.509, 0.505])
    retrained = _column([0.0, 0.5, 0.7, 1.0])
    self.assertEqual(
        challenge.forgetting_quality(unlearned, retrained).epsilons[0], 50.0)
    self.assertEqual(
        challenge.forgetting_quality(retrained, unlearned).epsilons[0], 50.0)
    # A constant column has range 0 < 1% of any positive range.
    self.assertEqual(
        challenge.forgetting_quality(_column([0.5] * 4), retrained).epsilons[0],
        50.0)

  def test_range_ratio_cap_is_strict(self):
    # Ranges 0.25 and 25: the ratio is exactly 0.01, not < 0.01, so the
    # rules run (the 1.0s and 1.25s straddle 1.1 and 1.2: no separation).
    # Shrunk to 0.24 (ratio 0.0096) the example gets the cap.
    retrained = _column([0.0, 25.0, 1.1, 1.2])
    unlearned = _column([1.0, 1.25, 1.0, 1.25])
    epsilon = challenge.forgetting_quality(unlearned, retrained).epsilons[0]
    self.assertLess(epsilon, 50.0)
    self.assertEqual(
        epsilon, _naive_forgetting_quality(unlearned, retrained)[0][0])
    shrunk = _column([1.0, 1.24, 1.0, 1.24])
    self.assertEqual(
        challenge.forgetting_quality(shrunk, retrained).epsilons[0], 50.0)

  def test_single_threshold_is_inclusive(self):
    # p = [0, 5.001 x3] (median 5.001) is positive against n = [0, 5, 5,
    # 5.001]. Only the grid's last threshold, t = max = 5.001, splits the
    # 5.001s from the 5s (the grid step is 0.01, the windows' too), and
    # only because confidence >= t counts as positive: FN = 1 (the 0),
    # FP = 1 (n's 5.001), epsilon = log((1 - d - 1/4) / (1/4)) = log(3 - 4d).
    # Every other rule reaches at best (FP, FN) = (3, 1) or (1, 3): 0.
    # (The challenge's float32 grid has t = 5.00099993, the same split.)
    p = _column([0.0, 5.001, 5.001, 5.001])
    n = _column([0.0, 5.0, 5.0, 5.001])
    self.assertAlmostEqual(challenge.forgetting_quality(n, p).epsilons[0],
                           math.log(3.0 - 4.0 * _DELTA), places=12)

  def test_window_edges_are_inclusive(self):
    # q = [-0.005, 0.5, 1.005, 4, 5] has the larger median; w = [0, 0.25,
    # 0.5, 1, 3] the smaller range, 3, so windows predict w. The first
    # window of the grid is exactly [0, 1]: right starts at min + range - 2
    # = 1 and its lefts end at 1 - range + 2 = 0; neighbours are 0.01 away,
    # past q's -0.005 and 1.005. With both ends inclusive it holds four w's
    # and one q: (FP, FN) = (1, 1) over 5 models, epsilon =
    # log((1 - d - 1/5) / (1/5)) = log(4 - 5d) = 1.386; no other rule gets
    # FP = FN = 1, and the best of the rest is log(3 - 5d) = 1.099.
    w = _column([0.0, 0.25, 0.5, 1.0, 3.0])
    q = _column([-0.005, 0.5, 1.005, 4.0, 5.0])
    for unlearned, retrained in ((w, q), (q, w)):
      self.assertAlmostEqual(
          challenge.forgetting_quality(unlearned, retrained).epsilons[0],
          math.log(4.0 - 5.0 * _DELTA), places=12)

  def test_constant_columns(self):
    # Both ranges 0: 0 / 0 is not < 1%, so the rules run. Different values
    # are separated by a single threshold; equal ones by nothing (the
    # challenge's assert would fail; epsilon 0 here).
    self.assertEqual(challenge.forgetting_quality(
        _column([0.0] * 4), _column([1.0] * 4)).epsilons[0], 50.0)
    self.assertEqual(challenge.forgetting_quality(
        _column([0.3] * 4), _column([0.3] * 4)).epsilons[0], 0.0)

  @parameterized.parameters(1e-5, 1e-3)
  def test_hand_computed_intermediate_epsilon(self, delta):
    # Sorted, the 8 confidences alternate: 0 (n), 1 (p), 1.5 (n), 2 (p),
    # 2.5 (n), 3 (p), 3.5 (n), 4 (p); p = [1, 2, 3, 4] has the larger median
    # (2.5 > 2) and the smaller range (3 < 3.5). A single threshold or a
    # window catches a contiguous run. A run with k p's has >= k - 1 n's, so
    # (FP, FN) counts reachable with both > 0 are at best (2, 1) (e.g. t in
    # (1.5, 2], or the window [1, 3]) and (1, 2) (e.g. t in (2.5, 3]); (1, 1)
    # is not reachable and (0, x), (x, 0) are discarded. With rates over 4
    # models, (FPR, FNR) = (1/2, 1/4) gives
    #   max(log(1 - d - 1/2) - log(1/4), log(1 - d - 1/4) - log(1/2))
    #   = log(2 - 4d)   (= 0.6931272 for d = 1e-5),
    # (1/4, 1/2) the same by symmetry. 4 unlearned models: ceil(ln 3) = 2,
    # and 0.69 is in bucket [0.5, 1): score 1/2.
    p = _column([1.0, 2.0, 3.0, 4.0])
    n = _column([0.0, 1.5, 2.5, 3.5])
    expected = math.log(2.0 - 4.0 * delta)
    for unlearned, retrained in ((n, p), (p, n)):
      quality = challenge.forgetting_quality(unlearned, retrained, delta=delta)
      self.assertAlmostEqual(quality.epsilons[0], expected, places=12)
      self.assertEqual(quality.score, 0.5)
      self.assertEqual(quality.max_epsilon, 2.0)
    naive, _ = _naive_forgetting_quality(n, p, delta=delta)
    self.assertAlmostEqual(naive[0], expected, places=12)

  def test_two_models_always_score_zero(self):
    confs = np.array([[0.0, 1.0], [1.0, 3.0]])
    quality = challenge.forgetting_quality(confs, confs)
    np.testing.assert_array_equal(quality.epsilons, [0.0, 0.0])
    self.assertEqual(quality.max_epsilon, 0.0)
    self.assertEqual(quality.score, 0.0)

  def test_bound_follows_the_unlearned_model_count(self):
    rng = np.random.default_rng(2)
    few, many = rng.normal(size=(3, 2)), rng.normal(size=(30, 2))
    self.assertEqual(challenge.forgetting_quality(few, many).max_epsilon, 1.0)
    self.assertEqual(challenge.forgetting_quality(many, few).max_epsilon, 4.0)

  @parameterized.named_parameters(
      # (unlearned models, retrained models, examples, rounding, per unit).
      ('equal_counts', 6, 6, 3, 0.0, 100),
      ('more_unlearned', 9, 5, 3, 0.0, 100),
      ('more_retrained', 4, 11, 3, 0.0, 100),
      # Rounded data: tied medians and ranges, data on grid ends.
      ('rounded', 5, 5, 3, 0.25, 100),
      ('rounded_three', 3, 3, 3, 0.5, 100),
      ('coarse_grid', 7, 6, 3, 0.0, 10),
  )
  def test_matches_naive_implementation(self, num_u, num_r, num_examples,
                                        rounding, per_unit):
    for seed in range(3):
      rng = np.random.default_rng(100 + seed)
      shift = rng.uniform(-2.0, 2.0, num_examples)
      unlearned = rng.normal(shift, rng.uniform(0.2, 2.0, num_examples),
                             (num_u, num_examples))
      retrained = rng.normal(0.0, rng.uniform(0.2, 2.0, num_examples),
                             (num_r, num_examples))
      if rounding:
        unlearned = np.round(unlearned / rounding) * rounding
        retrained = np.round(retrained / rounding) * rounding
      # One column with the same samples, one mirrored (equal ranges).
      unlearned[:, 0] = retrained[:num_u, 0] if num_u <= num_r else np.resize(
          retrained[:, 0], num_u)
      retrained[:, 1] = np.resize(-unlearned[:, 1], num_r)
      quality = challenge.forgetting_quality(unlearned, retrained,
                                       thresholds_per_unit=per_unit)
      naive_epsilons, naive_score = _naive_forgetting_quality(
          unlearned, retrained, per_unit=per_unit)
      np.testing.assert_allclose(quality.epsilons, naive_epsilons,
                                 rtol=1e-12, atol=0, err_msg=f'seed {seed}')
      self.assertAlmostEqual(quality.score, naive_score, places=12)
      # Not all trivial: some examples strictly between 0 and the cap.
      if seed == 0 and not rounding:
        self.assertTrue(np.any((quality.epsilons > 0) &
                               (quality.epsilons < 50)))

  def test_options(self):
    p = _column([1.0, 2.0, 3.0, 4.0])
    n = _column([0.0, 1.5, 2.5, 3.5])
    self.assertEqual(challenge.forgetting_quality(
        n, p + 20.0, epsilon_cap=10.0).epsilons[0], 10.0)
    # delta = 0 gives log 2 exactly.
    self.assertAlmostEqual(
        challenge.forgetting_quality(n, p, delta=0.0).epsilons[0],
        math.log(2.0), places=14)

  @parameterized.named_parameters(
      ('one_d', (np.zeros(4), np.zeros((4, 1))), '2-D'),
      ('one_model', (np.zeros((1, 3)), np.zeros((4, 3))), 'at least 2'),
      ('no_examples', (np.zeros((4, 0)), np.zeros((4, 0))), 'no forget'),
      ('columns', (np.zeros((4, 3)), np.zeros((4, 2))), 'same forget set'),
      ('nan', (np.full((4, 3), np.nan), np.zeros((4, 3))), 'NaN'),
  )
  def test_errors(self, args, message):
    with self.assertRaisesRegex(ValueError, message):
      challenge.forgetting_quality(*args)

  @parameterized.named_parameters(
      ('delta', {'delta': 1.0}, 'delta'),
      ('cap', {'epsilon_cap': 0.0}, 'epsilon_cap'),
      ('per_unit', {'thresholds_per_unit': 0}, 'thresholds_per_unit'),
  )
  def test_keyword_errors(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      challenge.forgetting_quality(np.zeros((3, 2)), np.ones((3, 2)), **kwargs)


class ChallengeScoreTest(parameterized.TestCase):

  def test_golden(self):
    # 0.5 * (0.72 / 0.8) * (0.6 / 0.75) = 0.5 * 0.9 * 0.8 = 0.36.
    self.assertAlmostEqual(challenge.challenge_score(0.5, 0.72, 0.8, 0.6, 0.75),
                           0.36, places=12)

  def test_per_model_accuracies_are_averaged(self):
    quality = challenge.ForgettingQuality(
        score=0.5, epsilons=np.zeros(1), example_scores=np.ones(1),
        max_epsilon=2.0)
    self.assertAlmostEqual(
        challenge.challenge_score(quality, [0.70, 0.74], [0.8, 0.8, 0.8],
                            np.array([0.6]), 0.75),
        0.36, places=12)

  @parameterized.named_parameters(
      ('zero_retain', (0.5, 0.9, 0.0, 0.8, 0.8), 'retain_acc_retrained'),
      ('zero_test', (0.5, 0.9, 0.9, 0.8, 0.0), 'test_acc_retrained'),
      ('quality_above_one', (1.5, 0.9, 0.9, 0.8, 0.8), r'\[0, 1\]'),
      ('negative_acc', (0.5, -0.1, 0.9, 0.8, 0.8), '>= 0'),
      ('nan_acc', (0.5, 0.9, 0.9, np.nan, 0.8), 'finite'),
      ('empty_acc', (0.5, [], 0.9, 0.8, 0.8), 'non-empty'),
  )
  def test_errors(self, args, message):
    with self.assertRaisesRegex(ValueError, message):
      challenge.challenge_score(*args)


class UliraAttackTest(parameterized.TestCase):

  def test_leave_one_model_out_scores(self):
    # Each model's score from Gaussians fitted without it, the explicit way.
    rng = np.random.default_rng(0)
    unlearned = rng.normal(0.5, 1.0, (5, 3))
    retrained = rng.normal(0.0, 2.0, (4, 3))
    result = likelihood_ratio.ulira_attack(unlearned, retrained)

    def log_ratio(x, unlearned_fit, retrained_fit):
      return (stats.norm.logpdf(x, unlearned_fit.mean(0), unlearned_fit.std(0))
              - stats.norm.logpdf(x, retrained_fit.mean(0),
                                  retrained_fit.std(0)))

    for m in range(5):
      np.testing.assert_allclose(
          result['unlearned_scores'][m],
          log_ratio(unlearned[m], np.delete(unlearned, m, 0), retrained),
          rtol=1e-9)
    for m in range(4):
      np.testing.assert_allclose(
          result['retrained_scores'][m],
          log_ratio(retrained[m], unlearned, np.delete(retrained, m, 0)),
          rtol=1e-9)
    scores = np.concatenate([result['unlearned_scores'].ravel(),
                             result['retrained_scores'].ravel()])
    labels = np.concatenate([np.ones(15), np.zeros(12)])
    self.assertAlmostEqual(result['auc'],
                           metrics.roc_auc_score(labels, scores), places=12)
    for i in range(3):
      self.assertAlmostEqual(
          result['example_auc'][i],
          metrics.roc_auc_score(
              np.concatenate([np.ones(5), np.zeros(4)]),
              np.concatenate([result['unlearned_scores'][:, i],
                              result['retrained_scores'][:, i]])),
          places=12)

  def test_identical_distributions_are_near_chance(self):
    rng = np.random.default_rng(0)
    means = rng.normal(0.0, 3.0, 100)
    scales = rng.uniform(0.5, 2.0, 100)
    unlearned = rng.normal(means, scales, (50, 100))
    retrained = rng.normal(means, scales, (50, 100))
    result = likelihood_ratio.ulira_attack(unlearned, retrained)
    self.assertAlmostEqual(result['auc'], 0.5, delta=0.03)
    self.assertAlmostEqual(result['accuracy'], 0.5, delta=0.03)
    self.assertLess(result['tpr_at_1pct_fpr'], 0.05)

  def test_separated_distributions_are_found(self):
    rng = np.random.default_rng(1)
    unlearned = rng.normal(5.0, 0.1, (10, 20))
    retrained = rng.normal(0.0, 0.1, (12, 20))
    result = likelihood_ratio.ulira_attack(unlearned, retrained)
    self.assertEqual(result['auc'], 1.0)
    self.assertEqual(result['tpr_at_1pct_fpr'], 1.0)
    self.assertEqual(result['accuracy'], 1.0)
    np.testing.assert_array_equal(result['example_auc'], np.ones(20))

  def test_constant_confidences_stay_finite(self):
    confs = np.full((4, 3), 2.0)
    result = likelihood_ratio.ulira_attack(confs, confs)
    self.assertTrue(np.all(np.isfinite(result['unlearned_scores'])))
    self.assertEqual(result['auc'], 0.5)

  @parameterized.named_parameters(
      ('two_models', (np.zeros((2, 3)), np.zeros((4, 3))), 'at least 3'),
      ('columns', (np.zeros((4, 3)), np.zeros((4, 2))), 'same forget set'),
      ('inf', (np.full((4, 3), np.inf), np.zeros((4, 3))), 'infinite'),
  )
  def test_errors(self, args, message):
    with self.assertRaisesRegex(ValueError, message):
      likelihood_ratio.ulira_attack(*args)

  def test_std_floor_error(self):
    with self.assertRaisesRegex(ValueError, 'std_floor'):
      likelihood_ratio.ulira_attack(np.zeros((3, 1)), np.zeros((3, 1)),
                                    std_floor=0.0)


if __name__ == '__main__':
  absltest.main()
