"""Every method (found by file name) runs on 1 and 4 devices with one result.

A new method file in mu_jax/methods/ is picked up here automatically.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from configs import default
from mu_jax import host_batches
from mu_jax import methods
from mu_jax import models
from mu_jax import optim
from mu_jax import parallel
from mu_jax import state as state_lib
from mu_jax import train
from mu_jax.methods import base
from tests import test_util

_PREP = host_batches.Preprocessing(mean=(0.5,), std=(0.25,))
_BATCH = 16


def _tiny_data():
  n_forget, n_retain = 32, 96
  images = test_util.tiny_images(n_forget + n_retain)
  labels = test_util.tiny_labels(n_forget + n_retain)
  is_forget = np.zeros(len(labels), np.float32)
  is_forget[:n_forget] = 1.0
  split = host_batches.split_data
  return {'forget': split(images[:n_forget], labels[:n_forget]),
          'retain': split(images[n_forget:], labels[n_forget:]),
          'mixed': split(images, labels, is_forget=is_forget)}


def _run_method(name: str, mesh):
  config = default.method_config(name)
  config.epochs = 1
  config.batch_size = _BATCH
  config.forget_batch_size = 0
  config.retain_batch_size = 0
  # SGD for every method: Adam divides each gradient entry by its own
  # magnitude, so it blows the devices' float rounding of near-zero entries
  # up to lr-sized steps, which says nothing about data parallelism.
  config.optim = default.optimizer_section('sgd', lr=config.optim.lr)
  data = _tiny_data()
  model = models.create(ml_collections.ConfigDict({'name': 'cnn',
                                                   'width': 4}), 4)

  def init_variables(rng):
    variables = dict(model.init(rng, jnp.zeros((1, 8, 8, 1))))
    return variables.pop('params'), variables

  batch_size = {s: _BATCH for s in data}
  ctx = base.Context(
      num_classes=4, epochs=1,
      steps_per_epoch={s: len(d['label']) // _BATCH for s, d in data.items()},
      batch_size=batch_size, init_variables=init_variables,
      iterate=lambda s: host_batches.iterate_in_order(data[s], _BATCH, _PREP,
                                                      mesh))
  method = methods.get(name).make(config, ctx)
  steps = max(1, sum(n for _, n in method.plan(0)))
  tx = optim.make_optimizer(config.optim, steps, 1)
  start = state_lib.create(model, tx, (8, 8, 1), jax.random.key(0))
  return train.run(method, start, data, epochs=1, batch_size=batch_size,
                   seed=0, prep=_PREP, mesh=mesh, desc=name)


class MethodsTest(parameterized.TestCase):

  @parameterized.parameters(*methods.AVAILABLE)
  def test_one_device_equals_four_devices(self, name):
    one = _run_method(name, parallel.make_mesh(1))
    four = _run_method(name, parallel.make_mesh(4))
    for a, b in zip(jax.tree.leaves(one.state.params),
                    jax.tree.leaves(four.state.params)):
      self.assertTrue(np.all(np.isfinite(a)))
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    self.assertEqual(one.history[0].keys(), four.history[0].keys())

  @parameterized.parameters(*methods.AVAILABLE)
  def test_config_and_interface(self, name):
    config = default.method_config(name)
    self.assertEqual(methods.canonical_name(config.name), name)
    for field in ('epochs', 'batch_size', 'optim', 'variant', 'loss_weight'):
      self.assertIn(field, config)

  def test_aliases_and_errors(self):
    self.assertEqual(methods.canonical_name('salUN'), 'salun')
    with self.assertRaisesRegex(ValueError, 'unknown method'):
      methods.get('nope')


if __name__ == '__main__':
  absltest.main()
