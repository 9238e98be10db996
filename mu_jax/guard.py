"""Oracle-free guard rails around an unlearning run.

An unlearning method tuned on one dataset can, on another, collapse the
model (retain and test accuracy fall), leave it untouched, or diverge. The
guard watches a run with cheap measurements that need no retrained model:

* forget accuracy on a fixed subsample of the forget set;
* retain accuracy on a fixed subsample of the retain set;
* held-out accuracy on the split's validation set (`split.val`: test images
  that test accuracy and the MIA never see).

Each is measured on the original model first (the baseline), then at check
points during the run: the end of every epoch and, in epochs of a single
phase, `checks_per_epoch` times per epoch. A check is **damaged** when its
retain accuracy is more than `max_retain_drop` points, or its held-out
accuracy more than `max_val_drop` points, below the baseline's, beyond
`noise_z` standard errors of the measured drop (the same examples before
and after, so the error of the paired difference: sqrt(examples that
flipped) / examples; a validation set of a few hundred images is noisy).

Methods typically damage the model first and repair it later in the run
(measured: Bad Teaching's held-out accuracy falls 14 points in its first
quarter epoch and recovers to within 2), so the guard never stops a run
early; it judges the run's end. An attempt ends

* **forgotten**: undamaged, with forget accuracy at the target. Class-wise:
  at most `class_wise_target` percent (a retrained model predicts none of
  the class). Random: at least `random_progress` of the way from the
  original's forget accuracy to its held-out accuracy, which is what a
  model that never saw the forget set scores on it (the reference point of
  SCRUB+R, Kurmanji et al. 2023);
* **collapsed**: its last check damaged;
* **diverged**: a NaN or infinite loss or weight;
* **under-forgot**: undamaged, short of the target.

A forgotten attempt's final model is kept: a run that needed no help comes
out exactly as without the guard. An attempt that ended otherwise but was
forgotten, undamaged, at an earlier check is rewound to the best such check
(SCRUB+R's rewind). Otherwise the method is run again from the
original model, with the learning rate divided by `lr_factor` after a
collapse or divergence and multiplied by it after too little forgetting;
once a too-small and a too-large step are both known, the search bisects
between them geometrically; at most `max_attempts` runs. If no attempt is
forgotten, the guard rewinds to the best undamaged check of all attempts,
scored by an oracle-free estimate of the Avg. Gap: twice the distance of
forget accuracy from its ideal (0 class-wise, the original's held-out
accuracy random; twice, because MIA-efficacy moves with it) plus the retain
and held-out accuracy lost. The original model is a
candidate too, so the guard never hands on a collapsed or NaN model: at
worst the original, with a report that says so; if every attempt diverged
without an undamaged check better than the original before it, the run ends
with an error instead. Every decision goes into the report.
"""

import dataclasses
import math
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from mu_jax import errors
from mu_jax import evaluate
from mu_jax import train

PyTree = Any

# How a check (DAMAGED) or an attempt ended.
FORGOTTEN = 'forgotten'  # Undamaged, at the forgetting target.
DAMAGED = 'damaged'  # A check: retain or held-out accuracy fell too far.
COLLAPSED = 'collapsed'  # An attempt whose last check was damaged.
DIVERGED = 'diverged'  # NaN or infinite loss or weights.
UNDER_FORGOT = 'under_forgot'  # Ran its course short of the target.


def guard_config() -> ml_collections.ConfigDict:
  """`config.guard`: the guard rails' thresholds and budget."""
  config = ml_collections.ConfigDict()
  config.enabled = True  # False runs the method exactly as configured.
  # Checks per epoch in epochs of a single phase (plus the epoch's end);
  # epochs of several phases (e.g. SCRUB's max then min) are checked at
  # their end only, where the repair phase has run.
  config.checks_per_epoch = 4
  config.forget_samples = 1000  # Forget-set subsample measured per check.
  config.retain_samples = 1000  # Retain-set subsample measured per check.
  # Damage: points below the original's retain accuracy ...
  config.max_retain_drop = 10.0
  # ... or below its held-out (validation) accuracy ...
  config.max_val_drop = 2.0
  # ... by more than this many standard errors of the measured drop.
  config.noise_z = 1.0
  # Class-wise: forget accuracy (%) at or below which a class is forgotten.
  config.class_wise_target = 2.0
  # Random: forgotten once forget accuracy has come this fraction of the
  # way from the original's to the original's held-out accuracy.
  config.random_progress = 0.5
  config.max_attempts = 3  # Runs of the method, the first included.
  config.lr_factor = 2.0  # Step-size change between attempts.
  return config


