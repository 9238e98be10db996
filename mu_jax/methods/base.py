"""The contract between unlearning methods and the training driver.

A method is a few plain functions (like `optax.GradientTransformation`):
`prepare` runs once on the host (teachers, masks, generators), each phase's
`update` is a pure step that the driver jit-compiles once over the device mesh,
and `plan(epoch)` says which phases run how many steps in an epoch. Methods
never call `jax.jit`, read flags or do I/O.
"""

from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import math

import jax
import jax.numpy as jnp

from mu_jax import errors
from mu_jax import losses
from mu_jax import parallel
from mu_jax import state as state_lib

PyTree = Any
Batch = Mapping[str, jax.Array]   # {'image': f32[B, H, W, C], 'label': i32[B]}
Batches = Mapping[str, Batch]     # keyed by split name: {'forget': ..., ...}
Metrics = Mapping[str, jax.Array]  # scalars only
UpdateFn = Callable[[state_lib.TrainState, PyTree, Batches, jax.Array],
                    tuple[state_lib.TrainState, PyTree, Metrics]]
FrozenFn = Callable[[state_lib.TrainState, PyTree, jax.Array],
                    Mapping[str, jax.Array]]
# One term of a summed loss: `(state, params, method_state, batches, rng) ->
# (loss, (metrics, model_state))`, with `model_state` from
# `state.apply(params, ..., train=True)`.
LossTerm = Callable[[state_lib.TrainState, PyTree, PyTree, Batches,
                     jax.Array], tuple[jax.Array, tuple[Metrics, PyTree]]]
# Batch keys of the outputs the driver precomputed with `Method.frozen`.
FROZEN_PREFIX = 'frozen:'
# method_state key of `summed_gradients`' running sum.
GRADIENT_SUM = 'gradient_sum'


class Phase(NamedTuple):
  """A pure update and the splits it consumes per call.

  Attributes:
    update: `(state, method_state, batches, rng) -> (state, method_state,
      metrics)`. `batches[split]['image']` is normalised float32. Or a tuple
      of such functions that make one step together, run in order on the
      same batches and rng (`summed_gradients`): the driver compiles each as
      its own program on CPUs, where XLA would otherwise run their
      independent passes concurrently on too few cores, and as one program
      on accelerators (`parallel.separate_programs`).
    splits: the data splits that `batches` holds, e.g. ('forget', 'retain').
    augment: random crop and flip the images before `update` (the training
      recipe); unlearning methods see the plain images by default, as the
      original project did.
  """
  update: UpdateFn | tuple[UpdateFn, ...]
  splits: tuple[str, ...]
  augment: bool = False


class Method(NamedTuple):
  """An unlearning method.

  Attributes:
    prepare: `(rng, state) -> (state, method_state)`; host side, once. Whatever
      `update` needs (teachers, masks) goes into `method_state`, never into a
      closure, so it is sharded, donated and checkpointed like the state.
    phases: phase name -> Phase.
    plan: `epoch -> [(phase_name, num_steps), ...]`.
    frozen: `(state, method_state, images) -> {name: per-sample array}`, the
      outputs of the method's frozen models (teachers, in eval mode, so
      independent of the batch) on normalised images; None if it has none.
      On a split that the run sees without augmentation often enough to pay
      for it, the driver computes them once before the first step and passes
      them in the batches (`frozen_outputs` reads them), so that steps do
      not rerun the teachers on images they have seen before.
  """
  prepare: Callable[[jax.Array, state_lib.TrainState],
                    tuple[state_lib.TrainState, PyTree]]
  phases: Mapping[str, Phase]
  plan: Callable[[int], Sequence[tuple[str, int]]]
  frozen: FrozenFn | None = None


class Card(NamedTuple):
  """A method's facts that the rest of mu_jax reads from its module (`CARD`).

  `methods/__init__.py` builds every table from the cards: the aliases
  `--method` accepts, the table labels, the paper's row order, the tuner's
  knob, the methods the suite, the tuner, the benchmarks and the
  robustness tool run. A new method is its module (with a card) and its
  config file.

  Attributes:
    label: the literature's name, for table rows (e.g. 'SalUn', 'FT').
    aliases: other spellings `--method` accepts (lower case).
    order: its row in the SalUn paper's tables (FT, RL, GA, ..., SalUn);
      methods the paper does not have come after, by name.
    knob: the tuner's own hyperparameter of the method, (config field,
      values searched), or None.
    unlearns: False for retrain, the gold standard every table compares to.
  """
  label: str
  aliases: tuple[str, ...] = ()
  order: int = 100
  knob: tuple[str, tuple[Any, ...]] | None = None
  unlearns: bool = True


