"""Oracle-free guard rails around an unlearning run.

An unlearning method tuned on one dataset can, on another, collapse the
model (retain and test accuracy fall), forget too much, leave it untouched,
or diverge. The guard watches a run with cheap measurements that need no
retrained model:

* forget accuracy on a fixed subsample of the forget set;
* retain accuracy on a fixed subsample of the retain set;
* held-out accuracy on the split's validation set (`split.val`: test images
  that test accuracy and the MIA never see).

Each is measured on the original model first (the baseline), then at check
points during the run: the end of every epoch and, in epochs of a single
phase, `checks_per_epoch` times per epoch, thinned so that checks cost at
most `check_share` of the run's optimizer steps (short epochs on a small
dataset are checked every few epochs; the end of a run always). A check is
**damaged** when its retain accuracy is more than `max_retain_drop` points,
or its held-out accuracy more than `max_val_drop` points, below the
baseline's, beyond `noise_z` standard errors of the measured drop and by
more than one example (the same examples before and after, so the error of
the paired difference:
sqrt(examples that flipped) / examples). A check's **forgetting** is

* class-wise: at the target when forget accuracy is at most
  `class_wise_target` percent (a retrained model predicts none of the
  class), else short of it;
* random: at the target when the forget set is indistinguishable from data
  the model never saw: its accuracy differs from the held-out accuracy of
  the original model (which a model retrained without the set matches) by
  at most `target_z` standard errors of the difference of two independent
  proportions (a two-sided test; 2.576 = a 1 % error rate) plus one example.
  Above that the model still remembers the set (short of the target);
  below it the model has forgotten more than a model that never saw the set
  would (over-forgotten: the Avg. Gap grows again). The reference is the
  original's held-out accuracy, not the check's: a method that costs a
  point of held-out accuracy should not be asked to forget a point more.
  Accuracy only: a confidence test through SalUn's MIA, refit on the
  probes, was tried; its estimate moved by up to 10 points between
  consecutive checks of one run, too noisy to decide on.

Methods typically damage the model first and repair it later in the run
(measured: Bad Teaching's held-out accuracy falls 14 points in its first
quarter epoch and recovers to within 2), so the guard never stops a run
early; it judges the run's end. An attempt ends **forgotten** (undamaged,
at the target), **collapsed** (its last check damaged), **diverged** (a NaN
or infinite loss or weight), **under-forgot** or **over-forgot**.

A forgotten attempt's final model is kept: a run that needed no help comes
out exactly as without the guard. An attempt that ended otherwise but was at
the target, undamaged, at an earlier check is rewound to the best such check
(SCRUB+R's rewind, from either side). Otherwise the method is run again from
the original model: after a collapse, divergence or over-forgetting with the
learning rate divided by `lr_factor`; after too little forgetting twice as
long if the attempt ran fewer than `min_steps` optimizer steps and was still
forgetting when it ended (a small dataset makes short runs), else with the
learning rate multiplied by it (by its square if the attempt covered less
than a tenth of the way); once a too-small and a too-large step are both
known, the search bisects between them geometrically. The step size is
a strength s: a method with a balance knob (`methods.base.Balance`:
NegGrad+'s alpha, RL's and SalUn's retain weight, SCRUB's min-phase
weights) moves it with s, towards forgetting for s > 1. The attempts share
one compiled program per knob setting (the
learning rate is optimizer state, `optim.lr_scale`).

The search stops within a budget: all attempts and checks together may cost
at most `budget` times the optimizer steps of retraining, or
`min_budget_steps` where that is more (a small dataset; a check costs its
forward passes, a third of a training step per image). The first attempt
always runs; a later one only if it fits, and at most `max_attempts` in all.

If no attempt is forgotten, the guard rewinds to the best undamaged check of
all attempts, scored by an oracle-free estimate of the Avg. Gap: twice the
distance of forget accuracy from its ideal (0 class-wise; random, from the
target's window around the original's held-out accuracy; twice, because
MIA-efficacy moves with it) plus
the retain and held-out accuracy lost. The original model is a candidate
too, so the guard never hands on a collapsed or NaN model: at worst the
original. The run's **outcome** says which: `forgotten` (the kept model is
at the target, undamaged; the original itself when it already was),
`not_forgotten` (the best check kept is short of or past the target) or
`kept_original` (nothing improved on the original). The last two are loud:
the printed result starts with NOT FORGOTTEN and the command exits with
status 3 (mu_jax/cli.py) unless `allow_unmet`. If every attempt diverged
without an undamaged check better than the original before it, the run ends
with an error instead. Every decision goes into the report, and a
`caveat` where the validation set is too small to see held-out drops of
twice `max_val_drop` (`smallest_damaging_drop`).

Its settings are `config.guard`, made and commented in configs/default.py
(`guard_section`).
"""

