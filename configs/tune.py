"""Tuning each method with the retrain oracle (mu_jax/tune.py).

  python main.py --config configs/tune.py --workdir runs/tune
  python main.py --config configs/tune.py --config.tune.methods=scrub \
      --config.tune.modes=class_wise --config.tune.budget=8
  python main.py --config configs/tune.py:smoke   # seconds; tests and CI

Everything outside `config.tune` is the experiment of configs/default.py:
the data, model, training recipe and split sizes.
"""

import ml_collections

from configs import default
from mu_jax import tune


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the tuning config; `arg` is '' or 'smoke'."""
  config = default.get_config(arg)
  config.tune = tune.tune_config()
  if config.smoke:
    config.tune.methods = 'neggrad'
    config.tune.modes = 'random'
    config.tune.lr_factors = (0.5, 2.0)
    config.tune.epoch_factors = (1.0,)
    config.tune.eval_seeds = 1
  return config
