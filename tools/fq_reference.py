"""Forgetting quality's ceiling and floor on real models, by N.

  python tools/fq_reference.py                     # the default setting, N = 4, 8
  python tools/fq_reference.py --models 4,8 --seed 0 --out runs/fq_reference

On the default experiment (configs/default.py: the embedded subset, random
10 %), scores with the NeurIPS 2023 challenge's F
(`mu_jax.challenge.forgetting_quality`):

* retrain against retrain: N retrain models against N held-out ones (other
  seeds, the same retain set), the best a method can score at this N;
* original against retrain: N original models (all data, their own seeds)
  against the N retrain models, what doing nothing scores.

The N retrain models are those `--config.eval.forgetting_quality_models=N`
scores methods against (model indices 0..N-1), so the two rows sit next to
the methods' F in docs/RESULTS.md. Trains, or reuses from the model cache,
2 max(N) retrain and max(N) original models (about 50 s each on 2 CPU
cores). tools/fq_resolution.py simulates the same ceiling.
"""

import json
import os
import sys
from typing import Sequence

from absl import app
from absl import flags

# Run from the repository root or from tools/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mu_jax import atomic_files  # pylint: disable=g-import-not-at-top
from mu_jax import parallel  # pylint: disable=g-import-not-at-top

_MODELS = flags.DEFINE_list('models', ['4', '8'],
                            'the numbers N of models per side')
_SEED = flags.DEFINE_integer('seed', 0, "the split's and model 0's seed")
_OUT = flags.DEFINE_string('out', 'runs/fq_reference',
                           'folder for reference.json')
_CHECKPOINT_DIR = flags.DEFINE_string(
    'checkpoint_dir', '', "the model cache ('' = mu_jax's default)")


def main(argv: Sequence[str]):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  parallel.configure_host(cpu_convolutions='eigen')  # The cnn's faster.
  # pylint: disable=g-import-not-at-top
  from configs import default
  from mu_jax import experiment
  from mu_jax import forgetting_quality
  # pylint: enable=g-import-not-at-top
  config = default.get_config()
  config.seed = _SEED.value
  config.checkpoint_dir = _CHECKPOINT_DIR.value
  dataset, mesh = experiment.setup(config)
  split = experiment.make_split(config, dataset)
  exp = experiment.Experiment(config, dataset, mesh)
  rows = forgetting_quality.reference_rows(
      exp, split, tuple(int(n) for n in _MODELS.value))
  atomic_files.write_json(os.path.join(_OUT.value, 'reference.json'), {
      'dataset': dataset.name, 'split': split.name, 'seed': config.seed,
      'rows': rows})
  print(f'{dataset.name}, {split.name}, seed {config.seed}:\n')
  print('| N | F, retrain vs retrain (ceiling) | F, original vs retrain |')
  print('|---:|---:|---:|')
  for row in rows:
    print(f"| {row['models']} | {row['retrain_vs_retrain']:.3f} | "
          f"{row['original_vs_retrain']:.3f} |")


if __name__ == '__main__':
  app.run(main)
