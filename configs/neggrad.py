"""NegGrad (gradient ascent on the forget set) on the default experiment.

  python main.py --config configs/neggrad.py
  python main.py --config configs/neggrad.py:class_wise  # forget class 0
  python main.py --config configs/neggrad.py:capstone    # the original project
  python main.py --config configs/neggrad.py:smoke       # seconds, for tests

Variants: 'class_wise' (class-wise mode and its settings), 'capstone' (the
original project's NegGrad: loss -0.1 * CE, SGD lr 0.01 hard-coded, batch
256), 'smoke'.
"""

import ml_collections

from configs import default


def method(mode: str = 'random') -> ml_collections.ConfigDict:
  """Gradient ascent, SalUn's GA optimizer (SGD, momentum 0.9, wd 5e-4).

  Random: one pass over the forget set at lr 0.015. Ascent has no floor: at
  lr 0.025 test accuracy already falls 5 points. Class-wise: forgetting a
  whole class needs about a fifth of that step size (lr 0.0028).
  """
  lr = 0.0028 if mode == 'class_wise' else 0.015
  return default.method_section('neggrad', mode, epochs=1, lr=lr,
                                batch_size=128)


def _capstone(config: ml_collections.ConfigDict):
  config.method.variant = 'capstone'
  if not config.smoke:
    config.method.batch_size = 256  # The original's --batch_size default.


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; `arg`: comma-separated smoke, class_wise, capstone."""
  return default.experiment('neggrad', arg, {'capstone': _capstone})
