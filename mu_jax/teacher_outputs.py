"""Frozen teachers' outputs, computed once per split before training.

Methods that distil from a teacher whose weights never change (Bad Teaching,
SCRUB: `Method.frozen`) would run it on every row of every batch. Where a
split reaches the steps un-augmented, the outputs are the same at every
visit, so the driver (mu_jax/train.py) computes them here in one pass over
the split and hands them to the steps as per-sample arrays of the split's
data (`base.FROZEN_PREFIX` + name), which `base.frozen_outputs` reads
instead of running the teacher. The weights trained are the same up to
float rounding.
"""

from typing import Mapping

import numpy as np

from mu_jax import host_batches
from mu_jax import parallel
from mu_jax.methods import base


def _precomputing_pays(split_size: int, rows_seen: int) -> bool:
  """Whether precomputing frozen outputs over a split beats the steps.

  Precomputing is one teacher forward pass per sample of the split; the
  steps would make one per row of every batch they draw from it.
  """
  return rows_seen >= split_size


def _splits_worth_it(method: base.Method,
                     data: Mapping[str, host_batches.SplitData], *,
                     first_epoch: int, epochs: int,
                     batch_size: Mapping[str, int]) -> list[str]:
  """Splits whose frozen outputs are worth computing before the steps:
  seen only without augmentation, and over at least a pass
  (`_precomputing_pays`) in the epochs left."""
  splits = sorted({s for p in method.phases.values() for s in p.splits})
  rows, augmented = {s: 0 for s in splits}, set()
  for epoch in range(first_epoch, epochs):
    for name, num_steps in method.plan(epoch):
      phase = method.phases[name]
      for split in phase.splits:
        rows[split] += num_steps * batch_size[split]
        if phase.augment:
          augmented.add(split)
  return [s for s in splits
          if s not in augmented and 'image' in data[s]
          and _precomputing_pays(len(data[s]['label']), rows[s])]


def with_frozen_outputs(method: base.Method,
                        data: Mapping[str, host_batches.SplitData], state,
                        method_state, *, first_epoch: int, epochs: int,
                        batch_size: Mapping[str, int],
                        prep: host_batches.Preprocessing, mesh,
                        compile_cache: dict
                        ) -> Mapping[str, host_batches.SplitData]:
  """`data` plus the method's frozen outputs on the splits where they pay.

  Args:
    method: the method; nothing is added unless it has `frozen`.
    data: split name -> its data on the host.
    state: the prepared TrainState the teacher outputs are computed for.
    method_state: the prepared method state (its teachers).
    first_epoch: the epoch training starts (or resumes) at.
    epochs: the epoch it ends at.
    batch_size: split name -> the steps' batch size; the pass uses the same.
    prep: normalisation (the pass is un-augmented, like the steps it serves).
    mesh: the device mesh.
    compile_cache: the driver's programs (`parallel.cached_program`).

  Returns:
    `data`, with each chosen split's data extended by one per-sample array
    per output of `method.frozen`, named `base.FROZEN_PREFIX` + output.
  """
  frozen = method.frozen
  splits = [] if frozen is None else _splits_worth_it(
      method, data, first_epoch=first_epoch, epochs=epochs,
      batch_size=batch_size)
  if not splits:
    return data
  data = dict(data)
  program, rows = None, None
  for split in splits:
    outputs = []
    for batch in host_batches.iterate_in_order(
        data[split], batch_size[split], prep, mesh):
      if program is None or batch['image'].shape != rows:
        rows = batch['image'].shape
        program = parallel.cached_program(
            compile_cache, ('frozen', state, method_state, batch['image']),
            lambda: parallel.compile_function(
                frozen, out_shardings=parallel.replicated(mesh)).lower(
                    state, method_state, batch['image']).compile())
      outputs.append(parallel.to_host(program(state, method_state,
                                              batch['image'])))
    n = len(data[split]['label'])
    data[split] = {**data[split], **{
        base.FROZEN_PREFIX + name: np.concatenate(
            [o[name] for o in outputs])[:n] for name in outputs[0]}}
  return data
