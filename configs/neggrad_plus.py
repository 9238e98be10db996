"""NegGrad+ (retain descent plus forget ascent) on the default experiment.

  python main.py --config configs/neggrad_plus.py --config.method.alpha=0.7
  python main.py --config configs/neggrad_plus.py:class_wise  # forget class 0
  python main.py --config configs/neggrad_plus.py:smoke       # for tests
"""

import ml_collections

from configs import default


def method(mode: str = 'random') -> ml_collections.ConfigDict:
  """NegGrad+; SCRUB uses alpha 0.95, lr 0.01 and SGD without weight decay.

  Random: alpha 0.6 and lr 0.02 for 3 epochs: with alpha >= 0.9 the retain
  term wins and the forget set is barely touched. Class-wise: forgetting a
  whole class is much easier and that setting diverges; alpha 0.97, lr 0.01.
  """
  class_wise = mode == 'class_wise'
  config = default.method_section('neggrad_plus', mode, epochs=3,
                                  lr=0.01 if class_wise else 0.02,
                                  batch_size=128, weight_decay=0.0)
  # Weight of the retain term; 1 - alpha weighs the forget term.
  config.alpha = 0.97 if class_wise else 0.6
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; `arg`: comma-separated smoke, class_wise."""
  return default.experiment('neggrad_plus', arg)
