"""Random labels (RL) on the default experiment.

  python main.py --config configs/random_label.py \
      --config.method.different_label=True
  python main.py --config configs/random_label.py:smoke  # seconds, for tests
"""

import ml_collections

from configs import default


def method(mode: str = 'random') -> ml_collections.ConfigDict:
  """RL with SalUn's CIFAR-10 loop, tuned for the embedded dataset.

  One epoch (a forget pass, then a retain pass) at lr 0.002 with SalUn's SGD
  (momentum 0.9, weight decay 5e-4): the momentum of the forget pass carries
  into the retain pass, so the step size has a sharp optimum (0.0018 and
  0.0025 unlearn too little and too much). One epoch keeps the run time
  about a tenth of retraining's; SalUn's 10 epochs would exceed it.
  """
  config = default.method_section('random_label', mode, epochs=1, lr=0.002,
                                  batch_size=128)
  # sequential | summed (mu_jax/methods/random_label.py explains both).
  config.loop = 'sequential'
  config.different_label = False  # Random labels never equal the true one.
  config.retain_weight = 1.0  # alpha: weight of CE on the retain set.
  config.retain_steps = 0  # Sequential: retain steps per epoch; 0 = a pass.
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; `arg`: comma-separated smoke, class_wise."""
  return default.experiment('random_label', arg)
