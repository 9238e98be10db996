"""SalUn (saliency-masked random labels) on the default experiment.

  python main.py --config configs/salun.py --config.method.mask_ratio=0.3
  python main.py --config configs/salun.py:smoke  # seconds, for tests
"""

import ml_collections

from configs import default
from configs import random_label


def method(mode: str = 'random') -> ml_collections.ConfigDict:
  """SalUn with RL's sequential loop, retuned for the embedded dataset.

  Five short epochs, each a forget pass (random labels) then a fifth of a
  retain pass (14 steps on the embedded dataset), with SGD at momentum 0.5
  and lr 0.018 (weight decay 5e-4, as SalUn). RL's default (one full
  epoch, momentum 0.9, lr 0.002) stalls at an Avg. Gap of 2.59 for random
  10 % forgetting: its retain pass restores forget and retain accuracy
  together (their sum stays near 100 %), so unlearning trades one for the
  other. Alternating forgetting
  and repair five times, with less momentum carrying the random-label
  gradient into the retain steps, reaches 2.05 and 1.24 class-wise, in 105
  steps (docs/RESULTS.md, issue 3).
  """
  config = random_label.method(mode)
  config.name = 'salun'
  config.epochs = 5
  # Retain steps per epoch: a fifth of a pass, not a fixed count. A fixed
  # 14 (the same on the embedded data) lets the random-label pass outgrow
  # the repair on a larger forget set: on the full Fashion-MNIST (47 forget
  # steps an epoch) every attempt of the guard rails collapsed.
  config.retain_steps = 0
  config.retain_fraction = 0.2
  config.optim.lr = 0.018
  config.optim.momentum = 0.5
  # Fraction of weights that may move (SalUn: 0.5; see the docstring).
  config.mask_ratio = 0.2
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; `arg`: comma-separated smoke, class_wise."""
  return default.experiment('salun', arg)
