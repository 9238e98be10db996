"""Evaluation as the unlearning literature reports it.

Accuracies on the forget, retain and test splits (UA = 100 - forget accuracy),
the SVC MIA-efficacy of SalUn / Unlearn-Sparse and a loss-based MIA AUC, and
the Avg. Gap to the retrained model. All percentages are in [0, 100].
"""

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from mu_jax import augment
from mu_jax import mia
from mu_jax import parallel
from mu_jax import splits as splits_lib

# The four metrics whose gaps to retrain make the Avg. Gap (SalUn, Fan et al.
# 2024, Table 1).
GAP_METRICS = ('unlearn_acc', 'retain_acc', 'test_acc', 'mia_efficacy')


@functools.partial(parallel.compile_function,
                   static_argnames=('mean', 'std'))
def _per_example(state, images, labels, *, mean, std):
  x = augment.normalize(images, mean, std)
  (logits, _), _ = state.apply(state.params, x, train=False)
  log_probs = jax.nn.log_softmax(logits)
  label_log_prob = jnp.take_along_axis(log_probs, labels[:, None], -1)[:, 0]
  # log p_y - log sum_{k != y} p_k from the logits, stably (LiRA's
  # confidence; model_confidences.logit_scaled_confidence is its
  # float64 twin).
  true_logit = jnp.take_along_axis(logits, labels[:, None], -1)[:, 0]
  others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1]) > 0, -jnp.inf,
                     logits)
  return {'correct': logits.argmax(-1) == labels,
          'confidence': jnp.exp(label_log_prob),
          'loss': -label_log_prob,
          'logit_confidence': true_logit - jax.nn.logsumexp(others, -1)}


def per_example(state, images: np.ndarray, labels: np.ndarray, *,
                mean, std, mesh, batch_size: int = 512,
                desc: str = 'eval') -> dict[str, np.ndarray]:
  """Per-sample correctness, true-label confidence, CE loss, LiRA confidence.

  'logit_confidence' is log p_y - log sum_{k != y} p_k (the NeurIPS 2023
  challenge's statistic, `model_confidences.logit_scaled_confidence`).

  The model runs in eval mode (BatchNorm running statistics). Batches are
  padded to `batch_size` so that one compiled program serves all of them.
  In a multi-process run every process passes the same arrays, places its
  devices' rows and gets every output (gathered from the others).
  """
  parallel.check_batch_size(batch_size, mesh, 'evaluation')
  sharding = parallel.batch_sharded(mesh)
  state = jax.device_put(state, parallel.replicated(mesh))
  outputs = []
  n = len(labels)
  for start in tqdm.trange(0, n, batch_size, desc=desc, leave=False,
                           mininterval=2.0, disable=n <= 8 * batch_size):
    image = images[start:start + batch_size]
    label = labels[start:start + batch_size].astype(np.int32)
    real = len(label)
    if real < batch_size:
      image = np.concatenate([image, np.zeros_like(
          image[:1]).repeat(batch_size - real, 0)])
      label = np.concatenate([label, np.zeros(batch_size - real, np.int32)])
    batch = parallel.put((image, label), sharding)
    out = _per_example(state, *batch, mean=tuple(mean), std=tuple(std))
    outputs.append(jax.tree.map(lambda v, r=real: v[:r],
                                parallel.to_host(out)))
  return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}


def metrics(train_out: Mapping[str, np.ndarray],
            test_out: Mapping[str, np.ndarray],
            split: splits_lib.Split) -> dict[str, float]:
  """The standard table row from per-example outputs on train and test sets.

  Returns:
    forget_acc, unlearn_acc (UA = 100 - forget_acc), retain_acc (RA),
    test_acc (TA, on `split.test`: the remaining classes in class-wise mode),
    forget_test_acc (class-wise only), mia_efficacy (SalUn's SVC attack on
    the true-label confidence: % of forget samples judged non-members) and
    mia_loss_auc (AUC of telling forget from test samples by loss; 0.5 =
    indistinguishable).
  """
  def pct(values):
    return float(100.0 * np.mean(values))

  forget = {k: v[split.forget] for k, v in train_out.items()}
  retain = {k: v[split.retain] for k, v in train_out.items()}
  test = {k: v[split.test] for k, v in test_out.items()}
  row = {'forget_acc': pct(forget['correct']),
         'retain_acc': pct(retain['correct']),
         'test_acc': pct(test['correct'])}
  row['unlearn_acc'] = 100.0 - row['forget_acc']
  if len(split.forget_test):
    row['forget_test_acc'] = pct(test_out['correct'][split.forget_test])
  row['mia_efficacy'] = 100.0 * mia.svc_mia_efficacy(
      retain['confidence'], test['confidence'], forget['confidence'])
  row['mia_loss_auc'] = mia.loss_mia_auc(forget['loss'], test['loss'])
  return row


def row(state, dataset, split: splits_lib.Split, *, mesh, batch_size: int,
        desc: str = 'eval') -> dict[str, float]:
  """UA, RA, TA, MIA... of one model: `metrics` on its outputs on the
  dataset's train and test sets."""
  outputs = [per_example(state, x, y, mean=dataset.mean, std=dataset.std,
                         mesh=mesh, batch_size=batch_size, desc=desc)
             for x, y in ((dataset.train_images, dataset.train_labels),
                          (dataset.test_images, dataset.test_labels))]
  return metrics(*outputs, split)


def avg_gap(row: Mapping[str, float], retrain_row: Mapping[str, float]):
  """Mean |row - retrain| over UA, RA, TA and MIA-efficacy (Avg. Gap)."""
  return float(np.mean([abs(row[k] - retrain_row[k]) for k in GAP_METRICS]))