class Balance(NamedTuple):
  """A method's knob between forgetting and keeping what it must keep.

  The guard rails (mu_jax/guard.py) search one strength s: an attempt at s
  runs with the learning rate times s and each of `fields` of the method's
  config section moved by `tilt(value, s)` (s > 1 forgets harder). A method
  module declares it as `BALANCE`; methods without one are searched on the
  step size alone.

  Attributes:
    fields: config.method fields the knob sets.
    tilt: `(configured value, strength) -> value`; the identity at s = 1.
  """
  fields: tuple[str, ...]
  tilt: Callable[[float, float], float]


def repair_weight(value: float, strength: float) -> float:
  """A retain-side weight divided by the strength: with the learning rate
  times the strength, the repair steps stay as configured while the
  forgetting steps grow (RL, SalUn, SCRUB's min phase)."""
  return value / strength


class Context(NamedTuple):
  """Static facts the driver gives a method's `make`.

  Attributes:
    num_classes: classifier outputs.
    epochs: epochs the method runs.
    steps_per_epoch: split name -> full batches per pass over that split.
    batch_size: split name -> batch size of that split.
    init_variables: `rng -> (params, model_state)`, a fresh random model
      (retrain, Bad Teaching's incompetent teacher).
    iterate: `split -> iterator of normalised, device-placed batches` covering
      the split once in order, without augmentation; for `prepare` (e.g. the
      SalUn saliency pass). The last batch may be smaller.
    mean, std: the normalisation of the images the updates see (to undo it
      for image-space augmentation).
    simclr: `(apply_fn, variables, temperature)` of the pretrained SimCLR
      model when `loss_weight` > 0, else None (see mu_jax/self_supervised.py).
    feature_augment: with `--data_augment opengan`, the trained feature
      generator as an `augmentation.opengan.FeatureHook`, else None. Methods
      that set `FEATURE_AUGMENT = True` (Bad Teaching, SCRUB) use it; the
      pipeline refuses opengan for the others.
    compile: `(fun, **jax.jit kwargs) -> compiled fun`, for one-off passes
      in `prepare` (e.g. SalUn's saliency gradient); methods never call
      `jax.jit` themselves.
  """
  num_classes: int
  epochs: int
  steps_per_epoch: Mapping[str, int]
  batch_size: Mapping[str, int]
  init_variables: Callable[[jax.Array], tuple[PyTree, PyTree]]
  iterate: Callable[[str], Iterator[Batch]]
  mean: tuple[float, ...] = (0.0,)
  std: tuple[float, ...] = (1.0,)
  simclr: Any = None
  feature_augment: Any = None
  compile: Callable[..., Any] = parallel.compile_function


def _flag(field: str) -> str:
  """The command-line flag of a field of the method's config section."""
  return f'--config.method.{field}'


def check_choice(method: str, field: str, value: Any,
                 choices: Sequence[Any]) -> Any:
  """`value` if it is one of `choices`, else a one-line ConfigError.

  E.g. "unknown neggrad variant 'x'; choose one of canonical, capstone
  (--config.method.variant=...)".

  Args:
    method: the method's name, as the message shows it (e.g. 'neggrad').
    field: the field of `config.method` that holds `value` (e.g. 'variant').
    value: the configured value.
    choices: the values the method implements.
  """
  if value not in choices:
    raise errors.ConfigError(
        f'unknown {method} {field} {value!r}; choose one of '
        f'{", ".join(str(c) for c in choices)} ({_flag(field)}=...)')
  return value