import dataclasses
import math
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from mu_jax import errors
from mu_jax import evaluation
from mu_jax import train

PyTree = Any

# How a check (DAMAGED) or an attempt ended.
FORGOTTEN = 'forgotten'  # Undamaged, at the forgetting target.
DAMAGED = 'damaged'  # A check: retain or held-out accuracy fell too far.
COLLAPSED = 'collapsed'  # An attempt whose last check was damaged.
DIVERGED = 'diverged'  # NaN or infinite loss or weights.
UNDER_FORGOT = 'under_forgot'  # Ran its course short of the target.
OVER_FORGOT = 'over_forgot'  # Random: forget accuracy fell below held-out.

# How the guarded run as a whole ended (report.json `guard.outcome`).
OUTCOME_FORGOTTEN = 'forgotten'  # The kept model is at the target.
OUTCOME_NOT_FORGOTTEN = 'not_forgotten'  # A better model, short of it.
OUTCOME_KEPT_ORIGINAL = 'kept_original'  # Nothing improved on the original.
UNMET = (OUTCOME_NOT_FORGOTTEN, OUTCOME_KEPT_ORIGINAL)


def unmet(result: Mapping[str, Any], config) -> bool:
  """Whether a finished run did not forget and must say so by its status.

  A single experiment's report whose guard rails ended short of the target
  or kept the original model (`guard.outcome`), unless
  `--config.guard.allow_unmet=True`: the CLI then exits with status 3. A
  suite's or tuner's report lists, under 'guard', the cells in which the
  guard acted; their tables mark the cells short of the target instead.
  """
  if 'suite' in config or 'tune' in config:
    return False
  guard = result.get('guard') or {}
  return (guard.get('outcome') in UNMET
          and not config.guard.get('allow_unmet', False))

# An attempt that covered less than this share of the way to the target
# barely moved: the next one steps up by lr_factor squared, not lr_factor,
# and it is not lengthened (a saturated softmax: NegGrad+ on a confident
# model, forget cross-entropy 0.003).
_MOVED = 0.1

# Forward passes cost about a third of a training step (forward, backward,
# update) per image: what a check costs in steps of the budget.
FORWARD_SHARE = 1.0 / 3.0


def budget_steps(config: ml_collections.ConfigDict,
                 retrain_steps: int) -> float | None:
  """The optimizer steps all attempts and checks may cost: `budget` times
  the retrain's, but at least `min_budget_steps` (None: no budget).

  The floor is for small datasets, where a quarter of a retrain is a few
  dozen steps, less than one attempt and its checks, and the steps it adds
  cost seconds.
  """
  if not config.budget:
    return None
  return max(config.budget * retrain_steps, float(config.min_budget_steps))


def check_config(config: ml_collections.ConfigDict):
  """Raises a ConfigError for guard settings out of range (NaN included)."""

  def bad(name, value, rule):
    raise errors.ConfigError(f'guard.{name}={value} must be {rule} '
                             f'(--config.guard.{name}=...)')

  def number(name):
    value = config[name]
    if not isinstance(value, (int, float)) or not math.isfinite(value):
      bad(name, value, 'a finite number')
    return value

  if number('max_attempts') < 1 or int(config.max_attempts) != (
      config.max_attempts):
    bad('max_attempts', config.max_attempts, 'a whole number >= 1')
  if number('lr_factor') <= 1.0:
    bad('lr_factor', config.lr_factor, '> 1')
  if number('checks_per_epoch') < 1:
    bad('checks_per_epoch', config.checks_per_epoch, '>= 1')
  for name in ('forget_samples', 'retain_samples'):
    if number(name) < 1:
      bad(name, config[name], '>= 1')
  for name in ('max_retain_drop', 'max_val_drop', 'noise_z', 'target_z',
               'budget', 'min_budget_steps', 'min_steps'):
    if number(name) < 0:
      bad(name, config[name], '>= 0')
  if not 0.0 < number('check_share') <= 1.0:
    bad('check_share', config.check_share, 'in (0, 1]')
  if not 0.0 <= number('class_wise_target') < 100.0:
    bad('class_wise_target', config.class_wise_target, 'in [0, 100)')


