"""Fine-tuning (FT) on the retain set, the default experiment's method.

  python main.py --config configs/finetune.py --config.method.optim.lr=0.02
  python main.py --config configs/finetune.py:class_wise   # forget class 0
  python main.py --config configs/finetune.py:smoke        # for tests
"""

import ml_collections

from configs import default


def method(mode: str = 'random') -> ml_collections.ConfigDict:
  """FT as in SalUn / Unlearn-Sparse, shortened for the embedded dataset."""
  return default.method_section('finetune', mode, epochs=2, lr=0.01)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; `arg`: comma-separated smoke, class_wise."""
  return default.experiment('finetune', arg)
