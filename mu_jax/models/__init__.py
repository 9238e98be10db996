"""Image classifiers by name; each returns `(logits, features)` from `__call__`.

`features` are the penultimate activations (the input of the classifier head),
used by MIA, t-SNE, OpenGAN and the self-supervised terms.
"""

import flax.linen as nn
import ml_collections

from mu_jax.models import cnn
from mu_jax.models import resnet

_FACTORIES = {
    'cnn': lambda c, n: cnn.CNN(num_classes=n, width=c.get('width', 32)),
    'resnet8': lambda c, n: resnet.ResNet8(
        num_classes=n, max_pool=c.get('max_pool', False)),
    'resnet20': lambda c, n: resnet.ResNet20(
        num_classes=n, max_pool=c.get('max_pool', False)),
    'resnet18': lambda c, n: resnet.ResNet18(
        num_classes=n, max_pool=c.get('max_pool', False)),
}

NAMES = tuple(_FACTORIES)


def create(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """Builds the model named by `config.name` with `num_classes` outputs."""
  if config.name not in _FACTORIES:
    raise ValueError(
        f'unknown model {config.name!r}; choose one of {", ".join(NAMES)} '
        '(--config.model.name=...)')
  return _FACTORIES[config.name](config, num_classes)
