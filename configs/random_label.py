"""Random labels (RL) on the default experiment.

  python main.py --config configs/random_label.py \
      --config.method.different_label=True
  python main.py --config configs/random_label.py:smoke  # seconds, for tests
"""

from configs import default
from mu_jax.methods import random_label


def get_config(arg: str | None = None):
  """Returns the config; `arg` is '' or 'smoke'."""
  config = default.get_config(arg)
  config.method = random_label.get_config()
  if arg == 'smoke':
    default.shrink_method(config.method)
  return config
