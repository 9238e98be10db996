"""Forget-set augmentation (`--data_augment`, `--augment_num`; SEED.md 8).

* `simple`: augmented copies of forget images (augmentation/simple.py).
* `arpl`: confusing samples from an ARPL generator (augmentation/arpl.py).

`extra_forget` returns the extra samples that the pipeline appends to the
forget split and, flagged is_forget=1, to the mixed split; evaluation keeps
the un-augmented forget set.
"""

import os

import jax
import ml_collections
import numpy as np

from mu_jax.augmentation import arpl
from mu_jax.augmentation import simple

# The names of --data_augment that add samples to the forget set.
SAMPLE_AUGMENTS = ('simple', 'arpl')


def augmentation_config() -> ml_collections.ConfigDict:
  """config.augmentation: one section per generator."""
  config = ml_collections.ConfigDict()
  config.simple = simple.simple_config()
  config.arpl = arpl.arpl_config()
  return config


def shrink(config: ml_collections.ConfigDict):
  """The smoke variant: one short ARPL epoch with small batches."""
  config.arpl.epochs = 1
  config.arpl.batch_size = 32
  config.arpl.width = 8
  config.arpl.feature_dim = 32


def extra_forget(config: ml_collections.ConfigDict, dataset,
                 forget_images: np.ndarray, forget_labels: np.ndarray):
  """The `augment_num` extra forget samples that config.method asks for.

  Args:
    config: the experiment config (method.data_augment, method.augment_num,
      augmentation, seed, checkpoint_dir).
    dataset: the `data.Dataset` (ARPL trains on its whole train set).
    forget_images: uint8 [N, H, W, C] forget images.
    forget_labels: [N] their labels.

  Returns:
    (uint8 images [M, H, W, C], int32 labels [M], info dict); M = 0 when
    no augmentation is asked for.
  """
  name = config.method.data_augment
  n = int(config.method.augment_num)
  rng = jax.random.fold_in(jax.random.key(config.seed), 7)
  if name not in SAMPLE_AUGMENTS or n <= 0:
    return forget_images[:0], forget_labels[:0].astype(np.int32), {}
  if name == 'simple':
    images, labels = simple.generate(config.augmentation.simple, rng,
                                     forget_images, forget_labels, n)
    return images, labels.astype(np.int32), {'augment': 'simple',
                                             'augment_num': n}
  arpl_config = config.augmentation.arpl
  recipe = {'dataset_fingerprint': dataset.fingerprint(),
            'arpl': arpl_config.to_dict(), 'seed': config.seed}
  directory = os.path.join(config.checkpoint_dir,
                           f'{dataset.name}_arpl_s{config.seed}')
  params, info = arpl.train_or_restore(
      arpl_config, dataset.train_images, dataset.train_labels,
      dataset.num_classes, config.seed, directory, recipe)
  images, labels = arpl.generate(arpl_config, params,
                                 dataset.train_images.shape[1:],
                                 dataset.num_classes, rng, n)
  return images, labels, {'augment': 'arpl', 'augment_num': n, **info}
