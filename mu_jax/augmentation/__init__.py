"""Forget-set augmentation (`--data_augment`, `--augment_num`).

After kklusd/Unlearning's.

* `simple`: augmented copies of forget images (augmentation/simple.py).
* `arpl`: confusing samples from an ARPL generator (augmentation/arpl.py).
* `opengan`: a feature-level GAN whose generated features replace forget
  samples' features inside Bad Teaching's and SCRUB's losses
  (augmentation/opengan.py); it adds no samples and ignores `augment_num`.

`extra_forget` returns the extra samples that the pipeline appends to the
forget split and, flagged is_forget=1, to the mixed split; evaluation keeps
the un-augmented forget set. Every method that reads the forget split sees
them: NegGrad(+) ascends on them, Bad Teaching and SCRUB treat them as forget
samples, and SalUn (and RL) both rank weight saliency on the augmented forget
set and give its samples random labels (the original's SalUn ignored the
augmentation).

`feature_hook` trains (or reloads) the OpenGAN and returns the hook that
methods taking `FEATURE_AUGMENT` use.

The generators' settings are `config.augmentation.{simple,arpl,opengan}`,
made and commented in configs/default.py (`augmentation_section`).
"""

import os

import jax
import ml_collections
import numpy as np

from mu_jax import models
from mu_jax import representations
from mu_jax.augmentation import arpl
from mu_jax.augmentation import opengan
from mu_jax.augmentation import simple

# The names of --data_augment that add samples to the forget set.
SAMPLE_AUGMENTS = ('simple', 'arpl')
# The names that work inside the losses of methods with FEATURE_AUGMENT.
FEATURE_AUGMENTS = ('opengan',)


def extra_forget(config: ml_collections.ConfigDict, dataset,
                 forget_images: np.ndarray, forget_labels: np.ndarray, mesh):
  """The `augment_num` extra forget samples that config.method asks for.

  Args:
    config: the experiment config (method.data_augment, method.augment_num,
      augmentation, seed, checkpoint_dir).
    dataset: the `data.Dataset` (ARPL trains on its whole train set).
    forget_images: uint8 [N, H, W, C] forget images.
    forget_labels: [N] their labels.
    mesh: the device mesh the ARPL networks train on.

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
      dataset.num_classes, config.seed, directory, recipe, mesh)
  images, labels = arpl.generate(arpl_config, params,
                                 dataset.train_images.shape[1:],
                                 dataset.num_classes, rng, n)
  return images, labels, {'augment': 'arpl', 'augment_num': n, **info}


def feature_hook(config: ml_collections.ConfigDict, dataset, original,
                 forget_images: np.ndarray, split_digest: str,
                 split_name: str, mesh):
  """Trains or reloads the OpenGAN of this forget set; returns its hook.

  Args:
    config: the experiment config (augmentation.opengan, model, train,
      init_from, seed, checkpoint_dir, eval.batch_size).
    dataset: the `data.Dataset` (normalisation, fingerprint, name).
    original: the original model's TrainState; its penultimate features of
      the forget set are the GAN's real data.
    forget_images: uint8 [N, H, W, C], the un-augmented forget set.
    split_digest: the split's digest (the GAN depends on the forget set).
    split_name: the split's name, for the checkpoint folder.
    mesh: the device mesh it trains on.

  Returns:
    (opengan.FeatureHook, info) with info = {'seconds', 'reused',
    'checkpoint', 'history'}.
  """
  gan_config = config.augmentation.opengan
  features = representations.features(
      original, forget_images, mean=dataset.mean, std=dataset.std,
      batch_size=config.eval.batch_size)
  # The features come from the original model, so its whole recipe (or the
  # folder it was loaded from) is part of the GAN's.
  recipe = {'dataset_fingerprint': dataset.fingerprint(),
            'split': split_digest, 'model': models.recipe(config.model),
            'train': config.train.to_dict(), 'init_from': config.init_from,
            'opengan': gan_config.to_dict(), 'seed': config.seed}
  directory = os.path.join(
      config.checkpoint_dir,
      f'{dataset.name}_{models.tag(config.model)}_{split_name}_opengan'
      f'_s{config.seed}')
  params, info = opengan.train_or_restore(gan_config, features, config.seed,
                                          directory, recipe, mesh)
  return opengan.make_hook(gan_config, params, features.shape[1]), info


def report(method_config: ml_collections.ConfigDict, num_augmented: int,
           info: dict) -> dict:
  """The report's 'augmentation' entry.

  Args:
    method_config: config.method (data_augment, augment_num).
    num_augmented: extra samples added to the forget set (0 for opengan,
      which substitutes features inside the loss instead).
    info: the generator's training info ({} without a generator).

  Returns:
    {'method', 'augment_num', 'num_augmented', 'generator_seconds' (its
    training time; that of the run that trained it when reused),
    'generator_reused', 'checkpoint', 'history'}.
  """
  name = method_config.data_augment
  return {'method': name,
          # As configured; opengan does not use it (neither did the original).
          'augment_num': (int(method_config.augment_num)
                          if name != 'none' else None),
          'num_augmented': int(num_augmented),
          'generator_seconds': info.get('seconds'),
          'generator_reused': info.get('reused'),
          'checkpoint': info.get('checkpoint'),
          'history': info.get('history')}
