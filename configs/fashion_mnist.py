"""The full Fashion-MNIST (60,000 train / 10,000 test) instead of the subset.

Reads the IDX files of the Debian package `dataset-fashion-mnist` when it is
installed (`apt-get install dataset-fashion-mnist`), else a prepared TFDS copy;
the error says how to get either. About 12 minutes per model on 2 CPU cores.
"""

from configs import default


def get_config(arg: str | None = None):
  config = default.get_config(arg)
  config.data.name = 'fashion_mnist'
  config.data.source = 'auto'
  return config
