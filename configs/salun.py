"""SalUn (saliency-masked random labels) on the default experiment.

  python main.py --config configs/salun.py --config.method.mask_ratio=0.3
  python main.py --config configs/salun.py:smoke  # seconds, for tests
"""

from configs import default
from mu_jax.methods import salun


def get_config(arg: str | None = None):
  """Returns the config; `arg` is '' or 'smoke'."""
  config = default.get_config(arg)
  config.method = salun.get_config()
  if arg == 'smoke':
    default.shrink_method(config.method)
  return config
