"""Times vmapped multi-seed training against one run per seed.

  python tools/bench_multiseed.py --config configs/suite.py --seeds 3 \
      --config.train.epochs=3

Trains the original and the random-split retrain model of each seed twice,
into fresh temporary checkpoint folders: first seed by seed, as
`classifiers.train_classifiers` does without the suite, then all seeds together
with `multiseed.train_jobs` (one vmapped program per kind). Prints the wall
times (with and without compilation), the speed-up and the largest weight
difference between the two, which should be float rounding.
"""

import copy
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

# Run from the repository root or from tools/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/suite.py', 'Experiment (or suite) configuration.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Number of seeds.')


def main(argv):
  del argv  # Unused.
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file at INFO.
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mu_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from mu_jax import classifiers  # pylint: disable=g-import-not-at-top
  from mu_jax import experiment  # pylint: disable=g-import-not-at-top
  from mu_jax import multiseed  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  dataset, mesh = experiment.setup(config)
  seeds = [config.seed + i for i in range(_SEEDS.value)]

  def experiments(checkpoint_dir):
    out = []
    for seed in seeds:
      seed_config = copy.deepcopy(config)
      with seed_config.unlocked():
        seed_config.seed = seed
        seed_config.split.mode = 'random'
        seed_config.checkpoint_dir = checkpoint_dir
      exp = experiment.Experiment(seed_config, dataset, mesh)
      out.append((exp, experiment.make_split(seed_config, dataset)))
    return out

  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    sequential_compile = 0.0
    for exp, split in experiments(f'{tmp}/sequential'):
      _, original_info, _, retrain_info = classifiers.train_classifiers(exp,
                                                                     split)
      sequential_compile += (original_info['compile_seconds'] +
                             retrain_info['compile_seconds'])
    sequential = time.perf_counter() - start

    start = time.perf_counter()
    jobs = []
    for exp, split in experiments(f'{tmp}/vmapped'):
      jobs += [classifiers.classifier_job(exp, 'original'),
               classifiers.classifier_job(exp, 'retrain', split)]
    infos = multiseed.train_jobs(jobs, mesh, desc='bench')
    vmapped = time.perf_counter() - start
    vmapped_compile = sum({i['group_seconds']: i['compile_seconds']
                           for i in infos.values()}.values())

    difference = 0.0
    for job in jobs:
      states = []
      for folder in ('sequential', 'vmapped'):
        checkpointer = checkpoint.Checkpointer(
            job.directory.replace(f'{tmp}/vmapped', f'{tmp}/{folder}'))
        states.append(checkpointer.restore(job.template)[0].params)
        checkpointer.close()
      difference = max(difference, max(
          float(np.max(np.abs(a - b)))
          for a, b in zip(*map(jax.tree.leaves, states))))

  print(f'{len(seeds)} seeds x (original + retrain), {dataset.name}, '
        f'{config.model.name} width {config.model.get("width", "-")}, '
        f'{config.train.epochs} epochs, batch {config.train.batch_size}, '
        f'{jax.devices()[0].device_kind}')
  print('| training | wall (s) | of which compile (s) | without compile (s) |')
  print('|---|---:|---:|---:|')
  for name, wall, comp in (('seed by seed', sequential, sequential_compile),
                           ('vmapped', vmapped, vmapped_compile)):
    print(f'| {name} | {wall:.1f} | {comp:.1f} | {wall - comp:.1f} |')
  print(f'speed-up (wall): {sequential / vmapped:.2f}x; without compile: '
        f'{(sequential - sequential_compile) / (vmapped - vmapped_compile):.2f}'
        f'x; max |weight difference| {difference:.2e}')


if __name__ == '__main__':
  app.run(main)
