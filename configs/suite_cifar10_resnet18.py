"""The benchmark suite at paper scale: CIFAR-10, ResNet-18, for a GPU.

  python main.py --config configs/suite_cifar10_resnet18.py \
      --config.data.tfds_data_dir=DIR --workdir runs/suite_cifar10

Every method with the papers' settings (configs/cifar10_resnet18.py), random
(10%) and class-wise (class 0) forgetting, 3 seeds: 9 models of 182 epochs
plus 42 unlearning runs; README, "Benchmark suite", estimates what it takes.
"""

import copy

import ml_collections

from configs import cifar10_resnet18
from configs import default
from configs import suite
from mu_jax import methods


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the suite config; `arg` is '' or 'smoke'."""
  config = cifar10_resnet18.get_config(arg)
  sections = ml_collections.ConfigDict()
  for name in methods.AVAILABLE:
    if name != 'retrain':
      sections[name] = cifar10_resnet18.paper_method(name)
      if arg == 'smoke':
        default.shrink_method(sections[name])
        sections[name].forget_batch_size = 0  # = batch_size.
        sections[name].retain_batch_size = 0
  # The papers publish one setting per method for both modes.
  suite.add_suite(config, arg or '', ml_collections.ConfigDict(
      {'random': sections, 'class_wise': copy.deepcopy(sections)}))
  # ResNet-18 fills a GPU by itself: seeds are trained one after the other.
  config.suite.multiseed = False
  return config
