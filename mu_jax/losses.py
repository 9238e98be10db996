"""Loss functions: pure, jit-able, batch-mean reductions.

Logits are float [batch, classes], embeddings float [batch, dim]; labels are
int [batch]; per-sample flags and weights are float [batch]. The KL losses
follow PyTorch's `F.kl_div(log q, p, reduction='batchmean')`: summed over
classes, averaged over the batch (PyTorch's `reduction='batchmean'`).
"""

import jax
import jax.numpy as jnp
import optax
from jax.scipy import special


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy, averaged over the batch.

  Args:
    logits: float [batch, classes].
    labels: int [batch], class indices.

  Returns:
    Scalar: mean_i(-log softmax(logits_i)[labels_i]), as
    `torch.nn.functional.cross_entropy` with its default reduction.

  Example:
    >>> cross_entropy(jnp.zeros((1, 4)), jnp.array([2]))  # log(4)
    Array(1.3862944, dtype=float32)
  """
  return jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def weighted_mean(values: jax.Array, weights: jax.Array | None) -> jax.Array:
  """Mean of `values` [batch] under per-sample `weights` [batch].

  Args:
    values: float [batch].
    weights: float [batch], non-negative, or None for the plain mean. A 0/1
      mask gives the mean over the selected samples.

  Returns:
    Scalar sum_i(w_i * v_i) / sum_i(w_i); 0 (with zero gradient) when all
    weights are 0, so that a mixed batch without forget (or retain) samples
    contributes nothing instead of NaN.

  Example:
    >>> weighted_mean(jnp.array([1., 2., 3.]), jnp.array([1., 0., 1.]))
    Array(2., dtype=float32)
  """
  if weights is None:
    return jnp.mean(values)
  total = jnp.sum(weights)
  # max(total, 1e-12) keeps the division finite; the numerator is 0 anyway.
  return jnp.sum(weights * values) / jnp.maximum(total, 1e-12)


def _kl_to_student(target_probs, student_logits, temperature):
  """KL(target || softmax(student / T)) per sample, [batch]."""
  log_q = jax.nn.log_softmax(student_logits / temperature, axis=-1)
  # xlogy(0, 0) = 0: a target probability that underflowed to 0 adds nothing,
  # as in F.kl_div.
  return jnp.sum(special.xlogy(target_probs, target_probs)
                 - target_probs * log_q, axis=-1)


def kl_per_example(student_logits: jax.Array, teacher_logits: jax.Array,
                   temperature: float = 1.0) -> jax.Array:
  """Per-sample KL(softmax(teacher / T) || softmax(student / T)).

  Args:
    student_logits: float [batch, classes].
    teacher_logits: float [batch, classes].
    temperature: softmax temperature T > 0.

  Returns:
    float [batch], each >= 0; no T**2 factor (see `distill_kl`).

  Example:
    >>> kl_per_example(jnp.zeros((1, 2)), jnp.log(jnp.array([[.75, .25]])))
    Array([0.13081208], dtype=float32)  # .75 log 1.5 + .25 log .5
  """
  log_p = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
  log_q = jax.nn.log_softmax(student_logits / temperature, axis=-1)
  return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def distill_kl(student_logits: jax.Array, teacher_logits: jax.Array,
               temperature: float = 1.0,
               weights: jax.Array | None = None) -> jax.Array:
  """Knowledge-distillation KL, SCRUB's `DistillKL(T)`.

  Args:
    student_logits: float [batch, classes].
    teacher_logits: float [batch, classes].
    temperature: softmax temperature T > 0.
    weights: optional float [batch]; the batch mean becomes the weighted
      mean of `weighted_mean` (e.g. a 0/1 mask selecting the forget samples of
      a mixed batch).

  Returns:
    Scalar T**2 * mean_i KL(softmax(teacher_i / T) || softmax(student_i / T)).
    The T**2 keeps gradient magnitudes comparable across temperatures
    (Hinton et al., 2015).

  Example:
    >>> distill_kl(jnp.zeros((1, 2)), jnp.log(jnp.array([[.75, .25]])), 2.0)
    Array(0.14536315, dtype=float32)

  References:
    Kurmanji et al., "Towards Unbounded Machine Unlearning" (SCRUB), NeurIPS
    2023; `meghdadk/SCRUB: thirdparty/repdistiller/distiller_zoo/KD.py`:
    `F.kl_div(log_softmax(s/T), softmax(t/T), reduction='sum') * T**2 / B`.
  """
  kl = kl_per_example(student_logits, teacher_logits, temperature)
  return weighted_mean(kl, weights) * temperature ** 2


def signed_distill_kl(student_logits: jax.Array, teacher_logits: jax.Array,
                      is_forget: jax.Array,
                      temperature: float = 1.0) -> jax.Array:
  """Distillation KL on retain samples minus that on forget samples.

  The objective of the capstone's one-loss "SCRUB" (kklusd/Unlearning
  `mu/Scrub.py`) on a mixed batch of B samples, F the
  forget and R the retain samples:
  |R|/B * KL_R - |F|/B * KL_F = (sum_R KL_i - sum_F KL_i) / B, where KL_S is
  the mean KL over S. Written as a sum, it needs no division by |F| or |R|,
  so a batch with no (or one) forget sample is fine; the original crashed on
  a single one.

  Args:
    student_logits: float [batch, classes].
    teacher_logits: float [batch, classes].
    is_forget: float [batch], 1 for forget samples, 0 for retain ones.
    temperature: softmax temperature T > 0; the result is scaled by T**2 as in
      `distill_kl` (the capstone uses T = 1).

  Returns:
    Scalar T**2 * mean_i((1 - 2 is_forget_i) * KL_i). Minimising it pulls the
    student to the teacher on retain samples and pushes it away on forget
    samples.
  """
  kl = kl_per_example(student_logits, teacher_logits, temperature)
  return jnp.mean((1.0 - 2.0 * is_forget) * kl) * temperature ** 2


def bad_teaching_kl(student_logits: jax.Array, competent_logits: jax.Array,
                    incompetent_logits: jax.Array, is_forget: jax.Array,
                    temperature: float = 1.0,
                    weights: jax.Array | None = None) -> jax.Array:
  """Bad Teaching's loss: imitate the bad teacher on forget samples only.

  target_i = is_forget_i * softmax(incompetent_i / T)
             + (1 - is_forget_i) * softmax(competent_i / T)
  loss = mean_i KL(target_i || softmax(student_i / T)).

  The mean is PyTorch's 'batchmean' (sum over classes, mean over the batch),
  as the capstone computes it. The reference code calls `F.kl_div` with the
  default reduction 'mean', which divides by batch * classes: its loss is
  this one divided by the number of classes (the same minimiser, gradients
  and effective learning rate smaller by that factor). No T**2 factor, as in
  both codes.

  Args:
    student_logits: float [batch, classes].
    competent_logits: float [batch, classes], the original model.
    incompetent_logits: float [batch, classes], a randomly initialised model.
    is_forget: float [batch], 1 for forget samples, 0 for retain ones
      (fractional values mix the two targets).
    temperature: softmax temperature T > 0.
    weights: optional float [batch]; a weighted mean over the batch instead
      of the plain one (see `weighted_mean`).

  Returns:
    Scalar loss, >= 0.

  References:
    Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep
    Networks using an Incompetent Teacher", AAAI 2023;
    `vikram2000b/bad-teaching-unlearning: unlearn.py::UnlearnerLoss`.
  """
  is_forget = is_forget[:, None]
  target = (is_forget * jax.nn.softmax(incompetent_logits / temperature, -1)
            + (1.0 - is_forget)
            * jax.nn.softmax(competent_logits / temperature, -1))
  kl = _kl_to_student(target, student_logits, temperature)
  return weighted_mean(kl, weights)


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def _contrastive_logits(z1, z2, temperature):
  """Cosine-similarity logits of the 2B views, self-pairs removed.

  Returns:
    (logits [2B, 2B], positive index [2B]); row i's positive is the other
    view of the same image, and the diagonal (self-similarity) is -inf.
  """
  z = _l2_normalize(jnp.concatenate([z1, z2], axis=0))
  n = z1.shape[0]
  logits = (z @ z.T) / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
  positive = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  return logits, positive


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float = 0.5):
  """SimCLR's NT-Xent loss, averaged over all 2*batch anchors.

  Args:
    z1: float [batch, dim], projections of the first view of each image.
    z2: float [batch, dim], projections of the second view (same order).
    temperature: tau > 0 dividing the cosine similarities.

  Returns:
    Scalar: mean over the 2B anchors i of -log(exp(s_ip / tau) /
    sum_{k != i} exp(s_ik / tau)), s = cosine similarity, p = i's other view.
    Rows are L2-normalised inside. Equals
    `optax.losses.ntxent(concat([z1, z2]), concat([arange(B), arange(B)]),
    temperature)`.

  References:
    T. Chen et al., A Simple Framework for Contrastive Learning of Visual
    Representations, ICML 2020.
  """
  logits, positive = _contrastive_logits(z1, z2, temperature)
  return cross_entropy(logits, positive)


def contrastive_unlearning_loss(z1: jax.Array, z2: jax.Array,
                                is_forget: jax.Array,
                                temperature: float = 1.0) -> jax.Array:
  """NT-Xent whose positive-pair similarity is negated for forget samples.

  The original project's `--supervised_mode original` term (`contrast_loss`):
  standard InfoNCE for retain samples; for forget samples the positive logit
  becomes -s_ip / tau, so minimising pushes the two views apart.

  Args:
    z1, z2: float [batch, dim], projections of two views of each image.
    is_forget: float [batch], 1 for forget samples, 0 for retain.
    temperature: tau (the original used 1).

  Returns:
    Scalar, the mean cross-entropy over the 2B anchors with target the
    (sign-flipped) positive.
  """
  logits, positive = _contrastive_logits(z1, z2, temperature)
  sign = 1.0 - 2.0 * jnp.concatenate([is_forget, is_forget])
  rows = jnp.arange(logits.shape[0])
  logits = logits.at[rows, positive].multiply(sign)
  return cross_entropy(logits, positive)


def simple_similarity_loss(student_z: jax.Array, reference_z: jax.Array,
                           is_forget: jax.Array) -> jax.Array:
  """The original project's `--supervised_mode simple` term.

  (Its `simple_contrast_loss`.)

  With s_i the cosine similarity of the student's and the SimCLR encoder's
  projections of image i, p the forget fraction of the batch and
  w = sigmoid(2p - 1):
    L = (1 - w) * mean_i(y_i s_i) + w * mean_i((y_i - 1) s_i),
  means over the whole batch. Minimising lowers the similarity of forget
  samples (y = 1) and raises it for retain samples (y = 0).

  Args:
    student_z: float [batch, dim].
    reference_z: float [batch, dim] (the frozen SimCLR projections).
    is_forget: float [batch], y_i in {0, 1}.

  Returns:
    Scalar.
  """
  s = jnp.sum(_l2_normalize(student_z) * _l2_normalize(reference_z), -1)
  w = jax.nn.sigmoid(2.0 * jnp.mean(is_forget) - 1.0)
  return ((1.0 - w) * jnp.mean(is_forget * s)
          + w * jnp.mean((is_forget - 1.0) * s))
