"""The benchmark suite on the full Fashion-MNIST (60,000 / 10,000 images).

  python main.py --config configs/suite_fashion_mnist.py \
      --workdir runs/suite_fashion_mnist \
      --config.checkpoint_dir=runs/suite_fashion_mnist/checkpoints

The data is the Debian package `dataset-fashion-mnist` (configs/fashion_mnist.py
says how to get it). A model of the default 15-epoch recipe takes about 12
minutes on a 2-core CPU, so this suite shortens the recipe of the original and
retrain models to 5 epochs: 9 models (3 seeds; the original, a random and a
class-wise retrain per seed) plus 42 unlearning runs. The methods keep their
settings from configs/<method>.py, tuned on the embedded subset; with a
forget set six times larger, gradient ascent (GA, NegGrad+ class-wise) takes
six times more ascent steps per epoch and diverges (docs/RESULTS.md).
"""

import ml_collections

from configs import fashion_mnist
from configs import suite


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the suite config; `arg` is '' or 'smoke'."""
  config = fashion_mnist.get_config(arg)
  if arg != 'smoke':
    config.train.epochs = 5
  suite.add_suite(config, arg or '')
  return config
