"""Bad Teaching and SCRUB: frozen teachers, what each phase does, variants."""


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from configs import bad_teaching as bad_teaching_config
from configs import scrub as scrub_config
from configs import default
from mu_jax import host_batches
from mu_jax import losses
from mu_jax import models
from mu_jax import optim
from mu_jax import parallel
from mu_jax import self_supervised
from mu_jax import state as state_lib
from mu_jax import train
from mu_jax.augmentation import opengan
from mu_jax.methods import bad_teaching
from mu_jax.methods import base
from mu_jax.methods import scrub
from tests import test_util

_PREP = host_batches.Preprocessing(mean=(0.5,), std=(0.25,))
_N_FORGET, _N_RETAIN = 16, 48
_BATCH = {'forget': 8, 'retain': 16, 'mixed': 16}


def _data():
  n = _N_FORGET + _N_RETAIN
  images, labels = test_util.tiny_images(n), test_util.tiny_labels(n)
  is_forget = np.zeros(n, np.float32)
  is_forget[:_N_FORGET] = 1.0
  split = host_batches.split_data
  return {'forget': split(images[:_N_FORGET], labels[:_N_FORGET]),
          'retain': split(images[_N_FORGET:], labels[_N_FORGET:]),
          'mixed': split(images, labels, is_forget=is_forget)}


class _Recorder:
  """`init_variables` of a tiny CNN that remembers what it returned."""

  def __init__(self, model):
    self.model, self.made = model, []

  def __call__(self, rng):
    variables = dict(self.model.init(rng, jnp.zeros((1, 8, 8, 1))))
    params = variables.pop('params')
    self.made.append(jax.tree.map(np.array, (params, variables)))
    return params, variables


def _simclr(model):
  """A tiny (untrained) SimCLR model, as the pipeline passes in `ctx`."""
  simclr = self_supervised.SimCLRModel(model, out_dim=8)
  variables = simclr.init(jax.random.key(5), jnp.zeros((1, 8, 8, 1)))
  return simclr.apply, variables, 0.5


def _opengan_hook(feature_dim=16):
  """A tiny (untrained) OpenGAN hook, as the pipeline passes in `ctx`."""
  config = default.opengan_section()
  config.update({'nz': 4, 'hidden_g': (8,), 'num_candidates': 3})
  params = opengan.init_params(config, feature_dim, jax.random.key(6))
  return opengan.make_hook(config, params, feature_dim)


def _setup(module, epochs=2, with_simclr=False, with_opengan=False,
           **overrides):
  """(method, state, data, ctx) for `module` with config `overrides`."""
  data = _data()
  model = models.create(ml_collections.ConfigDict(
      {'name': 'cnn', 'width': 4}), 4)
  ctx = base.Context(
      num_classes=4, epochs=epochs,
      steps_per_epoch={s: len(d['label']) // _BATCH[s]
                       for s, d in data.items()},
      batch_size=dict(_BATCH), init_variables=_Recorder(model),
      iterate=None, mean=(0.5,), std=(0.25,),
      simclr=_simclr(model) if with_simclr else None,
      # The width-4 CNN's penultimate features have 4 * 4 entries.
      feature_augment=_opengan_hook() if with_opengan else None)
  config = default.method_config(module.__name__.rsplit('.', 1)[-1])
  config.epochs = epochs
  for path, value in overrides.items():  # 'optim.lr' sets config.optim.lr.
    *parents, leaf = path.split('.')
    section = config
    for parent in parents:
      section = section[parent]
    section[leaf] = value
  method = module.make(config, ctx)
  tx = optim.make_optimizer(config.optim, sum(n for _, n in method.plan(0)),
                            epochs)
  state = state_lib.create(model, tx, (8, 8, 1), jax.random.key(0))
  return method, state, data, ctx


def _run(method, state, data, epochs=2, num_devices=1, **kwargs):
  return train.run(method, state, data, epochs=epochs, batch_size=_BATCH,
                   seed=0, prep=_PREP, mesh=parallel.make_mesh(num_devices),
                   **kwargs)


def _away_from_teacher(prepare):
  """`prepare`, then the student's head moved a little from its teacher's.

  Exactly at its teacher a student's KL is 0 and its gradient pure float
  rounding, so the distillation phases would have nothing real to follow.
  """

  def wrapped(rng, state):
    state, method_state = prepare(rng, state)
    noise = jax.random.normal(jax.random.key(1), (4,)) * 0.1
    head = dict(state.params['Dense_1'])
    head['bias'] = head['bias'] + noise
    return state.replace(params={**state.params, 'Dense_1': head}), method_state

  return wrapped


