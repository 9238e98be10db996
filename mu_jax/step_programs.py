"""The programs of a training step, compiled once per phase of a method.

The driver (mu_jax/train.py) runs them: each takes the raw (uint8) batches a
step draws, normalises and, if the phase says so, augments them on the
devices, then applies the phase's update. A step made of parts
(`Phase.update` as a tuple, e.g. NegGrad+'s forget and retain gradients)
runs as one program per part on CPUs (`parallel.separate_programs`), as one
program elsewhere. The state's buffers are donated and the outputs
replicated over the mesh.
"""

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from mu_jax import augment
from mu_jax import host_batches
from mu_jax import parallel
from mu_jax.methods import base


def phase_step(phase: base.Phase, prep: host_batches.Preprocessing,
               update=None):
  """`update` with preprocessing in front: the function the driver jits.

  Args:
    phase: the phase (its augmentation setting).
    prep: normalisation and augmentation.
    update: one of the phase's parts; None for `phase.update` itself.

  Returns:
    step(state, method_state, raw_batches, rng) -> the update's result;
    raw batches hold uint8 images, normalised (and, if `phase.augment`,
    cropped and flipped) inside the step. Splits without images (e.g. a
    GAN's feature vectors) pass through as they are.
  """
  update = phase.update if update is None else update

  def step(state, method_state, raw_batches, rng):
    aug_rng, update_rng = jax.random.split(rng)
    batches = {}
    for i, (split, raw) in enumerate(sorted(raw_batches.items())):
      if 'image' not in raw:
        batches[split] = raw
        continue
      split_rng = jax.random.fold_in(aug_rng, i) if phase.augment else None
      image = augment.preprocess(
          raw['image'], split_rng, mean=prep.mean, std=prep.std,
          crop_padding=prep.crop_padding if phase.augment else 0,
          flip=prep.flip and phase.augment)
      batches[split] = {**raw, 'image': image}
    return update(state, method_state, batches, update_rng)

  return step


def _parts(phase: base.Phase, mesh) -> tuple[base.UpdateFn, ...]:
  """The programs of one step of `phase`: its parts on CPUs, else one."""
  if not isinstance(phase.update, tuple):
    return (phase.update,)
  if parallel.separate_programs(mesh):
    return phase.update

  def chained(state, method_state, batches, rng):
    metrics = {}
    for part in phase.update:
      state, method_state, part_metrics = part(state, method_state, batches,
                                               rng)
      metrics.update(part_metrics)
    return state, method_state, metrics

  return (chained,)


def _compiled_steps(phase: base.Phase, prep: host_batches.Preprocessing,
                    mesh, example, group: bool) -> tuple[Any, ...]:
  """Jits the programs of one step of `phase` for the mesh: each takes
  (state, method_state, batches, loop_rng, step), with the step's rng
  `fold_in(loop_rng, step)` made inside.

  In a group the programs are vmapped over the runs' leading axis (their
  states, batches and rngs); the step count is shared.
  """
  compiled = []
  for update in _parts(phase, mesh):
    driver_step = phase_step(phase, prep, update)

    def step(state, method_state, raw_batches, loop_rng, global_step,
             driver_step=driver_step):
      return driver_step(state, method_state, raw_batches,
                         jax.random.fold_in(loop_rng, global_step))

    if group:
      step = jax.vmap(step, in_axes=(0, 0, 0, 0, None))
    replicated = parallel.replicated(mesh)
    jitted = parallel.compile_function(
        step, donate_argnums=(0,),
        out_shardings=(replicated, replicated, replicated))
    compiled.append(jitted.lower(*example).compile())
  return tuple(compiled)


def compile_phases(method: base.Method, prep: host_batches.Preprocessing,
                   mesh, *, state, method_state, loop_rng,
                   data: Mapping[str, host_batches.SplitData],
                   batch_size: Mapping[str, int],
                   batch_sharding: jax.sharding.Sharding, num_runs: int,
                   compile_cache: dict) -> dict[str, tuple[Any, ...]]:
  """Phase name -> the compiled programs of one of its steps.

  Args:
    method: the method.
    prep: normalisation and augmentation.
    mesh: the device mesh.
    state: the (stacked, for a group) TrainState the steps start from.
    method_state: the method's state, likewise.
    loop_rng: the runs' step rng (stacked for a group).
    data: one run's data on the host: its arrays' dtypes and row shapes
      shape the batches.
    batch_size: split name -> batch size.
    batch_sharding: how the batches are laid out (`parallel.batch_sharded`).
    num_runs: the runs of a vmapped group, or 1 for one run.
    compile_cache: programs compiled before (`parallel.cached_program`).
  """
  group = num_runs > 1
  lead = (num_runs,) if group else ()
  steps = {}
  for name, phase in method.phases.items():
    example = {s: {k: jax.ShapeDtypeStruct(
        (*lead, batch_size[s], *v.shape[1:]), v.dtype,
        sharding=batch_sharding)
                   for k, v in data[s].items()} for s in phase.splits}
    args = (state, method_state, example, loop_rng, jnp.int32(0))
    steps[name] = parallel.cached_program(
        compile_cache, (name, *args),
        lambda phase=phase, args=args: _compiled_steps(
            phase, prep, mesh, args, group))
  return steps
