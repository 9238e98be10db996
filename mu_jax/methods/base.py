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

from mu_jax import losses
from mu_jax import parallel
from mu_jax import state as state_lib

PyTree = Any
Batch = Mapping[str, jax.Array]   # {'image': f32[B, H, W, C], 'label': i32[B]}
Batches = Mapping[str, Batch]     # keyed by split name: {'forget': ..., ...}
Metrics = Mapping[str, jax.Array]  # scalars only
UpdateFn = Callable[[state_lib.TrainState, PyTree, Batches, jax.Array],
                    tuple[state_lib.TrainState, PyTree, Metrics]]


class Phase(NamedTuple):
  """A pure update and the splits it consumes per call.

  Attributes:
    update: `(state, method_state, batches, rng) -> (state, method_state,
      metrics)`. `batches[split]['image']` is normalised float32.
    splits: the data splits that `batches` holds, e.g. ('forget', 'retain').
    augment: random crop and flip the images before `update` (the training
      recipe); unlearning methods see the plain images by default, as the
      original project did.
  """
  update: UpdateFn
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
  """
  prepare: Callable[[jax.Array, state_lib.TrainState],
                    tuple[state_lib.TrainState, PyTree]]
  phases: Mapping[str, Phase]
  plan: Callable[[int], Sequence[tuple[str, int]]]


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


def no_prepare(rng, state):
  del rng
  return state, ()


def single_phase(update: UpdateFn, splits: Sequence[str], steps: int, *,
                 prepare=no_prepare, augment: bool = False) -> Method:
  """The one-phase `Method` most methods are: `steps` updates every epoch."""
  return Method(prepare=prepare,
                phases={'main': Phase(update, tuple(splits), augment)},
                plan=lambda epoch: [('main', steps)])


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
