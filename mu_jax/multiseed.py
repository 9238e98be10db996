"""Trains several seeds' original or retrain models in one vmapped program.

N sequential training runs of a small model pay the per-step costs N times
(host batching, dispatch, reading back metrics) and leave most of a GPU idle.
`train_jobs` stacks the seeds' TrainStates along a new leading axis and runs
`jax.vmap` of one training step under a single `jax.jit`, so every step
advances all seeds at once.

Each seed follows exactly the schedule `train.run` gives it (initialisation,
batch order, augmentation and step rngs all come from its own seed), so the
weights equal those of sequential runs up to float rounding. Each seed's model
is saved after every epoch into the checkpoint folder, with the recipe, that
`pipeline` uses for it: later runs reuse it, and a killed run resumes.

Whether this is faster depends on the hardware. XLA turns a vmapped
convolution (different weights per seed) into a grouped convolution; GPUs run
those well, but XLA's CPU backend computes them as one dense convolution N
times as large, so on a CPU the vmapped program can be slower than N runs
(`tools/bench_multiseed.py` measures both; README, "Benchmark suite").
"""

import collections
import json
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import logging

from mu_jax import checkpoint as checkpoint_lib
from mu_jax import pipeline
from mu_jax import train

PyTree = Any


def _stack(trees: Sequence[PyTree]) -> PyTree:
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _unstack(tree: PyTree, index: int) -> PyTree:
  return jax.tree.map(lambda leaf: leaf[index], tree)


def _seed_step(phase, prep: train.Preprocessing):
  """One seed's step, as `train.run` compiles it (the test checks they agree).

  The step rng is derived inside, `fold_in(loop_rng, step)`, as the driver
  does on the host, so that one compiled call serves all seeds.
  """
  driver_step = train.phase_step(phase, prep)

  def step(state, method_state, raw_batches, loop_rng, global_step):
    return driver_step(state, method_state, raw_batches,
                       jax.random.fold_in(loop_rng, global_step))

  return step


def _group_key(job: pipeline.TrainingJob, meta: dict | None) -> str:
  """Jobs with equal keys take the same steps and can share one program."""
  return json.dumps({
      'kind': job.kind, 'size': len(job.data['retain']['label']),
      'epochs': job.epochs, 'batch': job.batch_size,
      'model': job.recipe['model'], 'train': job.recipe['train'],
      'epoch': meta['epoch'] if meta else 0}, sort_keys=True)


def train_jobs(jobs: Sequence[pipeline.TrainingJob],
          desc: str = 'train') -> dict[str, dict[str, Any]]:
  """Trains the unfinished `jobs` together, each into its checkpoint folder.

  Jobs whose folder holds a finished model of the same recipe are skipped;
  unfinished ones resume. Jobs that take the same steps (same kind, data size,
  recipe and epochs done) share one vmapped program.

  Args:
    jobs: from `pipeline.classifier_job`, typically one per seed.
    desc: progress-bar label.

  Returns:
    Job name -> info: 'seconds' (this model's share of the group's wall time,
    compile excluded), 'reused', 'checkpoint', 'history', 'seeds' (models
    trained together, also for reused ones; 1 = trained alone) and, for
    models trained now, 'compile_seconds' and 'group_seconds'.

  Raises:
    checkpoint_lib.CheckpointError: a folder holds a model of another recipe.
  """
  infos, groups = {}, collections.defaultdict(list)
  for job in {job.name: job for job in jobs}.values():
    checkpointer = checkpoint_lib.Checkpointer(job.directory)
    meta = checkpointer.latest_meta()
    if meta is not None and meta.get('recipe') != job.recipe:
      checkpointer.close()
      raise checkpoint_lib.CheckpointError(
          f'{job.directory} holds a {job.kind} model trained with another '
          'recipe, split or dataset; delete it or set --config.checkpoint_dir')
    if meta is not None and meta.get('done'):
      checkpointer.close()
      infos[job.name] = {
          'seconds': meta['run_seconds'], 'reused': True,
          'checkpoint': job.directory, 'history': meta['history'],
          'seeds': meta.get('multiseed', {}).get('seeds', 1)}
      continue
    groups[_group_key(job, meta)].append((job, checkpointer, meta))
  for group in groups.values():
    try:
      infos.update(_train_group(group, desc))
    finally:
      for _, checkpointer, _ in group:
        checkpointer.close()
  return infos


