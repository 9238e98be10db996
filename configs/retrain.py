"""Retrain, the gold standard, on the default experiment.

  python main.py --config configs/retrain.py   # = --method retrain

Retrain trains a fresh model on the retain set with the original model's
recipe (`config.train`); its method section only names it.
"""

import ml_collections

from configs import default


def method(mode: str = 'random') -> ml_collections.ConfigDict:
  """Retrain takes its recipe from `config.train`; these fields are unused."""
  return default.method_section('retrain', mode, epochs=1, lr=0.0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; `arg`: comma-separated smoke, class_wise."""
  return default.experiment('retrain', arg)
