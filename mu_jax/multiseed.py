"""Trains several seeds' original or retrain models in one vmapped program.

N sequential training runs of a small model pay the per-step costs N times
(host batching, dispatch, reading back metrics) and leave most of a GPU idle.
`train_jobs` groups the jobs that take the same steps and trains each group
with `train.run_group`: one compiled step, vmapped over the seeds, advances
all of them at once.

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
import contextlib
import json
from typing import Any, Sequence

from absl import logging

from mu_jax import checkpoint as checkpoint_lib
from mu_jax import classifiers
from mu_jax import train


def _group_key(job: classifiers.TrainingJob, meta: dict | None) -> str:
  """Jobs with equal keys take the same steps and can share one program."""
  return json.dumps({
      'kind': job.kind, 'size': len(job.data['retain']['label']),
      'epochs': job.epochs, 'batch': job.batch_size,
      'model': job.recipe['model'], 'train': job.recipe['train'],
      'epoch': meta['epoch'] if meta else 0}, sort_keys=True)


def train_jobs(jobs: Sequence[classifiers.TrainingJob], mesh,
               desc: str = 'train') -> dict[str, dict[str, Any]]:
  """Trains the unfinished `jobs` together, each into its checkpoint folder.

  Jobs whose folder holds a finished model of the same recipe are skipped;
  unfinished ones resume. Jobs that take the same steps (same kind, data size,
  recipe and epochs done) share one vmapped program.

  Args:
    jobs: from `classifiers.classifier_job`, typically one per seed.
    mesh: the device mesh; states are replicated, batches split over it.
    desc: progress-bar label.

  Returns:
    Job name -> info: 'seconds' (this model's share of the group's wall time,
    compile excluded), 'reused', 'checkpoint', 'history', 'seeds' (models
    trained together, also for reused ones; 1 = trained alone) and, for
    models trained now, 'compile_seconds' and 'group_seconds' (the
    group's wall time).

  Raises:
    checkpoint_lib.CheckpointError: a folder holds a model of another recipe.
  """
  infos, groups = {}, collections.defaultdict(list)
  with contextlib.ExitStack() as stack:
    # Folders are locked in one order, so two runs never wait on each other.
    for job in sorted({job.name: job for job in jobs}.values(),
                      key=lambda job: job.directory):
      checkpointer = stack.enter_context(
          checkpoint_lib.Checkpointer(job.directory))
      meta = checkpointer.latest_meta()
      if meta is not None and meta.get('recipe') != job.recipe:
        raise checkpoint_lib.CheckpointError(
            f'{job.directory} holds a {job.kind} model trained with another '
            'recipe, split or dataset; delete it or set '
            '--config.checkpoint_dir')
      if meta is not None and meta.get('done'):
        infos[job.name] = {
            'seconds': meta['run_seconds'], 'reused': True,
            'checkpoint': job.directory, 'history': meta['history'],
            'seeds': meta.get('multiseed', {}).get('seeds', 1)}
        continue
      groups[_group_key(job, meta)].append((job, checkpointer))
    for group in groups.values():
      first, n = group[0][0], len(group)
      logging.info('training %d %s models together (seeds %s)', n,
                   first.kind, ', '.join(str(job.seed) for job, _ in group))
      runs = [train.Run(job.template, job.data, job.seed, checkpointer,
                        {'recipe': job.recipe, 'multiseed': {'seeds': n}})
              for job, checkpointer in group]
      results = train.run_group(
          first.method, runs, epochs=first.epochs,
          batch_size={'retain': first.batch_size}, prep=first.prep,
          mesh=mesh, desc=f'{desc} {first.kind}')
      for (job, _), result in zip(group, results):
        infos[job.name] = {'seconds': result.run_seconds, 'reused': False,
                           'compile_seconds': result.compile_seconds,
                           'checkpoint': job.directory,
                           'history': result.history, 'seeds': n,
                           'group_seconds': result.run_seconds * n}
  return infos
