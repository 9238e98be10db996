"""What the NeurIPS 2023 challenge's forgetting quality F can resolve, by N.

  python tools/fq_resolution.py                      # N = 4, 8, 16
  python tools/fq_resolution.py --models 4,8,16,32 --repeats 10

F compares N unlearned with N retrained models example by example
(`mu_jax.challenge.forgetting_quality`). Its ceiling is not 1: two sets of
N models drawn from the same distribution (what retrain against retrain
would score) already lose points to the per-example tests' noise. This
simulates forget-set confidences (`logit_scaled_confidence`-like, one mean
per example, unit noise per model) and prints, per N, F of two identical
distributions (the ceiling) and of a one-standard-deviation shift (a method
that forgot a little less than retrain), mean ± std over repeats, so that a
reader can tell "forgets well" from "the metric cannot see more at this N".
A simulation, not the real retrain-vs-retrain rows (docs/RESULTS.md).
"""

import os
import sys

from absl import app
from absl import flags
import numpy as np

# Run from the repository root or from tools/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mu_jax import challenge  # pylint: disable=g-import-not-at-top

_MODELS = flags.DEFINE_list('models', ['4', '8', '16'],
                            'the numbers N of models per side')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'simulations per N and shift')
_EXAMPLES = flags.DEFINE_integer('examples', 300, 'forget examples')
_SEED = flags.DEFINE_integer('seed', 0, 'seed of the simulations')


def simulate(num_models: int, shift: float, rng, examples: int) -> float:
  """F of `num_models` models against as many shifted by `shift` SDs."""
  means = rng.normal(0.0, 2.0, size=examples)
  retrained = means + rng.normal(0.0, 1.0, size=(num_models, examples))
  unlearned = means + shift + rng.normal(0.0, 1.0,
                                         size=(num_models, examples))
  return challenge.forgetting_quality(unlearned, retrained).score


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  examples, repeats = _EXAMPLES.value, _REPEATS.value
  rng = np.random.default_rng(_SEED.value)
  print(f'{examples} forget examples; mean ± std over {repeats} '
        'repeats.\n')
  print('| N | F, same distribution (the ceiling) | F, 1 SD shift |')
  print('|---:|---:|---:|')
  for n in (int(v) for v in _MODELS.value):
    same = [simulate(n, 0.0, rng, examples) for _ in range(repeats)]
    shifted = [simulate(n, 1.0, rng, examples) for _ in range(repeats)]
    print(f'| {n} | {np.mean(same):.3f} ± {np.std(same, ddof=1):.3f} | '
          f'{np.mean(shifted):.3f} ± {np.std(shifted, ddof=1):.3f} |')


if __name__ == '__main__':
  app.run(main)
