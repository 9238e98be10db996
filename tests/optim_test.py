"""Optimizers follow PyTorch's SGD / Adam semantics; schedules are right."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl.testing import absltest

from mu_jax import optim


def _run(config, grads_fn, p0, steps):
  tx = optim.make_optimizer(ml_collections.ConfigDict(config), 10, 1)
  params = jnp.asarray(p0)
  opt_state = tx.init(params)
  for _ in range(steps):
    updates, opt_state = tx.update(grads_fn(params), opt_state, params)
    params = optax.apply_updates(params, updates)
  return np.asarray(params)


class OptimTest(absltest.TestCase):

  def test_sgd_momentum_weight_decay_matches_torch(self):
    # torch.optim.SGD: d = g + wd*p; buf = m*buf + d (buf = d at step 1);
    # p -= lr*buf. Loss p^2/2, so g = p.
    lr, m, wd, p = 0.1, 0.9, 0.05, np.array([1.0, -2.0])
    buf = None
    for _ in range(3):
      d = p + wd * p
      buf = d if buf is None else m * buf + d
      p = p - lr * buf
    got = _run({'name': 'sgd', 'lr': lr, 'momentum': m, 'weight_decay': wd},
               lambda x: x, [1.0, -2.0], 3)
    np.testing.assert_allclose(got, p, rtol=1e-6)

  def test_adam_weight_decay_is_l2_not_adamw(self):
    # torch.optim.Adam(weight_decay=wd) adds wd*p to the gradient.
    lr, wd, b1, b2, eps = 0.01, 0.1, 0.9, 0.999, 1e-8
    p, mu, nu = np.array([1.0, -3.0]), 0.0, 0.0
    for t in range(1, 4):
      g = 2 * p + wd * p  # Loss p^2.
      mu, nu = b1 * mu + (1 - b1) * g, b2 * nu + (1 - b2) * g * g
      p = p - lr * (mu / (1 - b1**t)) / (np.sqrt(nu / (1 - b2**t)) + eps)
    got = _run({'name': 'adam', 'lr': lr, 'weight_decay': wd},
               lambda x: 2 * x, [1.0, -3.0], 3)
    np.testing.assert_allclose(got, p, rtol=1e-5)

  def test_multistep_schedule_counts_epochs(self):
    config = ml_collections.ConfigDict({'lr': 0.1, 'schedule': 'multistep',
                                        'milestones': (2, 3), 'gamma': 0.1})
    schedule = optim.make_schedule(config, steps_per_epoch=5, epochs=4)
    np.testing.assert_allclose(
        [schedule(s) for s in (0, 9, 10, 14, 15, 19)],
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)

  def test_cosine_with_warmup(self):
    config = ml_collections.ConfigDict({'lr': 1.0, 'schedule': 'cosine',
                                        'warmup_epochs': 1})
    schedule = optim.make_schedule(config, steps_per_epoch=10, epochs=3)
    self.assertAlmostEqual(float(schedule(0)), 0.0)
    self.assertAlmostEqual(float(schedule(5)), 0.5, places=5)
    self.assertAlmostEqual(float(schedule(10)), 1.0, places=5)
    self.assertAlmostEqual(float(schedule(20)), 0.5, places=5)  # Midway.
    self.assertLess(float(schedule(30)), 1e-6)

  def test_unknown_names(self):
    with self.assertRaisesRegex(ValueError, 'sgd'):
      optim.make_optimizer(ml_collections.ConfigDict(
          {'name': 'lion', 'lr': 0.1}), 1, 1)
    with self.assertRaisesRegex(ValueError, 'cosine'):
      optim.make_schedule(ml_collections.ConfigDict(
          {'lr': 0.1, 'schedule': 'poly'}), 1, 1)


if __name__ == '__main__':
  absltest.main()