def _images(data, split):
  return jnp.asarray((data[split]['image'].astype(np.float32) / 255.0 - 0.5)
                     / 0.25)


def _logits(state, params, images, model_state=None):
  (logits, _), _ = state.apply(params, images, train=False,
                               model_state=model_state)
  return logits


def _one_step(module, phase, **overrides):
  """Params after one jitted `phase` update on fixed batches, and metrics."""
  method, state, data, _ = _setup(module, **overrides)
  state, method_state = method.prepare(jax.random.key(0), state)
  batches = {split: {'image': _images(data, split)[:_BATCH[split]],
                     **{k: jnp.asarray(v[:_BATCH[split]])
                        for k, v in data[split].items() if k != 'image'}}
             for split in method.phases[phase].splits}
  state, _, metrics = jax.jit(method.phases[phase].update)(
      state, method_state, batches, jax.random.key(1))
  return state.params, jax.device_get(metrics)


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class BadTeachingTest(parameterized.TestCase):

  @parameterized.parameters('canonical', 'capstone')
  def test_teachers_stay_frozen_and_forget_moves_to_the_bad_one(self,
                                                                variant):
    method, state, data, ctx = _setup(bad_teaching, variant=variant,
                                      **{'optim.lr': 3e-3})
    original = jax.tree.map(np.array, (state.params, state.model_state))
    result = _run(method, state, data, epochs=4)
    teachers = result.method_state
    # Bit-identical after 16 steps, although `state` was donated each step.
    _assert_trees_equal(
        (teachers['competent']['params'], teachers['competent']['model_state']),
        original)
    (fresh,) = ctx.init_variables.made  # The incompetent teacher, once.
    _assert_trees_equal((teachers['incompetent']['params'],
                         teachers['incompetent']['model_state']), fresh)
    for epoch in result.history:
      self.assertEqual(set(epoch), {'loss', 'forget_kl', 'retain_kl'})
      self.assertTrue(all(np.isfinite(v) for v in epoch.values()))

    bad = teachers['incompetent']
    forget = _images(data, 'forget')
    target = _logits(state, bad['params'], forget, bad['model_state'])

    def kl_to_bad(params):
      return float(losses.distill_kl(_logits(state, params, forget), target))

    self.assertLess(kl_to_bad(result.state.params),
                    0.5 * kl_to_bad(state.params))
    # Retain predictions stay nearer the original's (they start equal).
    retain = _images(data, 'retain')
    retain_kl = float(losses.distill_kl(
        _logits(state, result.state.params, retain),
        _logits(state, state.params, retain)))
    self.assertLess(retain_kl, kl_to_bad(result.state.params))

  @parameterized.parameters(('canonical', 'simple'), ('capstone', 'original'))
  def test_self_supervised_term(self, variant, mode):
    plain, _ = _one_step(bad_teaching, 'main', variant=variant)
    params, metrics = _one_step(bad_teaching, 'main', variant=variant,
                                with_simclr=True, loss_weight=0.5,
                                supervised_mode=mode)
    self.assertIn('ssl', metrics)
    self.assertTrue(np.isfinite(metrics['ssl']))
    self.assertFalse(np.allclose(params['Conv_0']['kernel'],
                                 plain['Conv_0']['kernel']))

  @parameterized.parameters('canonical', 'capstone')
  def test_opengan_target_changes_the_update(self, variant):
    plain, plain_metrics = _one_step(bad_teaching, 'main', variant=variant)
    params, metrics = _one_step(bad_teaching, 'main', variant=variant,
                                with_opengan=True)
    self.assertNotIn('generated_kl', plain_metrics)
    self.assertTrue(np.isfinite(metrics['generated_kl']))
    # loss = (KL to the usual target + KL to the generated one) / 2.
    np.testing.assert_allclose(
        metrics['loss'],
        0.5 * (plain_metrics['loss'] + metrics['generated_kl']), rtol=1e-5)
    self.assertFalse(np.allclose(params['Dense_1']['kernel'],
                                 plain['Dense_1']['kernel']))

  def test_canonical_plan_covers_forget_and_the_retain_fraction(self):
    method, _, _, ctx = _setup(bad_teaching, retain_fraction=0.3)
    # Forget: 16 / 8 = 2 steps; retain: ceil(0.3 * 48 / 16) = 1 step.
    self.assertEqual(method.plan(0), [('main', 2)])
    method, _, _, _ = _setup(bad_teaching, retain_fraction=1.0)
    self.assertEqual(method.plan(0), [('main', 3)])
    self.assertEqual(ctx.steps_per_epoch['mixed'], 4)
    method, _, _, _ = _setup(bad_teaching, variant='capstone')
    self.assertEqual(method.plan(0), [('main', 4)])
    self.assertEqual(method.phases['main'].splits, ('mixed',))

  def test_bad_settings_are_errors(self):
    with self.assertRaisesRegex(ValueError, 'variant'):
      _setup(bad_teaching, variant='nope')
    with self.assertRaisesRegex(ValueError, 'temperature'):
      _setup(bad_teaching, temperature=0.0)
    with self.assertRaisesRegex(ValueError, 'retain_fraction'):
      _setup(bad_teaching, retain_fraction=0.0)


