"""The unlearning stage: the method's data, helpers and guarded run.

`unlearn(exp, original, split)` assembles the splits a method reads
(forget, retain, and the whole train set flagged per sample), appends
`--data_augment`'s extra forget samples or trains the OpenGAN whose hook
the distillation methods use, pretrains the SimCLR encoder when the method
takes a self-supervised term, then runs the method from the original model
under the guard rails (mu_jax/guard.py) unless they are disabled. The CLI
(mu_jax/pipeline.py) and the library face (mu_jax/api.py) both unlearn
through it.
"""

from typing import Any, Callable

import numpy as np
import optax
from absl import logging

from mu_jax import augmentation
from mu_jax import guard
from mu_jax import host_batches
from mu_jax import methods
from mu_jax import optim
from mu_jax import parallel
from mu_jax import self_supervised
from mu_jax import splits as splits_lib
from mu_jax import train
from mu_jax.experiment import Experiment


def fit_forget_batch(batch_size: int, num_forget: int, mesh) -> int:
  """The forget batch size, clamped to a forget set smaller than it.

  Instance-wise requests are often tiny (tens of samples) while the methods'
  forget batches are sized for hundreds (SCRUB's is 256); one batch of the
  whole forget set is what the method would see anyway, so the batch is
  lowered to the forget set's size (a multiple of the device count) with a
  warning instead of failing. Retain and mixed batches keep the driver's
  'larger than its split' error: there a too-large batch is a mistake.
  """
  fitted = parallel.fit_batch_size(batch_size, num_forget, mesh)
  if fitted != batch_size:
    logging.warning('forget batch size %d is larger than the forget set (%d '
                    'samples); using %d', batch_size, num_forget, fitted)
  return fitted