@dataclasses.dataclass
class Check:
  """One measurement of the model during a run (accuracies in percent).

  `gap` (random mode) is forget minus held-out accuracy and `gap_error` its
  standard error; `target` says where the check stands: 'at', 'under'
  (forgot too little) or 'over' (forgot too much).
  """
  attempt: int  # 0 = the baseline (the original model).
  epoch: float  # Epochs completed (fractional within an epoch).
  step: int  # Optimizer steps done in this attempt.
  forget_acc: float
  retain_acc: float
  val_acc: float | None  # None without a validation set.
  damage: str = ''  # Why it is damaged ('' if it is not).
  gap: float | None = None
  gap_error: float | None = None
  target: str = ''


class Probe:
  """Per-example correctness on fixed subsamples: forget, retain, validation.

  Calling it on a TrainState returns {'forget', 'retain', 'val'}: bool
  arrays, one entry per example ('val' absent without a validation set);
  `seconds` adds up the time spent measuring, `examples` is the number of
  images one call measures.
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
    self.examples = sum(len(y) for _, y in self._sets.values())
    self.seconds = 0.0

  def __call__(self, state) -> dict[str, np.ndarray]:
    start = time.perf_counter()
    out = {key: evaluation.per_example(state, images, labels, desc='guard',
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


def accuracy_gap(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
  """(accuracy of `first` minus that of `second`, its standard error), in
  points, for two independent samples of per-example correctness.

  The error is the unpooled one of a difference of two proportions,
  sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2), with each proportion taken as
  (right + 0.5) / (n + 1) so that a sample that is all right or all wrong
  still has an error.
  """
  def rate(correct):
    return (float(np.sum(correct)) + 0.5) / (len(correct) + 1.0)

  p1, p2 = rate(first), rate(second)
  # From integer counts, so that a gap of exactly one example does not
  # depend on how a CPU rounds a difference of two means.
  n1, n2 = len(first), len(second)
  gap = 100.0 * float(int(np.sum(first)) * n2 - int(np.sum(second)) * n1) / (
      n1 * n2)
  error = 100.0 * math.sqrt(p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2)
  return gap, error


class Guard:
  """Measures and judges checks; keeps the weights of the best one."""

  def __init__(self, config: ml_collections.ConfigDict, mode: str,
               probe: Probe):
    check_config(config)
    self.config, self.mode, self.probe = config, mode, probe
    self.base_correct = None  # The original's per-example correctness.
    self.checks: list[Check] = []
    self.attempt = 0
    self.best: Check | None = None
    self.best_weights: PyTree = None  # (params, model_state) of `best`.
    self.last_weights: PyTree = None  # Of the latest check.
    self.base_weights: PyTree = None  # Of the baseline (the original).
    # The best forgotten check of the current attempt, and its weights.
    self.attempt_best: tuple[Check, PyTree] | None = None
    # Time in checks after the baseline: the probe, the judging and the copy
    # of the weights (the guard's own cost inside an attempt).
    self.check_seconds = 0.0

  def start_attempt(self, attempt: int):
    self.attempt, self.attempt_best = attempt, None

  def baseline(self, state) -> Check:
    """Measures the original model (attempt 0)."""
    if self.mode == 'random' and not self.probe.has_val:
      raise errors.ConfigError(
          'the guard rails of random forgetting compare forget accuracy with '
          'held-out accuracy and need a validation set: set '
          '--config.split.val_fraction > 0, or --config.guard.enabled=False')
    self.base_correct = self.probe(state)
    return self._judged(Check(attempt=0, epoch=0, step=0,
                              **_accuracies(self.base_correct)),
                        self.base_correct, state)

  def target_description(self) -> str:
    if self.mode == 'random':
      return (f'forget accuracy within {self.config.target_z:g} standard '
              "errors (and one example) of the original's held-out accuracy")
    return f'forget accuracy at most {self.config.class_wise_target:g} %'

  def _place(self, check: Check, correct: Mapping[str, np.ndarray]):
    """Sets `check.target` (and the random mode's gap)."""
    if self.mode != 'random':
      check.target = ('at' if check.forget_acc <= self.config.class_wise_target
                      else 'under')
      return
    check.gap, check.gap_error = accuracy_gap(correct['forget'],
                                              self.base_correct['val'])
    window = self.window(check.gap_error, len(correct['forget']))
    check.target = ('under' if check.gap > window else
                    'over' if check.gap < -window else 'at')

  def window(self, error: float, forget_examples: int) -> float:
    """Random mode: how far (points) a forget-set measure may be from the
    reference and still be at the target: `target_z` standard errors plus
    one example, so that a single example never decides."""
    return self.config.target_z * error + 100.0 / forget_examples

  def forgotten(self, check: Check) -> bool:
    return not check.damage and check.target == 'at'

  def score(self, check: Check) -> float:
    """An oracle-free estimate of the Avg. Gap (x4); lower is better.

    Retrain's forget accuracy is estimated by the original's held-out
    accuracy (random) or 0 (class-wise), its retain and held-out accuracy
    by the original's; the forget term counts twice, for UA and for
    MIA-efficacy, which moves with it. In random mode only the distance
    beyond the target's window counts: within it the estimate cannot tell
    checks apart, and the one that lost least is the better.
    """
    base = self.checks[0]
    lost = max(base.retain_acc - check.retain_acc, 0.0)
    if check.val_acc is not None:
      lost += max(base.val_acc - check.val_acc, 0.0)
    return 2.0 * self.distance(check, beyond_window=True) + lost

  def _keep(self, check: Check, state):
    weights = jax.tree.map(jnp.copy, (state.params, state.model_state))
    self.last_weights = weights
    if check.attempt == 0:
      self.base_weights = weights
    # On a tie the later check wins: it is what the method ran to.
    if not check.damage and (self.best is None or
                             self.score(check) <= self.score(self.best)):
      self.best, self.best_weights = check, weights
    if check.attempt and self.forgotten(check) and (
        self.attempt_best is None or
        self.score(check) <= self.score(self.attempt_best[0])):
      self.attempt_best = check, weights

  def _judged(self, check: Check, correct, state) -> Check:
    self._place(check, correct)
    self.checks.append(check)
    self._keep(check, state)
    return check

  def measure(self, state, *, epoch: float, step: int) -> Check:
    """Measures and judges `state`; a real copy of its weights is kept.

    A copy, because the driver donates the state's buffers to its next step.
    """
    start = time.perf_counter()
    try:
      return self._measure(state, epoch=epoch, step=step)
    finally:
      self.check_seconds += time.perf_counter() - start

  def _measure(self, state, *, epoch: float, step: int) -> Check:
    correct = self.probe(state)
    check = Check(attempt=self.attempt, epoch=epoch, step=step,
                  **_accuracies(correct))
    c = self.config
    for key, name, limit in (('retain', 'retain', c.max_retain_drop),
                             ('val', 'held-out', c.max_val_drop)):
      if key not in correct:
        continue
      drop, error = paired_drop(self.base_correct[key], correct[key])
      # In examples, with one of slack, so that a single example never
      # decides (and no float rounding does).
      n = len(correct[key])
      lost = int(np.sum(self.base_correct[key])) - int(np.sum(correct[key]))
      if lost - 1 - c.noise_z * error * n / 100.0 > limit * n / 100.0:
        check.damage = (f'{name} accuracy fell {drop:.1f} +- {error:.1f} '
                        f'points, more than {limit:g}')
        break
    return self._judged(check, correct, state)

  def distance(self, check: Check, beyond_window: bool = False) -> float:
    """How far forget accuracy is from the ideal (points): class-wise the
    accuracy, random the gap (optionally only what lies beyond the target's
    window)."""
    if self.mode != 'random':
      return check.forget_acc
    window = (self.window(check.gap_error, len(self.base_correct['forget']))
              if beyond_window else 0.0)
    return max(0.0, abs(check.gap) - window)

  def progress(self) -> float:
    """The share of the original's distance to the ideal that the current
    attempt's best check covered (0: it never moved)."""
    checks = [c for c in self.checks if c.attempt == self.attempt]
    start = self.distance(self.checks[0])
    if not checks or start <= 0:
      return 0.0
    return max(0.0, 1.0 - min(self.distance(c) for c in checks) / start)

  def still_forgetting(self) -> bool:
    """Whether the current attempt was still forgetting when it ended: its
    last check is its closest to the ideal, and it covered at least
    `_MOVED` of the way (a run that barely moved is not)."""
    checks = [c for c in self.checks if c.attempt == self.attempt]
    return (bool(checks) and self.progress() >= _MOVED
            and self.distance(checks[-1]) <= min(self.distance(c)
                                                  for c in checks))

  def resolution(self) -> dict[str, Any]:
    """How finely the checks resolve: examples, one example in points, and
    the smallest held-out drop that a check calls damage."""
    sizes = {key: len(v) for key, v in self.base_correct.items()}
    return {'examples': sizes,
            'one_example_points': {k: 100.0 / n for k, n in sizes.items()},
            'smallest_damaging_val_drop': (
                smallest_damaging_drop(sizes['val'], self.config.max_val_drop,
                                       self.config.noise_z)
                if 'val' in sizes else None)}

  def caveat(self) -> str:
    """'' or a line saying that the validation set is too small to see
    held-out drops of up to twice the damage limit."""
    smallest = self.resolution()['smallest_damaging_val_drop']
    if smallest is None or smallest <= 2.0 * self.config.max_val_drop:
      return ''
    n = len(self.base_correct['val'])
    return (f'caveat: on {n} validation images a check calls a held-out '
            f'drop damage only from {smallest:.1f} points (the limit is '
            f'{self.config.max_val_drop:g}); smaller losses go unseen, and a '
            'larger validation set resolves them')


def smallest_damaging_drop(examples: int, limit: float,
                           noise_z: float) -> float | None:
  """The smallest accuracy drop (points) that `Guard.measure` calls damage
  on `examples` images: d lost examples, every one flipped the same way
  (the least noise a drop of d can have), are damage when
  d - 1 - noise_z sqrt(d) > limit * examples / 100. None if no drop is."""
  for lost in range(1, examples + 1):
    if lost - 1 - noise_z * math.sqrt(lost) > limit * examples / 100.0:
      return 100.0 * lost / examples
  return None


def _next_scale(scale: float, outcome: str, low: float | None,
                high: float | None, factor: float):
  """The next attempt's lr scale, and the updated (low, high) bracket.

  `low` is the largest scale that forgot too little, `high` the smallest
  that collapsed, over-forgot or diverged; between the two the search
  bisects geometrically.
  """
  if outcome == UNDER_FORGOT:
    low = scale if low is None else max(low, scale)
  else:
    high = scale if high is None else min(high, scale)
  if low is not None and high is not None:
    return math.sqrt(low * high), low, high
  return (scale * factor if outcome == UNDER_FORGOT else scale / factor,
          low, high)


@dataclasses.dataclass(frozen=True)
class Attempt:
  """The settings of one run of the method."""
  lr_scale: float  # Times the configured learning rate.
  epochs: int  # The run's length.


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


def _spaced(points, spacing: float) -> frozenset[int]:
  """The check points at least `spacing` steps after the previous one kept
  (the first counted from step 0), and the last point always."""
  kept, last = [], 0
  for point in sorted(points):
    if point - last >= spacing:
      kept.append(point)
      last = point
  if points:
    kept.append(max(points))
  return frozenset(kept)


def _judge_attempt(guard: Guard) -> tuple[str, str]:
  """(outcome, reason) of the attempt whose last check was just taken."""
  last = guard.checks[-1]
  if last.damage:
    return COLLAPSED, last.damage
  where = (f'forget accuracy {last.forget_acc:.1f}' +
           (f' vs held-out {guard.checks[0].val_acc:.1f} ('
            f'{last.gap:+.1f} +- '
            f'{last.gap_error:.1f})' if last.gap is not None else ''))
  if last.target == 'at':
    return FORGOTTEN, f'{where}: at the target'
  if last.target == 'over':
    return OVER_FORGOT, f'{where}: forgot more than unseen data'
  return UNDER_FORGOT, f'{where}: short of the target'


class _Budget:
  """Optimizer steps (and checks, at their cost) spent against a limit."""

  def __init__(self, limit: float | None, check_cost: float):
    self.limit, self.check_cost, self.spent = limit, check_cost, 0.0

  def cost(self, steps: int, checks: int) -> float:
    return steps + checks * self.check_cost

  def fits(self, steps: int, checks: int) -> bool:
    return self.limit is None or (self.spent + self.cost(steps, checks)
                                  <= self.limit)


def run(config: ml_collections.ConfigDict, mode: str, probe: Probe,
        original, run_attempt: Callable[[Attempt, Any], train.Result], *,
        epochs: int, plan: Callable[[int], tuple[int, Sequence[int]]],
        budget_steps: float | None = None, check_steps: float = 0.0
        ) -> Outcome:
  """Runs a method under the guard rails.

  Args:
    config: `config.guard`.
    mode: 'random' or 'class_wise'.
    probe: measures a model.
    original: the original model's TrainState (its weights are the
      baseline and every attempt's start).
    run_attempt: `(Attempt, monitor) -> train.Result`: one run of the
      method from the original model with its learning rate times
      `lr_scale` for `epochs` epochs, calling `monitor` at the check points
      (`train.run`'s `monitor` argument).
    epochs: the configured length of a run.
    plan: `epochs -> (optimizer steps, check points)` of a run that long:
      the steps (counted from 1) after which the driver calls the monitor;
      the guard measures at those at least `check_steps / check_share`
      apart, and at the last.
    budget_steps: the most optimizer steps all attempts and checks may cost
      (`config.budget` times the retrain's steps); None for no limit.
    check_steps: what one check costs, in optimizer steps.

  Returns:
    An `Outcome`.

  Raises:
    train.DivergenceError: every attempt diverged, and none had improved
      on the original undamaged before it did.
  """
  guard = Guard(config, mode, probe)
  start = time.perf_counter()
  budget = _Budget(budget_steps, check_steps)
  # Checks at least this many steps apart (and at the end), so that they
  # cost at most `check_share` of an attempt's steps.
  spacing = check_steps / config.check_share
  base = guard.baseline(original)
  budget.spent += budget.cost(0, 1)
  attempts, results = [], {}
  compile_seconds = 0.0
  settings, low, high = Attempt(1.0, int(epochs)), None, None
  # The first attempt runs even when the original is at the target already
  # (a model that generalises): the method is what was asked for, and the
  # original is kept only if no check does better.
  kept, stopped = None, ''
  while kept is None:
    if len(attempts) >= config.max_attempts:
      stopped = f'the {config.max_attempts} attempts allowed were run'
      break
    steps, points = plan(settings.epochs)
    looks = _spaced(points, spacing)
    if attempts and not budget.fits(steps, len(looks)):
      stopped = (f'attempt {len(attempts) + 1} (lr x{settings.lr_scale:.3g}'
                 f', {settings.epochs} epochs) would exceed the budget')
      break
    guard.start_attempt(len(attempts) + 1)

    def monitor(epoch, step, state, method_state, looks=looks):
      del method_state  # Only the model is measured.
      if step in looks:
        guard.measure(state, epoch=epoch, step=step)

    record = {'attempt': guard.attempt, 'lr_scale': settings.lr_scale,
              'epochs': settings.epochs, 'steps': steps}
    checks_before = len(guard.checks)
    attempt_start, checks_seconds_before = (time.perf_counter(),
                                            guard.check_seconds)
    compile_before = compile_seconds
    try:
      result = run_attempt(settings, monitor)
      results[guard.attempt] = result
      compile_seconds += result.compile_seconds
      if guard.checks[-1].attempt != guard.attempt:  # A plan of no steps.
        guard.measure(result.state, epoch=0, step=0)
      outcome, reason = _judge_attempt(guard)
    except train.DivergenceError as e:
      compile_seconds += e.compile_seconds
      outcome, reason = DIVERGED, str(e)
    budget.spent += budget.cost(steps, len(guard.checks) - checks_before)
    record.update(
        outcome=outcome, reason=reason,
        seconds=(time.perf_counter() - attempt_start
                 - (compile_seconds - compile_before)),
        check_seconds=guard.check_seconds - checks_seconds_before)
    attempts.append(record)
    logging.info('guard: attempt %d (lr x%.3g, %d epochs): %s: %s',
                 guard.attempt, settings.lr_scale, settings.epochs, outcome,
                 reason)
    if outcome == FORGOTTEN:
      kept, weights = guard.checks[-1], guard.last_weights
      verdict = f'kept the end of attempt {guard.attempt}'
    elif guard.attempt_best is not None:
      # At the target undamaged earlier in this run: rewind there (SCRUB+R).
      kept, weights = guard.attempt_best
      record['rewound_to'] = {'epoch': kept.epoch, 'step': kept.step}
      verdict = (f'rewound attempt {guard.attempt} to epoch '
                 f'{kept.epoch:.3g}, step {kept.step}, where it was at the '
                 'target undamaged')
    elif (outcome == UNDER_FORGOT and steps < config.min_steps
          and guard.still_forgetting()):
      # Too short to forget, and still forgetting when it ended: run longer
      # before stepping harder.
      settings, low, high = Attempt(settings.lr_scale,
                                    2 * settings.epochs), None, None
    else:
      factor = config.lr_factor
      if outcome == UNDER_FORGOT and guard.progress() < _MOVED:
        factor = factor ** 2  # It barely moved: a bigger step up.
      scale, low, high = _next_scale(settings.lr_scale, outcome, low, high,
                                     factor)
      settings = Attempt(scale, settings.epochs)
  if (kept is not None and guard.forgotten(base)
      and guard.score(base) < guard.score(kept)):
    # The original generalised already (at the target) and the method only
    # cost accuracy on the way: hand on the original.
    kept, weights = base, guard.base_weights
    verdict = ('kept the original model: it was at the target already and '
               'lost less than the attempt at the target')
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
    verdict = (('kept the original model: it was at the target already and '
                'no attempt did better' if guard.forgotten(kept) else
                'kept the original model: no attempt improved on it '
                'undamaged') if kept.attempt == 0 else
               f'rewound to attempt {kept.attempt} at epoch '
               f'{kept.epoch:.3g}, step {kept.step}, its best check')
  if guard.forgotten(kept):
    result_outcome = OUTCOME_FORGOTTEN
  elif kept.attempt == 0:
    result_outcome = OUTCOME_KEPT_ORIGINAL
  else:
    result_outcome = OUTCOME_NOT_FORGOTTEN
  # Compilation is reported apart, as for an unguarded run.
  seconds = time.perf_counter() - start - compile_seconds
  # The method's own time is the kept attempt's training; the rest (checks,
  # the baseline, the attempts not kept) is what the guard rails added.
  method_seconds = 0.0
  if kept.attempt:
    kept_record = attempts[kept.attempt - 1]
    method_seconds = kept_record['seconds'] - kept_record['check_seconds']
  params, model_state = weights
  state = original.replace(params=params, model_state=model_state)
  # Acted unless the first attempt, as configured, was kept as it ended.
  acted = not (kept.attempt == 1 and len(attempts) == 1
               and attempts[0]['outcome'] == FORGOTTEN)
  summary = '; '.join(
      [f'guard: {verdict}'] +
      [f"attempt {a['attempt']} (lr x{a['lr_scale']:.3g}, {a['epochs']} "
       f"epochs) {a['outcome']}" for a in attempts]) + (
           '' if acted else ' (no action needed)') + (
               f'; stopped: {stopped}' if stopped and result_outcome in UNMET
               else '')
  if result_outcome in UNMET:
    what = ('kept the original model' if result_outcome ==
            OUTCOME_KEPT_ORIGINAL else 'the kept model is short of the target')
    headline = (f'NOT FORGOTTEN: {what} ({guard.target_description()}; '
                f'forget accuracy {kept.forget_acc:.1f}' +
                (f', held-out {kept.val_acc:.1f}' if kept.val_acc is not None
                 else '') + ')')
  else:
    headline = ''
  logging.info('%s', summary)
  report = {
      'enabled': True, 'mode': mode, 'outcome': result_outcome,
      'headline': headline, 'acted': acted, 'summary': summary,
      'target': guard.target_description(),
      'budget': {'limit_steps': budget_steps, 'spent_steps': budget.spent,
                 'check_steps': check_steps, 'stopped': stopped},
      'resolution': guard.resolution(),
      'caveat': guard.caveat(),
      'config': config.to_dict(),
      'baseline': dataclasses.asdict(base),
      'attempts': attempts,
      'kept': {**dataclasses.asdict(kept),
               'lr_scale': (attempts[kept.attempt - 1]['lr_scale']
                            if kept.attempt else None)},
      'checks': [dataclasses.asdict(c) for c in guard.checks],
      'probe_seconds': probe.seconds,
      'method_seconds': method_seconds,
      'overhead_seconds': seconds - method_seconds,
  }
  return Outcome(state=state, result=results.get(kept.attempt),
                 seconds=seconds, compile_seconds=compile_seconds,
                 report=report)
