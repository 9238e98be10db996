"""The benchmark suite at paper scale: CIFAR-10, ResNet-18, for a GPU.

  python main.py --config configs/suite_cifar10_resnet18.py \
      --config.data.tfds_data_dir=DIR --workdir runs/suite_cifar10
  python main.py --config configs/suite_cifar10_resnet18.py:guarded \
      --config.suite.guard=both ...   # + guarded rows, side by side

Every method with its reference code's recipe (configs/cifar10_resnet18.py,
docs/RECIPES.md): the random-forgetting recipes for random (10%) forgetting,
the class-wise ones (e.g. SCRUB's large-scale class-forgetting run) for
class-wise forgetting of class 0; 3 seeds: 9 models of 182 epochs plus 42
unlearning runs; README, "Benchmark suite", estimates what it takes.
bfloat16 mixed precision on a GPU or TPU, float32 on a CPU (configs/
cifar10_resnet18.py, `model.dtype = 'auto'`). tests/paper_dry_run_test.py
runs this config end to end on a tiny CIFAR-shaped dataset.
"""

import ml_collections

from configs import cifar10_resnet18
from configs import suite


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the suite config; `arg` is '', 'smoke' or 'guarded' (the guard
  rails and their validation slice, configs/cifar10_resnet18.py)."""
  config = cifar10_resnet18.get_config(arg)
  # The suite's sections come from the config's table: the papers' recipes.
  suite.add_suite(config, arg or '')
  # ResNet-18 fills a GPU by itself: seeds are trained one after the other.
  config.suite.multiseed = False
  return config