class ScrubTest(parameterized.TestCase):

  def test_plan_has_max_phases_in_the_first_msteps_epochs(self):
    method, _, _, _ = _setup(scrub, epochs=4, msteps=2, retain_fraction=0.5)
    # Forget: 16 / 8 = 2 max steps; retain: ceil(0.5 * 3) = 2 min steps.
    self.assertEqual(method.plan(0), [('max', 2), ('min', 2)])
    self.assertEqual(method.plan(1), [('max', 2), ('min', 2)])
    self.assertEqual(method.plan(2), [('min', 2)])
    self.assertEqual(method.phases['max'].splits, ('forget',))
    self.assertEqual(method.phases['min'].splits, ('retain',))

  def test_teacher_stays_frozen_and_lr_decays(self):
    # A decay rate of 0 at epoch 2 freezes the student from then on.
    method, state, data, _ = _setup(scrub, epochs=3, msteps=2,
                                    lr_decay_epochs=(2,), lr_decay_rate=0.0,
                                    **{'optim.lr': 1e-2})
    original = jax.tree.map(np.array, (state.params, state.model_state))
    params = []
    result = _run(method, state, data, epochs=3,
                  on_epoch_end=lambda e, s, m: params.append(jax.tree.map(
                      np.array, s.params)))
    teacher = result.method_state['teacher']
    _assert_trees_equal((teacher['params'], teacher['model_state']), original)
    self.assertEqual(set(result.history[0]),
                     {'max/forget_kl', 'min/loss', 'min/ce', 'min/retain_kl'})
    self.assertEqual(set(result.history[2]),
                     {'min/loss', 'min/ce', 'min/retain_kl'})
    self.assertFalse(np.array_equal(params[1]['Dense_1']['kernel'],
                                    params[0]['Dense_1']['kernel']))
    _assert_trees_equal(params[1], params[2])

  def _phase_steps(self, phase, num_steps, **overrides):
    """Runs `num_steps` of one phase on one fixed batch; returns metrics."""
    method, state, data, _ = _setup(scrub, **overrides)
    state, method_state = _away_from_teacher(method.prepare)(
        jax.random.key(0), state)
    split = method.phases[phase].splits[0]
    batch = {split: {'image': _images(data, split)[:8],
                     'label': jnp.asarray(data[split]['label'][:8])}}
    update = jax.jit(method.phases[phase].update)
    history = []
    for _ in range(num_steps):
      state, method_state, metrics = update(state, method_state, batch,
                                            jax.random.key(0))
      history.append(jax.device_get(metrics))
    return history

  def test_max_phase_raises_the_forget_kl(self):
    history = self._phase_steps('max', 6, temperature=2.0,
                                **{'optim.lr': 1e-2})
    kls = [h['forget_kl'] for h in history]
    self.assertGreater(kls[-1], 2 * kls[0])
    self.assertTrue(all(b >= a for a, b in zip(kls, kls[1:])), kls)

  def test_min_phase_lowers_the_retain_loss(self):
    history = self._phase_steps('min', 6, **{'optim.lr': 1e-2})
    self.assertLess(history[-1]['loss'], 0.9 * history[0]['loss'])

  def test_capstone_runs(self):
    method, state, data, _ = _setup(scrub, variant='capstone')
    self.assertEqual(method.plan(0), [('main', 4)])
    result = _run(method, state, data, epochs=3)
    _assert_trees_equal(result.method_state['teacher']['params'],
                        state.params)
    for epoch in result.history:
      self.assertEqual(set(epoch), {'loss', 'forget_kl', 'retain_kl'})
      self.assertTrue(all(np.isfinite(v) for v in epoch.values()))

  def test_capstone_pushes_forget_away(self):
    method, state, data, _ = _setup(scrub, variant='capstone', temperature=1.0,
                                    **{'optim.lr': 3e-3, 'optim.name': 'adam'})
    state, method_state = _away_from_teacher(method.prepare)(
        jax.random.key(0), state)
    # One fixed batch of 8 forget and 8 retain samples.
    rows = slice(_N_FORGET - 8, _N_FORGET + 8)
    batch = {'mixed': {k: jnp.asarray(v[rows])
                       for k, v in data['mixed'].items() if k != 'image'}}
    batch['mixed']['image'] = _images(data, 'mixed')[rows]
    update = jax.jit(method.phases['main'].update)
    history = []
    for _ in range(12):
      state, method_state, metrics = update(state, method_state, batch,
                                            jax.random.key(0))
      history.append(jax.device_get(metrics))
    # The forget KL grows fast and twice as fast as the retain KL (which the
    # shared weights drag along on this random data): factors far beyond
    # float rounding on any CPU.
    self.assertGreater(history[-1]['forget_kl'],
                       10 * history[1]['forget_kl'])
    self.assertGreater(history[-1]['forget_kl'],
                       1.5 * history[-1]['retain_kl'])

  def test_capstone_batches_with_no_or_one_forget_sample(self):
    method, state, data, _ = _setup(scrub, variant='capstone')
    state, method_state = method.prepare(jax.random.key(0), state)
    update = jax.jit(method.phases['main'].update)
    for num_forget in (0, 1):
      is_forget = np.zeros(16, np.float32)
      is_forget[:num_forget] = 1.0
      batch = {'mixed': {'image': _images(data, 'mixed')[:16],
                         'label': jnp.asarray(data['mixed']['label'][:16]),
                         'is_forget': jnp.asarray(is_forget)}}
      _, _, metrics = update(state, method_state, batch, jax.random.key(0))
      metrics = jax.device_get(metrics)
      self.assertTrue(all(np.isfinite(v) for v in metrics.values()), metrics)
      if not num_forget:
        self.assertEqual(float(metrics['forget_kl']), 0.0)

  @parameterized.parameters(('max', 'canonical'), ('min', 'canonical'),
                            ('main', 'capstone'))
  def test_self_supervised_term(self, phase, variant):
    plain, _ = _one_step(scrub, phase, variant=variant)
    params, metrics = _one_step(scrub, phase, variant=variant,
                                with_simclr=True, loss_weight=0.5)
    self.assertTrue(np.isfinite(metrics['ssl']))
    self.assertFalse(np.allclose(params['Conv_0']['kernel'],
                                 plain['Conv_0']['kernel']))

  @parameterized.parameters(('max', 'canonical'), ('main', 'capstone'))
  def test_opengan_target_changes_the_update(self, phase, variant):
    plain, plain_metrics = _one_step(scrub, phase, variant=variant)
    params, metrics = _one_step(scrub, phase, variant=variant,
                                with_opengan=True)
    self.assertNotIn('generated_kl', plain_metrics)
    self.assertGreater(metrics['generated_kl'], 0.0)
    self.assertFalse(np.allclose(params['Dense_1']['kernel'],
                                 plain['Dense_1']['kernel']))

  def test_opengan_leaves_the_min_phase_alone(self):
    plain, _ = _one_step(scrub, 'min')
    params, metrics = _one_step(scrub, 'min', with_opengan=True)
    self.assertNotIn('generated_kl', metrics)
    _assert_trees_equal(params, plain)

  def test_bad_settings_are_errors(self):
    with self.assertRaisesRegex(ValueError, 'variant'):
      _setup(scrub, variant='nope')
    with self.assertRaisesRegex(ValueError, 'temperature'):
      _setup(scrub, temperature=-1.0)
    with self.assertRaisesRegex(ValueError, 'retain_fraction'):
      _setup(scrub, retain_fraction=0.0)


class ConfigTest(parameterized.TestCase):

  @parameterized.product(
      module=(bad_teaching_config, scrub_config),
      arg=(None, 'smoke', 'capstone', 'class_wise', 'smoke,capstone'))
  def test_variants(self, module, arg):
    config = module.get_config(arg)
    name = 'scrub' if module is scrub_config else 'bad_teaching'
    self.assertEqual(config.method.name, name)
    capstone = 'capstone' in (arg or '')
    self.assertEqual(config.method.variant,
                     'capstone' if capstone else 'canonical')
    if capstone:
      self.assertEqual(config.method.optim.name, 'sgd')
      self.assertEqual(config.method.temperature, 1.0)
    if arg and 'smoke' in arg:
      self.assertEqual(config.method.epochs, 1)
    if arg == 'class_wise':
      self.assertEqual(config.split.mode, 'class_wise')
      if module is scrub_config:
        self.assertEqual(config.method.msteps, 2)

  @parameterized.parameters(bad_teaching_config, scrub_config)
  def test_unknown_variant(self, module):
    with self.assertRaisesRegex(ValueError, 'unknown config variant'):
      module.get_config('nope')


if __name__ == '__main__':
  absltest.main()