def _train_group(group, desc: str) -> dict[str, dict[str, Any]]:
  """Trains jobs that take identical steps in one vmapped program."""
  jobs = [job for job, _, _ in group]
  first, n = jobs[0], len(jobs)
  phase_name, phase = next(iter(first.method.phases.items()))
  if len(first.method.phases) != 1:
    raise ValueError('multiseed.train_jobs trains one-phase methods (the '
                     f'training recipe); {first.kind} has '
                     f'{len(first.method.phases)}')
  logging.info('training %d %s models together (seeds %s)', n, first.kind,
               ', '.join(str(job.seed) for job in jobs))

  start = time.perf_counter()
  states, method_states, loop_rngs = [], [], []
  first_epoch, positions, histories, previous = 0, 0, [], []
  for job, checkpointer, meta in group:
    prepare_rng, loop_rng = jax.random.split(jax.random.key(job.seed))
    # A real copy: the stacked state is donated to the compiled step.
    state = jax.tree.map(jnp.copy, job.template)
    state, method_state = job.method.prepare(prepare_rng, state)
    if meta is not None:
      state, method_state, meta = checkpointer.restore(state, method_state)
      first_epoch, positions = meta['epoch'], meta['positions']['retain']
    histories.append(list(meta['history']) if meta else [])
    previous.append(meta.get('run_seconds', 0.0) if meta else 0.0)
    # Static fields of stacked pytrees must be equal, not just equivalent:
    # share the first job's optimizer and apply function (same recipe).
    states.append(state.replace(tx=first.template.tx,
                                apply_fn=first.template.apply_fn))
    method_states.append(method_state)
    loop_rngs.append(loop_rng)
  state, method_state = _stack(states), _stack(method_states)
  loop_rngs = jnp.stack(loop_rngs)
  streams = [train.BatchStream('retain', len(job.data['retain']['label']),
                               job.batch_size, job.seed, positions)
             for job in jobs]
  setup_seconds = time.perf_counter() - start

  compile_start = time.perf_counter()
  data = [job.data['retain'] for job in jobs]
  example = {'retain': {k: jax.ShapeDtypeStruct(
      (n, first.batch_size, *v.shape[1:]), v.dtype)
                        for k, v in data[0].items()}}
  step = jax.jit(jax.vmap(_seed_step(phase, first.prep),
                          in_axes=(0, 0, 0, 0, None)),
                 donate_argnums=(0,))
  step = step.lower(state, method_state, example, loop_rngs,
                    jnp.int32(0)).compile()
  compile_seconds = time.perf_counter() - compile_start

  start = time.perf_counter()
  plan = first.method.plan
  global_step = sum(k for e in range(first_epoch) for _, k in plan(e))
  total = sum(k for e in range(first_epoch, first.epochs) for _, k in plan(e))
  with tqdm.tqdm(total=total, desc=f'{desc} {first.kind} x{n}', unit='step',
                 mininterval=2.0, dynamic_ncols=True) as bar:
    for epoch in range(first_epoch, first.epochs):
      sums, count, pending = [collections.Counter() for _ in jobs], 0, None
      for name, num_steps in plan(epoch):
        if name != phase_name:
          raise ValueError(f'unknown phase {name!r} in the plan')
        for _ in range(num_steps):
          batch = {}
          for stream, split in zip(streams, data):
            index = stream.next()
            for key, values in split.items():
              batch.setdefault(key, []).append(values[index])
          batch = {'retain': {k: np.stack(v) for k, v in batch.items()}}
          state, method_state, metrics = step(
              state, method_state, batch, loop_rngs, jnp.int32(global_step))
          # Read the previous step's metrics while this one runs.
          if pending is not None:
            _accumulate(pending, sums, jobs, desc)
            count += 1
          pending = (global_step, metrics)
          global_step += 1
          bar.update()
      if pending is not None:
        _accumulate(pending, sums, jobs, desc)
        count += 1
      jax.block_until_ready(state)
      elapsed = setup_seconds + time.perf_counter() - start
      for i, (job, checkpointer, _) in enumerate(group):
        histories[i].append({k: v / count for k, v in sums[i].items()})
        meta = {'recipe': job.recipe, 'epoch': epoch + 1,
                'epochs': job.epochs, 'done': epoch + 1 == job.epochs,
                'positions': {'retain': streams[i].position},
                'history': histories[i],
                'run_seconds': previous[i] + elapsed / n,
                'multiseed': {'seeds': n, 'group_seconds': elapsed}}
        checkpointer.save(global_step, _unstack(state, i),
                          _unstack(method_state, i), meta)
  elapsed = setup_seconds + time.perf_counter() - start
  return {job.name: {'seconds': previous[i] + elapsed / n, 'reused': False,
                     'compile_seconds': compile_seconds,
                     'checkpoint': job.directory, 'history': histories[i],
                     'seeds': n, 'group_seconds': elapsed}
          for i, job in enumerate(jobs)}


def _accumulate(pending, sums, jobs, desc):
  step, metrics = pending
  values = jax.device_get(metrics)
  for name, per_seed in values.items():
    for i, value in enumerate(np.asarray(per_seed)):
      if not np.isfinite(value):
        raise train.TrainingError(
            f'{desc} (seed {jobs[i].seed}): {name} became {value} at step '
            f'{step}; the run diverged, lower --config.train.optim.lr')
      sums[i][name] += float(value)
