"""SCRUB on the default experiment (embedded Fashion-MNIST, small CNN).

  python main.py --config configs/scrub.py  # = --method scrub
Variants (after the colon; combine with commas, e.g. `smoke,capstone`):
  smoke      tiny data and model, for tests and CI.
  capstone   kklusd/Unlearning's one-loss version on shuffled batches of 256
             over the whole train set, T = 1, SGD momentum 0.9, weight decay
             5e-4, lr 0.005, 2 epochs (its README's random-mode run).
  class_wise forget class 0 (`--mode class_wise`) with msteps 2: the
             default's max phase in every epoch, tuned for a random forget
             set, also erases the other classes when the forget set is a
             whole class.
"""

import ml_collections

from configs import default
from mu_jax.methods import scrub

_VARIANTS = ('smoke', 'capstone', 'class_wise')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the SCRUB config; `arg` names variants, comma-separated."""
  variants = default.parse_variants(arg, _VARIANTS)
  config = default.get_config('smoke' if 'smoke' in variants else None)
  config.method = scrub.get_config()
  if 'capstone' in variants:
    default.use_capstone_recipe(config.method)
  if 'class_wise' in variants:
    config.split.mode = 'class_wise'
    config.method.msteps = 2
  if 'smoke' in variants:
    default.shrink_method(config.method)
    config.method.forget_batch_size = 0  # = batch_size, within the tiny split.
    config.method.retain_batch_size = 0
  config.variant = arg or ''
  return config