def run_method(exp: Experiment, original, data, split: splits_lib.Split,
             simclr=None, *, feature_augment=None,
             on_step_end: Callable[[int, Any, Any], None] | None = None,
             every_steps: int = 1) -> tuple[Any, dict[str, Any]]:
  """Runs the configured unlearning method from the original model.

  Under the guard rails (`config.guard`, mu_jax/guard.py) unless they are
  disabled, in which case the method runs exactly as configured.
  """
  config = exp.config.method
  module = methods.get(config.name)
  size = config.batch_size
  batch_size = {'forget': config.get('forget_batch_size', 0) or size,
                'retain': config.get('retain_batch_size', 0) or size,
                'mixed': size}
  batch_size['forget'] = fit_forget_batch(
      batch_size['forget'], len(data['forget']['label']), exp.mesh)
  ctx = exp.context(data, batch_size, config.epochs, simclr, feature_augment)
  method = module.make(config, ctx)
  guard_config = exp.config.guard
  # One optimizer per length (a schedule that spans the run changes with
  # it), its learning rate scaled at run time (`optim.lr_scale`): attempts
  # of the guard rails then share one compiled program per phase, and per
  # setting of the method's balance knob (`base.Balance`), which the
  # guard's strength moves with the learning rate.
  steps_per_epoch = sum(n for _, n in method.plan(0))
  balance = getattr(module, 'BALANCE', None)
  optimizers = {}
  built = {1.0: (method, {})}  # Knob strength -> (method, compile cache).
  attempts = []  # One event log per run of the method.

  def knob(strength: float) -> dict[str, float]:
    """The balance knob's fields at `strength` ({} without a knob)."""
    if balance is None:
      return {}
    return {f: balance.tilt(float(config[f]), strength)
            for f in balance.fields}

  def method_for(strength: float):
    key = strength if balance is not None else 1.0
    if key not in built:
      section = config.copy_and_resolve_references()
      with section.unlocked():
        section.update(knob(strength))
      built[key] = (module.make(section, ctx), {})
    return built[key]

  def optimizer(epochs: int):
    key = epochs if (config.optim.get('schedule', 'constant') != 'constant'
                     or config.optim.get('warmup_epochs', 0)) else 0
    if key not in optimizers:
      optimizers[key] = optax.chain(
          optim.make_optimizer(config.optim, max(1, steps_per_epoch), epochs),
          optim.lr_scale())
    return optimizers[key]

  def run_attempt(settings: guard.Attempt, monitor=None) -> train.Result:
    attempt_method, compile_cache = method_for(settings.lr_scale)

    def prepare(rng, state):
      state, method_state = attempt_method.prepare(rng, state)
      return state.replace(opt_state=optim.set_lr_scale(
          state.opt_state, settings.lr_scale)), method_state

    attempts.append(settings)
    schedule = optim.make_schedule(config.optim, max(1, steps_per_epoch),
                                   settings.epochs)
    log = exp.event_log(
        f'unlearn/attempt{len(attempts)}' if guard_config.enabled else
        'unlearn', lambda step: settings.lr_scale * schedule(step))
    try:
      return train.run(
          attempt_method._replace(prepare=prepare),
          original.with_optimizer(optimizer(settings.epochs)), data,
          epochs=settings.epochs, batch_size=batch_size,
          seed=exp.config.seed, prep=exp.prep(config.augment), mesh=exp.mesh,
          desc=f'unlearn ({methods.canonical_name(config.name)})',
          on_step_end=on_step_end, every_steps=every_steps, monitor=monitor,
          checks_per_epoch=guard_config.checks_per_epoch, log_metrics=log,
          compile_cache=compile_cache)
    finally:
      if log is not None:
        log.close()

  if not guard_config.enabled:
    result = run_attempt(guard.Attempt(1.0, config.epochs))
    return result.state, {'seconds': result.run_seconds,
                          'compile_seconds': result.compile_seconds,
                          'history': result.history,
                          'guard': {'enabled': False}}
  dataset = exp.dataset
  probe = guard.Probe(
      dataset.train_images, dataset.train_labels, dataset.test_images,
      dataset.test_labels, split, config=guard_config, seed=exp.config.seed,
      mean=dataset.mean, std=dataset.std, mesh=exp.mesh,
      batch_size=exp.config.eval.batch_size)

  def plan(epochs: int) -> tuple[int, list[int]]:
    """(optimizer steps, the steps after which the driver calls the guard's
    monitor) of a run of `epochs` epochs."""
    steps, points = 0, []
    for epoch in range(epochs):
      epoch_plan = method.plan(epoch)
      points += [steps + k for k in train.check_points(
          epoch_plan, guard_config.checks_per_epoch)]
      steps += sum(n for _, n in epoch_plan)
    return steps, points

  # The budget counts optimizer steps, a check at its forward passes.
  train_config = exp.config.train
  retrain_steps = train_config.epochs * max(
      1, len(split.retain) // train_config.batch_size)
  outcome = guard.run(
      guard_config, split.mode, probe, original, run_attempt,
      epochs=config.epochs, plan=plan,
      budget_steps=guard.budget_steps(guard_config, retrain_steps),
      check_steps=(probe.examples * guard.FORWARD_SHARE
                   / train_config.batch_size))
  outcome.report['budget']['retrain_steps'] = retrain_steps
  for record in outcome.report['attempts']:
    record['knob'] = knob(record['lr_scale'])
  _log_checks(exp, outcome.report['checks'])
  return outcome.state, {
      'seconds': outcome.seconds, 'compile_seconds': outcome.compile_seconds,
      'history': outcome.result.history if outcome.result else [],
      'guard': outcome.report}


def _log_checks(exp: Experiment, checks):
  """Each guard check's accuracies, in its attempt's TensorBoard folder at
  its step (the baseline, the original model, at step 0 of each)."""
  base = checks[0]
  for attempt in sorted({c['attempt'] for c in checks} - {0}):
    log = exp.event_log(f'unlearn/attempt{attempt}')
    if log is None:
      return
    for check in [base] + [c for c in checks if c['attempt'] == attempt]:
      log(check['step'], {f'guard/{k}': check[k]
                          for k in ('forget_acc', 'retain_acc', 'val_acc')
                          if check[k] is not None})
    log.close()


def _with_extra_forget(exp: Experiment, data: dict,
                    info: dict | None = None) -> dict:
  """Appends --data_augment's extra samples to 'forget' and 'mixed'.

  Extra samples are flagged is_forget=1 in 'mixed'; 'retain' and the
  evaluation's forget set are untouched. The generator's info (training
  time, reuse, checkpoint, losses) is added to `info` when given.
  """
  forget = data['forget']
  images, labels, augment_info = augmentation.extra_forget(
      exp.config, exp.dataset, forget['image'], forget['label'], exp.mesh)
  if info is not None:
    info.update(augment_info)
  if not len(labels):
    return data
  logging.info('forget set augmented (%s): %d + %d samples',
               augment_info.get('augment'), len(forget['label']),
               len(labels))
  mixed = data['mixed']
  return {**data,
          'forget': host_batches.split_data(
              np.concatenate([forget['image'], images]),
              np.concatenate([forget['label'], labels])),
          'mixed': host_batches.split_data(
              np.concatenate([mixed['image'], images]),
              np.concatenate([mixed['label'], labels]),
              is_forget=np.concatenate([
                  mixed['is_forget'], np.ones(len(labels), np.float32)]))}


def unlearn(exp: Experiment, original, split: splits_lib.Split, *,
            on_step_end: Callable[[int, Any, Any], None] | None = None,
            every_steps: int = 1):
  """Unlearns `split.forget` from `original` with `exp.config.method`.

  Args:
    exp: the experiment.
    original: the original model's TrainState (not modified).
    split: the forget / retain split.
    on_step_end: see `train.run`.
    every_steps: see `train.run`.

  Returns:
    (state, info, simclr_info): info holds 'seconds' (RTE),
    'compile_seconds', 'history' and 'augmentation' (`augmentation_report`);
    simclr_info is the SimCLR encoder's training info when the method takes
    a self-supervised term, else None.
  """
  images, labels = exp.dataset.train_images, exp.dataset.train_labels
  is_forget = np.zeros(len(labels), np.float32)
  is_forget[split.forget] = 1.0
  data = {'forget': host_batches.split_data(images[split.forget],
                                            labels[split.forget]),
          'retain': host_batches.split_data(images[split.retain],
                                            labels[split.retain]),
          # The whole train set flagged per sample, for methods that mix
          # forget and retain samples in one batch (the original project).
          'mixed': host_batches.split_data(images, labels,
                                           is_forget=is_forget)}
  augment_info = {}
  data = _with_extra_forget(exp, data, augment_info)
  feature_augment = None
  if exp.config.method.data_augment == 'opengan':
    feature_augment, augment_info = augmentation.feature_hook(
        exp.config, exp.dataset, original, images[split.forget],
        split.train_digest(), split.name, exp.mesh)
  simclr, simclr_info = None, None
  if exp.config.method.loss_weight:
    simclr_state, simclr_info = self_supervised.pretrain(exp)
    simclr = (simclr_state.apply_fn,
              {'params': simclr_state.params, **simclr_state.model_state},
              exp.config.ssl.unlearn_temperature)
  state, info = run_method(exp, original, data, split, simclr,
                         feature_augment=feature_augment,
                         on_step_end=on_step_end, every_steps=every_steps)
  info['augmentation'] = augmentation.report(
      exp.config.method, len(data['forget']['label']) - len(split.forget),
      augment_info)
  return state, info, simclr_info
