"""Membership-inference attacks (MIA) on one model, used to judge forgetting.

Two attacks on per-example statistics computed on the host:

* `svc_mia_efficacy`: SalUn's "MIA-Efficacy" (`SVC_MIA`, confidence variant).
  An SVC learns to tell retain (member) from test (non-member) confidences,
  then scores the forget set. Higher = more forget examples look like unseen
  data; the target is the value of a model retrained without the forget set.
* `loss_mia_auc`: ROC AUC of telling forget from test examples by their loss,
  balanced as in the NeurIPS'23 unlearning challenge kit. 0.5 = the forget
  set is indistinguishable from unseen data.

Both take numpy-convertible 1-D arrays; run the model in eval mode and pass,
e.g., `softmax(logits)[i, label_i]` or the per-example cross-entropy. The
statistics that compare many unlearned models with many retrained ones are
in mu_jax/challenge.py (the NeurIPS 2023 challenge's forgetting quality) and
mu_jax/likelihood_ratio.py (U-LiRA).

References:
  C. Fan et al. `SalUn: Empowering Machine Unlearning via Gradient-based
  Weight Saliency in Both Image Classification and Generation`, ICLR 2024
  (`OPTML-Group/Unlearn-Saliency: Classification/evaluation/SVC_MIA.py`).
  J. Triantafillou et al. NeurIPS 2023 Machine Unlearning Challenge starting
  kit (`unlearning-challenge/starting-kit`).
"""

import numpy as np
import numpy.typing as npt
from sklearn import metrics
from sklearn import svm


def require_finite(name: str, array: np.ndarray, hint: str) -> np.ndarray:
  """`array`, unless it holds NaN or infinite values (then a ValueError
  that counts them, naming `name`, ending with `hint`)."""
  if not np.all(np.isfinite(array)):
    raise ValueError(f'{name} has {np.sum(~np.isfinite(array))} NaN or '
                     f'infinite values; {hint}')
  return array


def _as_vector(name: str, values: npt.ArrayLike) -> np.ndarray:
  """Returns `values` as a finite, non-empty 1-D float64 array."""
  array = np.asarray(values, dtype=np.float64)
  if array.ndim != 1:
    raise ValueError(
        f'{name} must be a 1-D array of per-example values, got shape '
        f'{array.shape}; select the true-label entry per example first.')
  if array.size == 0:
    raise ValueError(f'{name} is empty; pass at least one example.')
  return require_finite(name, array, 'check the model outputs.')


def svc_mia_efficacy(
    retain_confidence: npt.ArrayLike,
    test_confidence: npt.ArrayLike,
    forget_confidence: npt.ArrayLike,
) -> float:
  """SalUn's MIA-Efficacy: fraction of forget examples predicted non-member.

  Exactly SalUn's `SVC_MIA(...)['confidence']`: an
  `SVC(C=3, gamma='auto', kernel='rbf')` is fit on the confidence as a single
  feature, with the first `len(test)` retain examples labelled 1 (member) and
  the test examples labelled 0 (non-member), then predicts the forget set.
  Papers report 100 times this value.

  Orientation: higher = more forgetting. 1.0 means every forget example looks
  like unseen test data, 0.0 that every one looks like training data. The
  ideal is not 1.0 but the value of a model retrained on the retain set.

  The attack fits an SVC on 2 * len(test) examples, at a superlinear cost
  (about 7 s on one CPU core for CIFAR-10's 10000 test images). When member
  and non-member confidences are alike, its decision is close to arbitrary:
  one run may land anywhere in [0, 1] rather than near 0.5, so compare
  methods against Retrain, not against 0.5.

  Args:
    retain_confidence: [R] softmax probability of the true label on retain
      examples. Only the first `len(test_confidence)` are used.
    test_confidence: [T] the same on test examples.
    forget_confidence: [F] the same on forget examples.

  Returns:
    `1 - mean(predict(forget))`, in [0, 1].

  Raises:
    ValueError: if an input is empty, not 1-D, or not finite.
  """
  retain = _as_vector('retain_confidence', retain_confidence)
  test = _as_vector('test_confidence', test_confidence)
  forget = _as_vector('forget_confidence', forget_confidence)
  # SalUn takes `Subset(retain, range(len(test)))`, which fails when retain is
  # shorter than test; truncating test instead keeps the shadow set balanced,
  # as it is in SalUn's setting.
  n = min(retain.size, test.size)
  features = np.concatenate([retain[:n], test[:n]])[:, None]
  labels = np.concatenate([np.ones(n), np.zeros(n)])
  classifier = svm.SVC(C=3, gamma='auto', kernel='rbf')
  classifier.fit(features, labels)
  return float(1.0 - classifier.predict(forget[:, None]).mean())


def loss_mia_auc(forget_loss: npt.ArrayLike, test_loss: npt.ArrayLike) -> float:
  """ROC AUC of a loss-threshold attack separating forget from test examples.

  Forget examples are the positive ("member") class and the score is
  `-loss`, so lower loss means more likely a member. As in the NeurIPS'23
  kit, the classes are balanced by keeping the first `min(F, T)` examples of
  each.

  Orientation: 1.0 = every forget example has a lower loss than every test
  example (the model still remembers them); 0.5 = indistinguishable, the
  ideal for a model that never saw the forget set; below 0.5 = forget
  examples have a higher loss than unseen data, itself a detectable trace of
  unlearning (e.g. after too much gradient ascent).

  Args:
    forget_loss: [F] per-example loss on forget examples.
    test_loss: [T] per-example loss on test examples.

  Returns:
    The AUC, in [0, 1]; ties count one half.

  Raises:
    ValueError: if an input is empty, not 1-D, or not finite.
  """
  forget = _as_vector('forget_loss', forget_loss)
  test = _as_vector('test_loss', test_loss)
  n = min(forget.size, test.size)
  scores = -np.concatenate([forget[:n], test[:n]])
  labels = np.concatenate([np.ones(n), np.zeros(n)])
  return float(metrics.roc_auc_score(labels, scores))
