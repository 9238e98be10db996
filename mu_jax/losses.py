"""Loss functions: pure, jit-able, batch-mean reductions.

Each takes logits of shape [batch, classes]; labels are int [batch].
"""

import jax
import jax.numpy as jnp
import optax


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
