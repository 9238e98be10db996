"""The fast 2x2 max-pool equals flax's `nn.max_pool` in value and gradient."""

import flax.linen as nn
import jax
import numpy as np
import optax
from absl.testing import absltest
from absl.testing import parameterized

from mu_jax.models import cnn
from mu_jax.models import conv
from mu_jax.models import pooling


def _reference(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2))


class MaxPoolTest(parameterized.TestCase):

  @parameterized.product(shape=[(3, 8, 8, 4), (2, 7, 9, 3)],
                         ties=[False, True])
  def test_value_and_gradient_are_bit_identical(self, shape, ties):
    rng = np.random.default_rng(0)
    x = rng.random(shape, np.float32)
    if ties:
      # Few distinct values: many windows have several equal maxima, where
      # the gradient must go to the first one, as select_and_scatter does.
      x = np.floor(x * 3).astype(np.float32)
    g = rng.random(_reference(x).shape, np.float32)
    np.testing.assert_array_equal(pooling.max_pool_2x2(x), _reference(x))
    _, ours = jax.vjp(pooling.max_pool_2x2, x)
    _, theirs = jax.vjp(_reference, x)
    np.testing.assert_array_equal(ours(g)[0], theirs(g)[0])

  def test_jitted_gradient_matches(self):
    x = np.floor(np.random.default_rng(1).random((2, 6, 6, 2)) * 2).astype(
        np.float32)
    grad = lambda pool: jax.jit(jax.grad(lambda v: (pool(v) ** 2).sum()))(x)
    np.testing.assert_array_equal(grad(pooling.max_pool_2x2),
                                  grad(_reference))


class _FlaxPoolCNN(nn.Module):
  """models.cnn.CNN with flax's max-pool instead (same parameter names)."""

  @nn.compact
  def __call__(self, x):
    x = nn.max_pool(nn.relu(conv.Conv(4, (3, 3))(x)), (2, 2), strides=(2, 2))
    x = nn.max_pool(nn.relu(conv.Conv(8, (3, 3))(x)), (2, 2), strides=(2, 2))
    x = nn.relu(nn.Dense(16)(x.reshape((x.shape[0], -1))))
    return nn.Dense(3)(x), x


class CNNTrainingTest(absltest.TestCase):

  def test_training_is_bit_identical_to_flax_max_pool(self):
    rng = np.random.default_rng(0)
    # Quantised images: constant regions give tied maxima, as real data does.
    images = np.floor(rng.random((16, 8, 8, 1)) * 4).astype(np.float32)
    labels = rng.integers(0, 3, 16)
    ours, theirs = cnn.CNN(num_classes=3, width=4), _FlaxPoolCNN()
    params = ours.init(jax.random.key(0), images[:1])['params']
    tx = optax.sgd(0.1, momentum=0.9)

    def train(model):
      @jax.jit
      def step(p, opt_state):
        def loss_fn(p):
          logits, _ = model.apply({'params': p}, images)
          return optax.softmax_cross_entropy_with_integer_labels(
              logits, labels).mean()
        updates, opt_state = tx.update(jax.grad(loss_fn)(p), opt_state)
        return optax.apply_updates(p, updates), opt_state

      p, opt_state = params, tx.init(params)
      for _ in range(5):
        p, opt_state = step(p, opt_state)
      return p

    for a, b in zip(jax.tree.leaves(train(ours)),
                    jax.tree.leaves(train(theirs))):
      np.testing.assert_array_equal(a, b)


if __name__ == '__main__':
  absltest.main()
