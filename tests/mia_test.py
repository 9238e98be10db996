"""Tests for mu_jax.mia: SVC MIA-Efficacy and the loss-threshold AUC."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from mu_jax import mia


def _members(rng, n):
  """Confidences of training examples: close to 1."""
  return np.clip(rng.normal(0.99, 0.005, n), 0.0, 1.0)


def _non_members(rng, n):
  """Confidences of unseen examples: much lower."""
  return np.clip(rng.normal(0.3, 0.1, n), 0.0, 1.0)


class SvcMiaEfficacyTest(parameterized.TestCase):

  def test_forget_like_non_members_is_forgotten(self):
    rng = np.random.default_rng(0)
    efficacy = mia.svc_mia_efficacy(
        _members(rng, 600), _non_members(rng, 300), _non_members(rng, 200))
    self.assertGreater(efficacy, 0.98)

  def test_forget_like_members_is_remembered(self):
    rng = np.random.default_rng(1)
    efficacy = mia.svc_mia_efficacy(
        _members(rng, 600), _non_members(rng, 300), _members(rng, 200))
    self.assertLess(efficacy, 0.02)

  def test_mixed_forget_set(self):
    rng = np.random.default_rng(2)
    forget = np.concatenate([_members(rng, 150), _non_members(rng, 50)])
    efficacy = mia.svc_mia_efficacy(
        _members(rng, 300), _non_members(rng, 300), forget)
    self.assertAlmostEqual(efficacy, 0.25, delta=0.03)

  def test_identical_distributions_average_half(self):
    # With no signal the SVC's decision is close to arbitrary, so one run can
    # land far from 0.5 (documented); over seeds it has no preference.
    values = []
    for seed in range(20):
      rng = np.random.default_rng(seed)
      retain, test, forget = (rng.uniform(0.0, 1.0, 300) for _ in range(3))
      values.append(mia.svc_mia_efficacy(retain, test, forget))
    self.assertAlmostEqual(np.mean(values), 0.5, delta=0.1)
    self.assertTrue(all(0.0 <= v <= 1.0 for v in values))

  def test_hand_checkable(self):
    retain = [0.95, 0.96, 0.97, 0.98]
    test = [0.05, 0.10, 0.15, 0.20]
    # Two forget examples sit among the non-members, two among the members.
    forget = [0.0, 0.1, 0.99, 1.0]
    self.assertEqual(mia.svc_mia_efficacy(retain, test, forget), 0.5)
    self.assertEqual(mia.svc_mia_efficacy(retain, test, [0.1]), 1.0)
    self.assertEqual(mia.svc_mia_efficacy(retain, test, [0.97]), 0.0)

  def test_only_first_len_test_retain_examples_are_members(self):
    retain = [0.95, 0.96, 0.97, 0.98]
    test = [0.05, 0.10, 0.15, 0.20]
    forget = [0.0, 0.1, 0.5, 0.99, 1.0]
    # Later retain entries would pull the boundary if they were used.
    padded = retain + [0.1] * 50
    self.assertEqual(mia.svc_mia_efficacy(padded, test, forget),
                     mia.svc_mia_efficacy(retain, test, forget))

  def test_short_retain_uses_first_test_examples(self):
    retain = [0.95, 0.96]
    test = [0.05, 0.10, 0.95, 0.96]
    self.assertEqual(mia.svc_mia_efficacy(retain, test, [0.0, 0.1, 0.99]),
                     mia.svc_mia_efficacy(retain, test[:2], [0.0, 0.1, 0.99]))

  def test_accepts_lists_and_float32(self):
    rng = np.random.default_rng(3)
    retain = _members(rng, 50).astype(np.float32)
    test = list(_non_members(rng, 50))
    value = mia.svc_mia_efficacy(retain, test, retain[:10])
    self.assertIsInstance(value, float)

  @parameterized.named_parameters(
      ('empty_retain', ([], [0.1], [0.1]), 'retain_confidence is empty'),
      ('empty_test', ([0.9], [], [0.1]), 'test_confidence is empty'),
      ('empty_forget', ([0.9], [0.1], []), 'forget_confidence is empty'),
      ('nan', ([0.9, np.nan], [0.1], [0.1]), 'NaN'),
      ('inf', ([0.9], [0.1], [np.inf]), 'NaN or infinite'),
      ('two_d', ([[0.9, 0.1]], [0.1], [0.1]), '1-D'),
  )
  def test_errors(self, args, message):
    with self.assertRaisesRegex(ValueError, message):
      mia.svc_mia_efficacy(*args)


class LossMiaAucTest(parameterized.TestCase):

  def test_perfect_separation(self):
    self.assertEqual(mia.loss_mia_auc([0.01, 0.02, 0.03], [1.0, 2.0, 3.0]),
                     1.0)

  def test_reversed(self):
    self.assertEqual(mia.loss_mia_auc([1.0, 2.0, 3.0], [0.01, 0.02, 0.03]),
                     0.0)

  def test_identical_distributions(self):
    rng = np.random.default_rng(0)
    auc = mia.loss_mia_auc(rng.exponential(1.0, 5000),
                           rng.exponential(1.0, 5000))
    self.assertAlmostEqual(auc, 0.5, delta=0.03)

  def test_hand_computed(self):
    # Pairs (forget, test) where the forget loss is lower: (0.1, 0.3),
    # (0.1, 0.9), (0.5, 0.9); (0.5, 0.3) is not. AUC = 3 / 4.
    self.assertEqual(mia.loss_mia_auc([0.1, 0.5], [0.3, 0.9]), 0.75)

  def test_ties_count_half(self):
    self.assertEqual(mia.loss_mia_auc([0.5], [0.5]), 0.5)

  def test_balances_by_taking_first_examples(self):
    # Only the first two test losses are used; the trailing ones would lower
    # the AUC to 0.5 if they counted.
    self.assertEqual(mia.loss_mia_auc([0.1, 0.2], [1.0, 2.0, 0.0, 0.0]), 1.0)
    self.assertEqual(mia.loss_mia_auc([0.1, 0.2, 9.0, 9.0], [1.0, 2.0]), 1.0)

  @parameterized.named_parameters(
      ('empty_forget', ([], [0.1]), 'forget_loss is empty'),
      ('empty_test', ([0.1], []), 'test_loss is empty'),
      ('nan', ([np.nan], [0.1]), 'NaN'),
      ('two_d', ([0.1], [[0.1, 0.2]]), '1-D'),
  )
  def test_errors(self, args, message):
    with self.assertRaisesRegex(ValueError, message):
      mia.loss_mia_auc(*args)


if __name__ == '__main__':
  absltest.main()
