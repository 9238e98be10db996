"""CIFAR-10 with ResNet-18 at the scale of the SalUn and Unlearn-Sparse papers.

  python main.py --config configs/cifar10_resnet18.py          # FT
  python main.py --config configs/cifar10_resnet18.py:salun    # SalUn, etc.
  python main.py --config configs/suite_cifar10_resnet18.py    # every method

Made for a GPU: one model is 182 epochs of 50,000 images, about 92 hours on
the 2-core CPU of ENV.md (see README, "Benchmark suite").

Original and retrain models (SalUn's `main_train.py`): ResNet-18 with the
3x3 stride-1 stem, SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 256,
182 epochs, lr x0.1 at epochs 91 and 136, random crop (padding 4) and
horizontal flip. The forget set is 10% of the 50,000 training images (the
papers hold out 5,000 for validation and forget 4,500 of 45,000).

Unlearning methods run with the papers' published settings (ANCHORS.md
section 5) where there are some, else with their mu_jax defaults. The data is
TFDS `cifar10` in array_record format (`--config.data.tfds_data_dir`), or the
python pickles with `--config.data.source=cifar --config.data.path=DIR`.

Variants (after the colon, comma-separated): a method name, and/or 'smoke'.
"""

from typing import Any, Mapping

import ml_collections

from configs import default
from mu_jax import methods

# Per method: overrides of its `config.method` section.
PAPER_SETTINGS: Mapping[str, Mapping[str, Any]] = {
    # Unlearn-Sparse README: FT 10 epochs, lr 0.01.
    'finetune': {'epochs': 10, 'optim': {'lr': 0.01}},
    # SalUn README: 10 epochs, unlearn lr 0.013, top-50% saliency mask; RL is
    # SalUn without the mask.
    'random_label': {'epochs': 10, 'optim': {'lr': 0.013}},
    'salun': {'epochs': 10, 'optim': {'lr': 0.013}, 'mask_ratio': 0.5},
    # Unlearn-Sparse README: GA 5 epochs, lr 1e-4.
    'neggrad': {'epochs': 5, 'optim': {'lr': 1e-4}},
    # SCRUB's MIA notebook: alpha 0.9999, 5 epochs, SGD lr 0.01.
    'neggrad_plus': {'epochs': 5, 'alpha': 0.9999, 'optim': {'lr': 0.01}},
    # Bad Teaching's CIFAR notebook: T = 1, Adam lr 1e-4, 1 epoch, batch 256
    # (here 64 forget + 192 retain samples), 30% of the retain set.
    'bad_teaching': {'epochs': 1, 'temperature': 1.0,
                     'retain_fraction': 0.3, 'forget_batch_size': 64,
                     'retain_batch_size': 192,
                     'optim': {'name': 'adam', 'lr': 1e-4,
                               'weight_decay': 0.0}},
    # SCRUB's large-scale notebook: SGD lr 5e-4, 3 epochs, msteps 2, kd_T 4,
    # alpha 0.001, gamma 0.99, batch 128 retain / 32 forget.
    'scrub': {'epochs': 3, 'msteps': 2, 'temperature': 4.0, 'alpha': 0.001,
              'gamma': 0.99, 'forget_batch_size': 32,
              'retain_batch_size': 128,
              'optim': {'name': 'sgd', 'lr': 5e-4, 'momentum': 0.9,
                        'weight_decay': 5e-4}},
}


def _override(section: ml_collections.ConfigDict, values: Mapping[str, Any]):
  for key, value in values.items():
    if isinstance(value, Mapping):
      _override(section[key], value)
    else:
      section[key] = value


def paper_method(name: str) -> ml_collections.ConfigDict:
  """Method `name`'s section with the papers' settings and batch 256."""
  section = methods.get_config(name)
  section.batch_size = 256
  _override(section, PAPER_SETTINGS.get(methods.canonical_name(name), {}))
  return section


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; `arg`: a method name and/or 'smoke' (a,b)."""
  variants = [v for v in (arg or '').split(',') if v]
  smoke = 'smoke' in variants
  names = [v for v in variants if v != 'smoke']
  config = default.get_config('smoke' if smoke else None)
  config.data.name = 'cifar10'
  config.data.source = 'tfds'
  config.model.name = 'resnet18'
  config.train.epochs = 182
  config.train.batch_size = 256
  config.train.augment = True
  config.train.crop_padding = 4
  config.train.flip = True
  config.train.optim.lr = 0.1
  config.train.optim.momentum = 0.9
  config.train.optim.weight_decay = 5e-4
  config.train.optim.schedule = 'multistep'
  config.train.optim.milestones = (91, 136)
  config.train.optim.gamma = 0.1
  config.split.forget_fraction = 0.1
  config.eval.batch_size = 1024
  config.method = paper_method(names[0] if names else 'finetune')
  if smoke:  # Tiny, for tests: the data must still be prepared.
    config.train.epochs = 1
    config.train.batch_size = 32
    config.train.optim.milestones = ()
    config.eval.batch_size = 128
    default.shrink_method(config.method)
  config.variant = arg or ''
  return config
