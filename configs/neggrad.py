"""NegGrad (gradient ascent on the forget set) on the default experiment.

  python main.py --config configs/neggrad.py
  python main.py --config configs/neggrad.py:class_wise  # forget class 0
  python main.py --config configs/neggrad.py:capstone    # the original project
  python main.py --config configs/neggrad.py:smoke       # seconds, for tests

Variants: '' (canonical gradient ascent tuned for random forgetting),
'class_wise' (class-wise mode with the smaller step size it needs: lr 0.0028),
'capstone' (the original project's NegGrad: loss -0.1 * CE, SGD lr 0.01
hard-coded, batch 256), 'smoke'.
"""

from configs import default
from mu_jax.methods import neggrad

VARIANTS = ('smoke', 'class_wise', 'capstone')


def get_config(arg: str | None = None):
  """Returns the config; `arg` is '' or one of VARIANTS."""
  if arg and arg not in VARIANTS:
    raise ValueError(f'unknown config variant {arg!r}; known: '
                     f'{", ".join(VARIANTS)}')
  config = default.get_config('smoke' if arg == 'smoke' else None)
  config.method = neggrad.get_config()
  config.variant = arg or ''
  if arg == 'class_wise':
    config.split.mode = 'class_wise'
    config.method.optim.lr = 0.0028
  elif arg == 'capstone':
    config.method.variant = 'capstone'
    config.method.batch_size = 256  # The original's --batch_size default.
  elif arg == 'smoke':
    default.shrink_method(config.method)
  return config
