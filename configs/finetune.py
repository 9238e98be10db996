"""Fine-tuning (FT) on the retain set, the default experiment's method.

  python main.py --config configs/finetune.py --config.method.optim.lr=0.02
"""

from configs import default
from mu_jax.methods import finetune


def get_config(arg: str | None = None):
  """Returns the config; `arg` is '' or 'smoke'."""
  config = default.get_config(arg)
  config.method = finetune.get_config()
  if arg == 'smoke':
    default.shrink_method(config.method)
  return config
