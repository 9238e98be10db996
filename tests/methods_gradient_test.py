"""The gradient-based methods: NegGrad, NegGrad+, random labels and SalUn.

Tiny synthetic data (8x8 grey images, 4 classes) and a width-4 CNN; each
method runs through the real driver (`train.run`).
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl.testing import absltest
from absl.testing import parameterized

from configs import default
from mu_jax import host_batches
from mu_jax import models
from mu_jax import optim
from mu_jax import parallel
from mu_jax import state as state_lib
from mu_jax import train
from mu_jax.methods import base
from mu_jax.methods import neggrad
from mu_jax.methods import neggrad_plus
from mu_jax.methods import random_label
from mu_jax.methods import salun
from tests import test_util

_PREP = host_batches.Preprocessing(mean=(0.5,), std=(0.25,))
_NUM_CLASSES = 4
# CE of the logits (log 3, 0) against label 0: -log(3/4).
_CE_3_TO_1 = -math.log(0.75)


def _data(n_forget=32, n_retain=64):
  n = n_forget + n_retain
  images, labels = test_util.tiny_images(n), test_util.tiny_labels(n)
  split = host_batches.split_data
  return {'forget': split(images[:n_forget], labels[:n_forget]),
          'retain': split(images[n_forget:], labels[n_forget:])}


def _run(module, overrides=None, *, epochs=2, batch=16, devices=1,
         data=None, optim_overrides=None):
  """Runs `module` from a fresh tiny CNN; returns (start state, result)."""
  data = data or _data()
  mesh = parallel.make_mesh(devices)
  config = default.method_config(module.__name__.rsplit('.', 1)[-1])
  config.update(overrides or {})
  config.optim.update(optim_overrides or {})
  model = models.create(ml_collections.ConfigDict(
      {'name': 'cnn', 'width': 4}), _NUM_CLASSES)

  def init_variables(rng):
    variables = dict(model.init(rng, jnp.zeros((1, 8, 8, 1))))
    return variables.pop('params'), variables

  ctx = base.Context(
      num_classes=_NUM_CLASSES, epochs=epochs,
      steps_per_epoch={s: len(d['label']) // batch for s, d in data.items()},
      batch_size={s: batch for s in data}, init_variables=init_variables,
      iterate=lambda s: host_batches.iterate_in_order(data[s], batch, _PREP,
                                                      mesh))
  method = module.make(config, ctx)
  # As unlearning.run_method: the optimizer comes from config.method.optim.
  tx = optim.make_optimizer(config.optim, sum(n for _, n in method.plan(0)),
                            epochs)
  state = state_lib.create(model, tx, (8, 8, 1), jax.random.key(0))
  result = train.run(method, state, data, epochs=epochs,
                     batch_size={s: batch for s in data}, seed=0, prep=_PREP,
                     mesh=mesh)
  return state, result


def _logits(state, params, split):
  x = (split['image'].astype(np.float32) / 255.0 - 0.5) / 0.25
  (logits, _), _ = state.apply(params, jnp.asarray(x), train=False)
  return np.asarray(logits)


def _forget_ce(state, params, data):
  logits = _logits(state, params, data['forget'])
  log_probs = jax.nn.log_softmax(logits)
  labels = data['forget']['label']
  return float(-np.mean(np.asarray(log_probs)[np.arange(len(labels)),
                                               labels]))


def _assert_finite(tree):
  for leaf in jax.tree.leaves(tree):
    np.testing.assert_array_equal(np.isfinite(np.asarray(leaf)), True)


class SaliencyMaskTest(parameterized.TestCase):

  # |g|: a = 3, 1, 0.5, 4 (row-major); b = 2, 0.1. N = 6.
  _GRADS = {'a': np.array([[3.0, -1.0], [0.5, -4.0]], np.float32),
            'b': np.array([2.0, -0.1], np.float32)}

  @parameterized.named_parameters(
      ('zero', 0.0, [[0, 0], [0, 0]], [0, 0]),
      # Top 3 of 6 over the whole tree: 4 and 3 in `a`, 2 in `b`.
      ('half', 0.5, [[1, 0], [0, 1]], [1, 0]),
      # floor(0.7 * 6) = 4 entries: adds the 1 in `a`.
      ('floor', 0.7, [[1, 1], [0, 1]], [1, 0]),
      ('one', 1.0, [[1, 1], [1, 1]], [1, 1]))
  def test_golden_values(self, ratio, expected_a, expected_b):
    mask = jax.jit(salun.saliency_mask, static_argnums=1)(self._GRADS, ratio)
    np.testing.assert_array_equal(mask['a'], expected_a)
    np.testing.assert_array_equal(mask['b'], expected_b)

  def test_dtype_and_structure_are_kept(self):
    grads = {'h': jnp.array([1.0, -3.0], jnp.bfloat16),
             'f': (jnp.array([[2.0]], jnp.float32),)}
    mask = salun.saliency_mask(grads, 0.5)
    self.assertEqual(jax.tree.structure(mask), jax.tree.structure(grads))
    self.assertEqual(mask['h'].dtype, jnp.bfloat16)
    self.assertEqual(mask['f'][0].dtype, jnp.float32)
    np.testing.assert_array_equal(mask['h'], [0, 1])
    np.testing.assert_array_equal(mask['f'][0], [[0]])

  def test_ties_go_to_the_first_entries_in_leaf_order(self):
    mask = salun.saliency_mask({'a': jnp.ones(3), 'b': -jnp.ones(3)}, 0.5)
    np.testing.assert_array_equal(mask['a'], [1, 1, 1])
    np.testing.assert_array_equal(mask['b'], [0, 0, 0])

  @parameterized.parameters(-0.1, 1.5)
  def test_bad_ratio(self, ratio):
    with self.assertRaisesRegex(ValueError, 'mask_ratio'):
      salun.saliency_mask(self._GRADS, ratio)


class LossHelperTest(absltest.TestCase):
  """Method-private losses against values worked out by hand."""

  def setUp(self):
    super().setUp()
    self.logits = jnp.array([[math.log(3.0), 0.0]])  # CE(label 0) = -log .75
    self.zeros = jnp.zeros((2, 4))  # CE = log 4 whatever the label.

  def test_ascent_loss(self):
    label = jnp.array([0])
    np.testing.assert_allclose(
        neggrad._ascent_loss(self.logits, label, 1.0), -_CE_3_TO_1,
        rtol=1e-6)
    np.testing.assert_allclose(
        neggrad._ascent_loss(self.logits, label, 0.1), -0.1 * _CE_3_TO_1,
        rtol=1e-6)

  def test_neggrad_plus_loss(self):
    retain = neggrad_plus._retain_term(self.logits, jnp.array([0]), 0.9)
    forget = neggrad_plus._forget_term(self.zeros, jnp.array([1, 3]), 0.9)
    np.testing.assert_allclose(retain, 0.9 * _CE_3_TO_1, rtol=1e-6)
    np.testing.assert_allclose(forget, -0.1 * math.log(4), rtol=1e-6)

  def test_masked_cross_entropy_sum_skips_padding(self):
    # Row 1 is (log 3, 0, 0, 0): p(label 0) = 3 / 6, CE = log 2. Row 2 is
    # padding (mask 0) and must not add its log 4.
    logits = jnp.array([[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0, 0.0],
                        [0.0, 0.0, 0.0, 0.0]])
    loss = salun._masked_cross_entropy_sum(logits, jnp.array([1, 0, 2]),
                                           jnp.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(loss, math.log(4) + math.log(2), rtol=1e-6)


class RandomLabelsTest(absltest.TestCase):

  def test_different_label_never_gives_the_true_label(self):
    labels = jnp.asarray(np.arange(4000) % _NUM_CLASSES, jnp.int32)
    drawn = random_label.random_labels(jax.random.key(0), labels,
                                       _NUM_CLASSES, different=True)
    self.assertEqual(drawn.dtype, labels.dtype)
    self.assertFalse(np.any(np.asarray(drawn) == np.asarray(labels)))
    # Uniform over the three other classes.
    for c in range(_NUM_CLASSES):
      others = np.asarray(drawn)[np.asarray(labels) == c]
      counts = np.bincount(others, minlength=_NUM_CLASSES)
      self.assertEqual(counts[c], 0)
      self.assertGreater(counts.min(initial=1000, where=np.arange(4) != c),
                         250)

  def test_plain_random_labels_include_the_true_label(self):
    labels = jnp.zeros(4000, jnp.int32)
    drawn = np.asarray(random_label.random_labels(
        jax.random.key(0), labels, _NUM_CLASSES))
    counts = np.bincount(drawn, minlength=_NUM_CLASSES)
    self.assertTrue(np.all(counts > 900))  # About 1000 each.

  def test_different_label_needs_two_classes(self):
    with self.assertRaisesRegex(ValueError, 'different_label'):
      random_label.random_labels(jax.random.key(0), jnp.zeros(3, jnp.int32),
                                 1, different=True)


class MethodsTest(parameterized.TestCase):

  def test_neggrad_raises_the_forget_loss(self):
    data = _data()
    start, result = _run(neggrad, {'epochs': 2}, data=data,
                         optim_overrides={'lr': 0.01})
    before = _forget_ce(start, start.params, data)
    after = _forget_ce(start, result.state.params, data)
    self.assertGreater(after, before + 0.05)
    # The step metric is the ascent loss: -CE on the batch.
    self.assertLess(result.history[-1]['loss'], 0.0)

  def test_neggrad_capstone_ignores_the_configured_optimizer(self):
    _, slow = _run(neggrad, {'variant': 'capstone'}, epochs=2,
                   optim_overrides={'lr': 1e-6, 'weight_decay': 0.0})
    _, fast = _run(neggrad, {'variant': 'capstone'}, epochs=2,
                   optim_overrides={'lr': 10.0, 'momentum': 0.0})
    for a, b in zip(jax.tree.leaves(slow.state.params),
                    jax.tree.leaves(fast.state.params)):
      np.testing.assert_array_equal(a, b)
    _, canonical = _run(neggrad, epochs=1, optim_overrides={'lr': 1e-6})
    self.assertFalse(all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(slow.state.params),
        jax.tree.leaves(canonical.state.params))))

  def test_neggrad_capstone_restarts_momentum_every_epoch(self):
    # As the original, which built a new SGD each epoch. 2 steps per epoch.
    data = _data(n_forget=32)
    model = models.create(ml_collections.ConfigDict(
        {'name': 'cnn', 'width': 4}), _NUM_CLASSES)
    ctx = base.Context(num_classes=_NUM_CLASSES, epochs=2,
                       steps_per_epoch={'forget': 2},
                       batch_size={'forget': 16}, init_variables=None,
                       iterate=None)
    config = default.method_config('neggrad')
    config.variant = 'capstone'
    method = neggrad.make(config, ctx)
    update = method.phases['main'].update
    state = state_lib.create(model, optax.sgd(1.0), (8, 8, 1),
                             jax.random.key(0))
    state, _ = method.prepare(None, state)
    x = (data['forget']['image'][:16].astype(np.float32) / 255 - 0.5) / 0.25
    batches = {'forget': {'image': jnp.asarray(x),
                          'label': jnp.asarray(data['forget']['label'][:16])}}

    step = jax.jit(lambda state: update(state, (), batches, None)[0])

    def next_bias(state, restart):
      if restart:
        state = state.replace(opt_state=state.tx.init(state.params))
      return np.asarray(step(state).params['Dense_1']['bias'])

    one = step(state)  # The next step is step 1 of epoch 0: momentum stays.
    self.assertFalse(np.array_equal(next_bias(one, False),
                                    next_bias(one, True)))
    two = step(one)  # The next step starts epoch 1: momentum restarts.
    np.testing.assert_array_equal(next_bias(two, False), next_bias(two, True))

  def test_unknown_variant(self):
    with self.assertRaisesRegex(ValueError, 'variant'):
      _run(neggrad, {'variant': 'nope'})

  @parameterized.named_parameters(
      ('neggrad_plus', neggrad_plus, {'alpha': 0.5}),
      ('rl_sequential', random_label, {}),
      ('rl_summed', random_label, {'loop': 'summed',
                                   'different_label': True}),
      ('salun_summed', salun, {'loop': 'summed'}))
  def test_changes_forget_predictions_and_stays_finite(self, module,
                                                       overrides):
    data = _data()
    start, result = _run(module, overrides, epochs=1, data=data,
                         optim_overrides={'lr': 0.05})
    _assert_finite(result.state.params)
    for metrics in result.history:
      for value in metrics.values():
        self.assertTrue(np.isfinite(value))
    before = _logits(start, start.params, data['forget'])
    after = _logits(start, result.state.params, data['forget'])
    self.assertGreater(np.abs(after - before).max(), 1e-2)

  def test_random_label_plans(self):
    data = _data(32, 64)  # 2 forget and 4 retain batches of 16.
    _, sequential = _run(random_label, {'retain_steps': 3}, epochs=1,
                         data=data)
    self.assertEqual(set(sequential.history[0]),
                     {'forget/loss', 'forget/accuracy', 'retain/loss',
                      'retain/accuracy'})
    self.assertEqual(int(sequential.state.step), 2 + 3)
    # 0 retain steps: a fraction of a retain pass, so the repair scales
    # with the split (SalUn's default is a fifth).
    _, fraction = _run(random_label, {'retain_fraction': 0.5}, epochs=1,
                       data=data)
    self.assertEqual(int(fraction.state.step), 2 + 2)
    with self.assertRaisesRegex(ValueError, 'retain_fraction'):
      _run(random_label, {'retain_fraction': 0.0}, data=data)
    _, summed = _run(random_label, {'loop': 'summed'}, epochs=1, data=data)
    self.assertEqual(int(summed.state.step), 2)
    with self.assertRaisesRegex(ValueError, 'loop'):
      _run(random_label, {'loop': 'nope'})

  def test_salun_frozen_weights_stay_bit_identical(self):
    # Strong weight decay and momentum, many steps: without the exact
    # selection both would drag the masked-out weights away.
    start, result = _run(
        salun, {'mask_ratio': 0.3}, epochs=6, devices=2,
        optim_overrides={'lr': 0.05, 'momentum': 0.9, 'weight_decay': 0.1})
    mask = result.method_state['mask']
    frozen = moved = total = 0
    for m, old, new in zip(jax.tree.leaves(mask),
                           jax.tree.leaves(start.params),
                           jax.tree.leaves(result.state.params)):
      m, old, new = np.asarray(m), np.asarray(old), np.asarray(new)
      self.assertEqual(m.dtype, old.dtype)
      # Bit patterns, so that -0.0 versus +0.0 would count as a change.
      np.testing.assert_array_equal(old.view(np.uint32)[m == 0],
                                    new.view(np.uint32)[m == 0])
      frozen += int(np.sum(m == 0))
      moved += int(np.sum(old[m == 1] != new[m == 1]))
      total += m.size
    self.assertEqual(total - frozen, math.floor(0.3 * total + 1e-6))
    self.assertGreater(moved, 0.9 * (total - frozen))

  @parameterized.parameters(
      # Batches of 8 on 4 devices. 10 samples: the last batch has 2 real
      # rows, 2 rows of the iterator's padding and 4 of SalUn's. 12: 4 real
      # rows and 4 of SalUn's, copies of a real row. No padding may count.
      10, 12)
  def test_salun_gradient_covers_the_forget_set_once(self, n):
    data = _data(n_forget=n, n_retain=16)
    mesh = parallel.make_mesh(4)
    model = models.create(ml_collections.ConfigDict(
        {'name': 'cnn', 'width': 4}), _NUM_CLASSES)
    state = state_lib.create(model, optim.make_optimizer(
        ml_collections.ConfigDict({'lr': 0.1}), 1, 1), (8, 8, 1),
                             jax.random.key(0))
    grads = salun._forget_gradient(state, host_batches.iterate_in_order(
        data['forget'], 8, _PREP, mesh))
    x = (data['forget']['image'].astype(np.float32) / 255.0 - 0.5) / 0.25

    def full_loss(params):
      (logits, _), _ = state.apply(params, jnp.asarray(x), train=False)
      return salun._masked_cross_entropy_sum(
          logits, jnp.asarray(data['forget']['label']), jnp.ones(n))

    expected = jax.jit(jax.grad(full_loss))(state.params)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

  def test_salun_is_not_random_labels(self):
    # The same run with and without the mask: SalUn keeps every weight
    # outside the salient fraction at its start, RL moves most of them.
    overrides = {'optim_overrides': {'lr': 0.05}, 'epochs': 2}
    start, rl = _run(random_label, **overrides)
    _, su = _run(salun, {'mask_ratio': 0.2}, **overrides)
    frozen = moved_by_rl = 0
    for m, old, a, b in zip(jax.tree.leaves(su.method_state['mask']),
                            jax.tree.leaves(start.params),
                            jax.tree.leaves(rl.state.params),
                            jax.tree.leaves(su.state.params)):
      m, old, a, b = map(np.asarray, (m, old, a, b))
      np.testing.assert_array_equal(b[m == 0], old[m == 0])
      frozen += int(np.sum(m == 0))
      moved_by_rl += int(np.sum(a[m == 0] != old[m == 0]))
    self.assertGreater(moved_by_rl, 0.5 * frozen)

  def test_salun_warns_when_its_mask_selects_everything_touched(self):
    with self.assertLogs('absl', level='WARNING') as logs:
      _run(salun, {'mask_ratio': 1.0}, epochs=1)
    self.assertTrue(any('behaves as random labels' in line
                        for line in logs.output), logs.output)

  def test_salun_bad_ratio(self):
    with self.assertRaisesRegex(ValueError, 'mask_ratio'):
      _run(salun, {'mask_ratio': 2.0})


if __name__ == '__main__':
  absltest.main()