@dataclasses.dataclass
class Check:
  """One measurement of the model during a run (accuracies in percent)."""
  attempt: int  # 0 = the baseline (the original model).
  epoch: float  # Epochs completed (fractional within an epoch).
  step: int  # Optimizer steps done in this attempt.
  forget_acc: float
  retain_acc: float
  val_acc: float | None  # None without a validation set.
  damage: str = ''  # Why it is damaged ('' if it is not).


class Probe:
  """Per-example correctness on fixed subsamples: forget, retain, validation.

  Calling it on a TrainState returns {'forget', 'retain', 'val'}: bool
  arrays, one entry per example ('val' absent without a validation set);
  `seconds` adds up the time spent measuring.
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray,
               val_images: np.ndarray, val_labels: np.ndarray, split, *,
               config: ml_collections.ConfigDict, seed: int, mean, std,
               mesh, batch_size: int):
    rng = np.random.default_rng([int(seed), 2])
    forget = rng.permutation(split.forget)[:config.forget_samples]
    retain = rng.permutation(split.retain)[:config.retain_samples]
    self._sets = {'forget': (images[forget], labels[forget]),
                  'retain': (images[retain], labels[retain])}
    if len(split.val):
      self._sets['val'] = (val_images[split.val], val_labels[split.val])
    self._eval = dict(mean=mean, std=std, mesh=mesh, batch_size=batch_size)
    self.has_val = bool(len(split.val))
    self.seconds = 0.0

  def __call__(self, state) -> dict[str, np.ndarray]:
    start = time.perf_counter()
    out = {key: evaluate.per_example(state, images, labels, desc='guard',
                                     **self._eval)['correct']
           for key, (images, labels) in self._sets.items()}
    self.seconds += time.perf_counter() - start
    return out


def _accuracies(correct: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """Check fields from per-example correctness: accuracies in percent."""
  return {'forget_acc': 100.0 * float(np.mean(correct['forget'])),
          'retain_acc': 100.0 * float(np.mean(correct['retain'])),
          'val_acc': (100.0 * float(np.mean(correct['val']))
                      if 'val' in correct else None)}


def paired_drop(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
  """(accuracy drop, its standard error), in points, on the same examples.

  The error of a difference of paired proportions: only the examples that
  flipped vary, sqrt(flips) / n (McNemar's setting).
  """
  n = len(before)
  flips = np.sum(before != after)
  # From integer counts, so that a drop of exactly the limit does not
  # depend on how a CPU rounds a difference of two means.
  drop = 100.0 * float(np.sum(before) - np.sum(after)) / n
  return drop, 100.0 * float(np.sqrt(flips)) / n


class Guard:
  """Measures and judges checks; keeps the weights of the best one."""

  def __init__(self, config: ml_collections.ConfigDict, mode: str,
               probe: Probe):
    if config.max_attempts < 1 or config.lr_factor <= 1.0:
      raise errors.ConfigError(
          f'guard.max_attempts={config.max_attempts} must be >= 1 and '
          f'guard.lr_factor={config.lr_factor} > 1')
    if config.checks_per_epoch < 1:
      raise errors.ConfigError(
          f'guard.checks_per_epoch={config.checks_per_epoch} must be >= 1')
    if not 0.0 < config.random_progress <= 1.0:
      raise errors.ConfigError(
          f'guard.random_progress={config.random_progress} must be in (0, 1]')
    self.config, self.mode, self.probe = config, mode, probe
    self.base_correct = None  # The original's per-example correctness.
    self.checks: list[Check] = []
    self.attempt = 0
    self.target = self.ideal = None  # Forget accuracies; see `baseline`.
    self.best: Check | None = None
    self.best_weights: PyTree = None  # (params, model_state) of `best`.
    self.last_weights: PyTree = None  # Of the latest check.
    # The best forgotten check of the current attempt, and its weights.
    self.attempt_best: tuple[Check, PyTree] | None = None

  def start_attempt(self, attempt: int):
    self.attempt, self.attempt_best = attempt, None

  def baseline(self, state) -> Check:
    """Measures the original model (attempt 0) and sets the targets."""
    if self.mode == 'random' and not self.probe.has_val:
      raise errors.ConfigError(
          'the guard rails of random forgetting compare forget accuracy with '
          'held-out accuracy and need a validation set: set '
          '--config.split.val_fraction > 0, or --config.guard.enabled=False')
    self.base_correct = self.probe(state)
    base = Check(attempt=0, epoch=0, step=0,
                 **_accuracies(self.base_correct))
    if self.mode == 'random':
      self.ideal = base.val_acc
      self.target = base.forget_acc - self.config.random_progress * (
          base.forget_acc - base.val_acc)
    else:
      self.ideal, self.target = 0.0, self.config.class_wise_target
    self.checks.append(base)
    self._keep(base, state)
    return base

  def forgotten(self, check: Check) -> bool:
    return not check.damage and check.forget_acc <= self.target

  def score(self, check: Check) -> float:
    """An oracle-free estimate of the Avg. Gap (x4); lower is better.

    Retrain's forget accuracy is estimated by `ideal`, its retain and
    held-out accuracy by the original's; the forget term counts twice, for
    UA and for MIA-efficacy, which moves with it.
    """
    base = self.checks[0]
    lost = max(base.retain_acc - check.retain_acc, 0.0)
    if check.val_acc is not None:
      lost += max(base.val_acc - check.val_acc, 0.0)
    return 2.0 * abs(check.forget_acc - self.ideal) + lost

  def _keep(self, check: Check, state):
    weights = jax.tree.map(jnp.copy, (state.params, state.model_state))
    self.last_weights = weights
    # On a tie the later check wins: it is what the method ran to.
    if not check.damage and (self.best is None or
                             self.score(check) <= self.score(self.best)):
      self.best, self.best_weights = check, weights
    if self.forgotten(check) and (
        self.attempt_best is None or
        self.score(check) <= self.score(self.attempt_best[0])):
      self.attempt_best = check, weights

  def measure(self, state, *, epoch: float, step: int) -> Check:
    """Measures and judges `state`; a real copy of its weights is kept.

    A copy, because the driver donates the state's buffers to its next step.
    """
    correct = self.probe(state)
    check = Check(attempt=self.attempt, epoch=epoch, step=step,
                  **_accuracies(correct))
    c = self.config
    for key, name, limit in (('retain', 'retain', c.max_retain_drop),
                             ('val', 'held-out', c.max_val_drop)):
      if key not in correct:
        continue
      drop, error = paired_drop(self.base_correct[key], correct[key])
      if drop - c.noise_z * error > limit:
        check.damage = (f'{name} accuracy fell {drop:.1f} +- {error:.1f} '
                        f'points, more than {limit:g}')
        break
    self.checks.append(check)
    self._keep(check, state)
    return check


def _next_scale(scale: float, outcome: str, low: float | None,
                high: float | None, factor: float):
  """The next attempt's lr scale, and the updated (low, high) bracket.

  `low` is the largest scale that forgot too little, `high` the smallest
  that collapsed or diverged; between the two the search bisects
  geometrically.
  """
  if outcome == UNDER_FORGOT:
    low = scale if low is None else max(low, scale)
  else:
    high = scale if high is None else min(high, scale)
  if low is not None and high is not None:
    return math.sqrt(low * high), low, high
  return (scale * factor if outcome == UNDER_FORGOT else scale / factor,
          low, high)


@dataclasses.dataclass
class Outcome:
  """What the guarded run produced.

  Attributes:
    state: the kept model (a TrainState with the kept check's weights).
    result: the kept attempt's `train.Result` (None if the original was
      kept).
    seconds: run time of all attempts and checks, compilation excluded
      (the method's RTE).
    compile_seconds: compilation time of all attempts.
    report: the guard's record for report.json.
  """
  state: Any
  result: train.Result | None
  seconds: float
  compile_seconds: float
  report: dict


def _judge_attempt(guard: Guard) -> tuple[str, str]:
  """(outcome, reason) of the attempt whose last check was just taken."""
  last = guard.checks[-1]
  if last.damage:
    return COLLAPSED, last.damage
  if guard.forgotten(last):
    return FORGOTTEN, (f'forget accuracy {last.forget_acc:.1f} reached the '
                       f'target {guard.target:.1f}')
  return UNDER_FORGOT, (f'forget accuracy {last.forget_acc:.1f} ended above '
                        f'the target {guard.target:.1f}')


def run(config: ml_collections.ConfigDict, mode: str, probe: Probe,
        original, run_attempt: Callable[..., train.Result]) -> Outcome:
  """Runs a method under the guard rails.

  Args:
    config: `config.guard`.
    mode: 'random' or 'class_wise'.
    probe: measures a model.
    original: the original model's TrainState (its weights are the
      baseline and every attempt's start).
    run_attempt: `(lr_scale, monitor) -> train.Result`: one run of the
      method from the original model with its learning rate times
      `lr_scale`, calling `monitor` at the check points (`train.run`'s
      `monitor` argument).

  Returns:
    An `Outcome`.

  Raises:
    train.DivergenceError: every attempt diverged, and none had improved
      on the original undamaged before it did.
  """
  guard = Guard(config, mode, probe)
  start = time.perf_counter()
  base = guard.baseline(original)
  attempts, results = [], {}
  compile_seconds = 0.0
  scale, low, high = 1.0, None, None
  kept = None
  if base.forget_acc <= guard.target:
    kept, verdict = base, (
        f'kept the original model: its forget accuracy {base.forget_acc:.1f} '
        f'is already at the target {guard.target:.1f}')
  while kept is None and len(attempts) < config.max_attempts:
    guard.start_attempt(len(attempts) + 1)

    def monitor(epoch, step, state, method_state):
      del method_state  # Only the model is measured.
      guard.measure(state, epoch=epoch, step=step)

    record = {'attempt': guard.attempt, 'lr_scale': scale}
    try:
      result = run_attempt(scale, monitor)
      results[guard.attempt] = result
      compile_seconds += result.compile_seconds
      if guard.checks[-1].attempt != guard.attempt:  # A plan of no steps.
        guard.measure(result.state, epoch=0, step=0)
      outcome, reason = _judge_attempt(guard)
    except train.DivergenceError as e:
      compile_seconds += e.compile_seconds
      outcome, reason = DIVERGED, str(e)
    record.update(outcome=outcome, reason=reason)
    attempts.append(record)
    logging.info('guard: attempt %d (lr x%.3g): %s: %s', guard.attempt, scale,
                 outcome, reason)
    if outcome == FORGOTTEN:
      kept, weights = guard.checks[-1], guard.last_weights
      verdict = (f'kept the end of attempt {guard.attempt} (lr x'
                 f'{scale:.3g})')
    elif guard.attempt_best is not None:
      # Forgotten undamaged earlier in this run: rewind there (SCRUB+R).
      kept, weights = guard.attempt_best
      record['rewound_to'] = {'epoch': kept.epoch, 'step': kept.step}
      verdict = (f'rewound attempt {guard.attempt} (lr x{scale:.3g}) to '
                 f'epoch {kept.epoch:.3g}, step {kept.step}, where it was '
                 'forgotten undamaged')
    else:
      scale, low, high = _next_scale(scale, outcome, low, high,
                                     config.lr_factor)
  if (kept is None and attempts and
      guard.score(guard.best) >= guard.score(base) and
      all(a['outcome'] == DIVERGED for a in attempts)):
    # Nothing before any divergence improved on the original. (A run that
    # improved undamaged before it diverged is rewound there below: e.g.
    # gradient ascent on a large forget set, which climbs a loss with no
    # ceiling until it overflows.)
    raise train.DivergenceError(
        f'every attempt diverged, down to lr x{attempts[-1]["lr_scale"]:.3g} '
        f'({attempts[-1]["reason"]}); lower the learning rate (--lr or '
        '--config.method.optim.lr)')
  if kept is None:  # No attempt was forgotten: rewind to the best check.
    kept, weights = guard.best, guard.best_weights
    verdict = ('kept the original model: no attempt improved on it '
               'undamaged' if kept.attempt == 0 else
               f'rewound to attempt {kept.attempt} (lr x'
               f'{attempts[kept.attempt - 1]["lr_scale"]:.3g}) at epoch '
               f'{kept.epoch:.3g}, step {kept.step}, its best check')
  elif kept is base:
    weights = guard.best_weights
  # Compilation is reported apart, as for an unguarded run.
  seconds = time.perf_counter() - start - compile_seconds
  params, model_state = weights
  state = original.replace(params=params, model_state=model_state)
  # Acted unless the first attempt, as configured, was kept as it ended.
  acted = not (kept.attempt == 1 and len(attempts) == 1
               and attempts[0]['outcome'] == FORGOTTEN)
  summary = f'guard: {verdict}; ' + '; '.join(
      f"attempt {a['attempt']} (lr x{a['lr_scale']:.3g}) {a['outcome']}"
      for a in attempts) + ('' if acted else ' (no action needed)')
  logging.info('%s', summary)
  report = {
      'enabled': True, 'mode': mode, 'acted': acted, 'summary': summary,
      'target_forget_acc': guard.target, 'ideal_forget_acc': guard.ideal,
      'config': config.to_dict(),
      'baseline': dataclasses.asdict(base),
      'attempts': attempts,
      'kept': {**dataclasses.asdict(kept),
               'lr_scale': (attempts[kept.attempt - 1]['lr_scale']
                            if kept.attempt else None)},
      'checks': [dataclasses.asdict(c) for c in guard.checks],
      'probe_seconds': probe.seconds,
  }
  return Outcome(state=state, result=results.get(kept.attempt),
                 seconds=seconds, compile_seconds=compile_seconds,
                 report=report)
