"""NegGrad+ (retain descent plus forget ascent) on the default experiment.

  python main.py --config configs/neggrad_plus.py --config.method.alpha=0.7
  python main.py --config configs/neggrad_plus.py:class_wise  # forget class 0
  python main.py --config configs/neggrad_plus.py:smoke       # for tests

Variants: '' (tuned for random forgetting: alpha 0.6, lr 0.02), 'class_wise'
(class-wise mode; the random setting diverges there: alpha 0.97, lr 0.01),
'smoke'.
"""

from configs import default
from mu_jax.methods import neggrad_plus

VARIANTS = ('smoke', 'class_wise')


def get_config(arg: str | None = None):
  """Returns the config; `arg` is '' or one of VARIANTS."""
  if arg and arg not in VARIANTS:
    raise ValueError(f'unknown config variant {arg!r}; known: '
                     f'{", ".join(VARIANTS)}')
  config = default.get_config('smoke' if arg == 'smoke' else None)
  config.method = neggrad_plus.get_config()
  config.variant = arg or ''
  if arg == 'class_wise':
    config.split.mode = 'class_wise'
    config.method.alpha = 0.97
    config.method.optim.lr = 0.01
  elif arg == 'smoke':
    default.shrink_method(config.method)
  return config
