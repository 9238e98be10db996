"""Bad Teaching on the default experiment (embedded Fashion-MNIST, small CNN).

  python main.py --config configs/bad_teaching.py  # = --method bad_teaching
Variants (after the colon; combine with commas, e.g. `smoke,capstone`):
  smoke      tiny data and model, for tests and CI.
  capstone   kklusd/Unlearning's version: shuffled batches of 256 over the
             whole train set (all of the retain set), SGD momentum 0.9, weight
             decay 5e-4, lr 0.005, 2 epochs (its README's random-mode run).
  class_wise forget class 0 (`--mode class_wise`) with its settings.
"""

import ml_collections

from configs import default


def method(mode: str = 'random') -> ml_collections.ConfigDict:
  """Defaults tuned on the embedded dataset, the same for both split modes.

  The reference runs Adam at lr 1e-4 for one epoch (batch 256, CIFAR). On the
  embedded Fashion-MNIST subset that forgets class 0 only to UA 96 in two
  epochs and costs 2 points of test accuracy; lr 1e-3 for two epochs (8k
  samples) reaches UA 99.9 with test accuracy unchanged, and for a random
  10 % forget set matches retrain's UA and MIA at -2 points of test accuracy.
  """
  config = default.method_section('bad_teaching', mode, epochs=2, lr=1e-3,
                                  optimizer='adam', weight_decay=0.0)
  config.temperature = 1.0  # KL temperature T; 1 in both codes.
  config.retain_fraction = 0.3  # Canonical: retain seen per epoch.
  # Canonical: forget and retain samples per step. Their ratio, 1:3, is about
  # |forget| : retain_fraction * |retain| for a 10 % forget set, the mix the
  # reference's shuffled concatenation gives. Capstone uses batch_size.
  config.forget_batch_size = 32
  config.retain_batch_size = 96
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; `arg`: comma-separated smoke, class_wise, capstone."""
  return default.experiment('bad_teaching', arg,
                            {'capstone': default.use_capstone_recipe})