def check_range(method: str, field: str, value: float, *, example: float,
                low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
  """`value` if it lies within the bounds, else a one-line ConfigError.

  E.g. "salun mask_ratio is 1.5; it must be in [0, 1]: set
  --config.method.mask_ratio to e.g. 0.5". A NaN is never within them.

  Args:
    method: the method's name, as the message shows it (e.g. 'scrub').
    field: the field of `config.method` that holds `value`.
    value: the configured value.
    example: a sensible value to suggest (usually the default).
    low, high: the bounds; None for no bound on that side.
    low_open, high_open: whether that bound itself is excluded.
  """
  inside = ((low is None or (value > low if low_open else value >= low))
            and (high is None
                 or (value < high if high_open else value <= high)))
  if inside:
    return value
  if low is not None and high is not None:
    bounds = (f'in {"(" if low_open else "["}{low:g}, {high:g}'
              f'{")" if high_open else "]"}')
  elif low == 0 and low_open:
    bounds = 'positive'
  elif low is not None:
    bounds = f'{"more than" if low_open else "at least"} {low:g}'
  else:
    bounds = f'{"less than" if high_open else "at most"} {high:g}'
  raise errors.ConfigError(
      f'{method} {field} is {value}; it must be {bounds}: set '
      f'{_flag(field)} to e.g. {example}')


def no_prepare(rng, state):
  del rng
  return state, ()


def single_phase(update: UpdateFn | tuple[UpdateFn, ...],
                 splits: Sequence[str], steps: int, *, prepare=no_prepare,
                 augment: bool = False,
                 frozen: FrozenFn | None = None) -> Method:
  """The one-phase `Method` most methods are: `steps` updates every epoch."""
  return Method(prepare=prepare,
                phases={'main': Phase(update, tuple(splits), augment)},
                plan=lambda epoch: [('main', steps)], frozen=frozen)


def supervised_update(split: str) -> UpdateFn:
  """Cross-entropy on the true labels of `split` (fine-tune, retrain)."""

  def update(state, method_state, batches, rng):
    del rng  # Deterministic given the (already augmented) batch.
    batch = batches[split]

    def loss_fn(params):
      (logits, _), model_state = state.apply(params, batch['image'],
                                             train=True)
      return losses.cross_entropy(logits, batch['label']), (logits,
                                                            model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    accuracy = (logits.argmax(-1) == batch['label']).mean()
    return (state.apply_gradients(grads, model_state), method_state,
            {'loss': loss, 'accuracy': accuracy})

  return update


# Helpers of the distillation methods (Bad Teaching, SCRUB).


def ceil_steps(x: float) -> int:
  """ceil(x) for a step count computed as a fraction of an epoch.

  Forgives float noise: 0.07 * 100 is 7.000000000000001, which means 7
  steps, not 8.
  """
  return math.ceil(x - 1e-6)


def frozen_copy(params: PyTree, model_state: PyTree) -> dict[str, PyTree]:
  """A teacher: {'params', 'model_state'} as real copies of the arrays.

  A copy, not an alias: the driver donates `state`, which would invalidate
  arrays shared with it.
  """
  return {'params': jax.tree.map(jnp.copy, params),
          'model_state': jax.tree.map(jnp.copy, model_state)}


def teacher_outputs(state, teacher: dict[str, PyTree], images: jax.Array):
  """A frozen teacher (`frozen_copy`) in eval mode, without gradient.

  Eval mode uses BatchNorm running statistics, so a teacher's outputs do
  not depend on the batch.

  Returns:
    (logits, penultimate features).
  """
  outputs, _ = state.apply(teacher['params'], images, train=False,
                           model_state=teacher['model_state'])
  return jax.lax.stop_gradient(outputs)


def frozen_outputs(frozen: FrozenFn, state, method_state,
                   batch: Batch) -> Mapping[str, jax.Array]:
  """`frozen`'s outputs on `batch`: the driver's precomputed rows if the
  batch carries them (`Method.frozen`), else computed now."""
  stored = {k[len(FROZEN_PREFIX):]: v for k, v in batch.items()
            if k.startswith(FROZEN_PREFIX)}
  return stored or frozen(state, method_state, batch['image'])


# One step over several loss terms (NegGrad+, RL's summed loop).


def init_gradient_sum(method_state: dict[str, PyTree],
                      params: PyTree) -> dict[str, PyTree]:
  """`method_state` with the zeroed running sum `summed_gradients` needs."""
  return {**method_state, GRADIENT_SUM: {
      'grads': jax.tree.map(jnp.zeros_like, params),
      'loss': jnp.zeros((), jnp.float32)}}


def summed_gradients(terms: Sequence[LossTerm],
                     apply_gradients=None) -> tuple[UpdateFn, ...]:
  """One optimizer step on the sum of `terms`' losses, one part per term.

  Every term's gradient is taken at the step's parameters, as the gradient
  of the summed loss would be; parts before the last add theirs to the
  running sum in `method_state[GRADIENT_SUM]` (made by `init_gradient_sum`
  in `prepare`), and the last applies the total. BatchNorm statistics pass
  from term to term through `state.model_state`, as they would through one
  forward pass after the other. Metrics: each term's, plus 'loss', the sum.

  Args:
    terms: the loss terms, in the order their forward passes run.
    apply_gradients: `(state, method_state, grads, model_state) -> state`;
      None for the plain optimizer update (SalUn passes its mask).

  Returns:
    The parts, for `Phase.update`.
  """

  def part(k: int, term: LossTerm) -> UpdateFn:
    last = k == len(terms) - 1

    def update(state, method_state, batches, rng):
      (loss, (metrics, model_state)), grads = jax.value_and_grad(
          lambda p: term(state, p, method_state, batches, rng),
          has_aux=True)(state.params)
      if k > 0:
        so_far = method_state[GRADIENT_SUM]
        grads = jax.tree.map(jnp.add, so_far['grads'], grads)
        loss = so_far['loss'] + loss
      if not last:
        return (state.replace(model_state=model_state),
                {**method_state, GRADIENT_SUM: {'grads': grads,
                                                'loss': loss}}, metrics)
      if apply_gradients is None:
        state = state.apply_gradients(grads, model_state)
      else:
        state = apply_gradients(state, method_state, grads, model_state)
      return state, method_state, {**metrics, 'loss': loss}

    return update

  return tuple(part(k, term) for k, term in enumerate(terms))
