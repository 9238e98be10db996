"""Tuning each method with the retrain oracle (mu_jax/tune.py).

  python main.py --config configs/tune.py --workdir runs/tune
  python main.py --config configs/tune.py --config.tune.methods=scrub \
      --config.tune.modes=class_wise --config.tune.budget=8
  python main.py --config configs/tune.py:smoke   # seconds; tests and CI

Everything outside `config.tune` is the experiment of configs/default.py:
the data, model, training recipe and split sizes. Each method starts from
its section in the experiment's table (`config.method_configs`).
"""

import ml_collections

from configs import default


def tune_section() -> ml_collections.ConfigDict:
  """`config.tune`: the search space, its budget and the evaluation seeds."""
  config = ml_collections.ConfigDict()
  # Comma-separated methods; '' = every method but retrain.
  config.methods = ''
  config.modes = 'random,class_wise'
  # Learning rates and epochs searched, as factors of the method's default.
  config.lr_factors = (0.25, 0.5, 1.0, 2.0, 4.0)
  config.epoch_factors = (0.5, 1.0, 2.0)
  config.knobs = True  # Also search the method's own knob (its card's).
  # Trials per (mode, method): the grid, or this many points of it drawn
  # with a seeded generator (the default always among them).
  config.budget = 24
  config.eval_seeds = 2  # Seeds config.seed + 1, ... for the evaluation.
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the tuning config; `arg` is '' or 'smoke'."""
  config = default.get_config(arg)
  config.tune = tune_section()
  if config.smoke:
    config.tune.methods = 'neggrad'
    config.tune.modes = 'random'
    config.tune.lr_factors = (0.5, 2.0)
    config.tune.epoch_factors = (1.0,)
    config.tune.eval_seeds = 1
  return config
