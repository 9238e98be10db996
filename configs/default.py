"""Default experiment: fine-tune unlearning of a random 10% of the embedded
Fashion-MNIST subset with a small CNN, against original and retrained models.

Runs offline on 2 CPU cores in a few minutes. Variants:
  configs/default.py:smoke   tiny data and model, for tests and CI.
"""

import ml_collections

from mu_jax import augmentation
from mu_jax import self_supervised
from mu_jax.methods import finetune


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the default config; `arg='smoke'` shrinks it to seconds."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds the split, initialisation, batch order and rngs.
  config.checkpoint_dir = 'checkpoints'  # Original and retrain models.
  # A folder holding a finished mu_jax checkpoint of the original model to use
  # instead of training one (e.g. checkpoints/<dataset>_<model>_all_s0).
  config.init_from = ''

  config.data = ml_collections.ConfigDict()
  config.data.name = 'fashion_mnist_subset'  # Embedded in mu_jax/datasets.
  config.data.source = 'embedded'  # embedded | tfds | idx | cifar | npz | auto
  config.data.path = ''  # Folder or file for idx / cifar / npz sources.
  config.data.tfds_data_dir = ''  # '' = TFDS's default folder.
  config.data.download = False  # TFDS may download only if True.
  config.data.max_train = 0  # >0 keeps the first N train images (tests).
  config.data.max_test = 0  # >0 keeps the first N test images (tests).

  config.split = ml_collections.ConfigDict()
  config.split.mode = 'random'  # random | class_wise
  config.split.forget_num = 0  # Random mode: forget set size; 0 = fraction.
  config.split.forget_fraction = 0.1  # Random mode, when forget_num is 0.
  config.split.forget_classes = (0,)  # Class-wise mode: classes to forget.
  config.split.saved_data_path = ''  # Folder to save / reload the split in.

  config.model = ml_collections.ConfigDict()
  config.model.name = 'cnn'  # cnn | resnet8 | resnet20 | resnet18
  config.model.width = 32  # cnn only.
  config.model.max_pool = False  # ResNets: the max-pool the original kept.
  # float32 | bfloat16: mixed precision (bfloat16 activations and matrix
  # products, float32 parameters and optimizer state); for GPUs and TPUs.
  config.model.dtype = 'float32'

  # The recipe of the original model and of retrain (the gold standard).
  config.train = ml_collections.ConfigDict()
  config.train.epochs = 15
  config.train.batch_size = 128
  # Off by default: the original model should memorise its training set, as
  # a CIFAR ResNet-18 does, so that forgetting is measurable.
  config.train.augment = False  # Random crop and horizontal flip.
  config.train.crop_padding = 2
  config.train.flip = True
  config.train.optim = ml_collections.ConfigDict()
  config.train.optim.name = 'sgd'
  config.train.optim.lr = 0.05
  config.train.optim.momentum = 0.9
  config.train.optim.weight_decay = 5e-4
  config.train.optim.schedule = 'cosine'  # constant | cosine | multistep
  config.train.optim.milestones = ()  # Epochs, for multistep.
  config.train.optim.gamma = 0.1
  config.train.optim.warmup_epochs = 0

  # The unlearning method and its own optimizer: each method's defaults come
  # from mu_jax/methods/<name>.py:get_config(); `--method NAME` swaps them in.
  config.method = finetune.get_config()

  # SimCLR pretraining and the self-supervised unlearning terms, used when
  # method.loss_weight > 0 (see mu_jax/self_supervised.py).
  config.ssl = self_supervised.ssl_config()

  # Forget-set augmentation, used when method.data_augment is simple, arpl
  # (extra forget samples) or opengan (generated features inside Bad
  # Teaching's and SCRUB's losses); see mu_jax/augmentation/.
  config.augmentation = augmentation.augmentation_config()

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 512

  config.mesh = ml_collections.ConfigDict()
  config.mesh.num_devices = 0  # 0 = all visible devices.
  # The kernels XLA's CPU backend runs convolutions with, set by main.py
  # before JAX starts: 'auto' (the faster for the model: Eigen for the cnn,
  # YNNPACK for the ResNets; docs/PERFORMANCE.md), 'eigen' or 'ynnpack'.
  # Only the speed and float rounding differ; GPUs and TPUs ignore it.
  config.mesh.cpu_convolutions = 'auto'

  config.distributed = ml_collections.ConfigDict()
  config.distributed.enabled = False  # Calls jax.distributed.initialize.
  config.distributed.coordinator_address = ''  # Empty: auto-detect.
  config.distributed.num_processes = 0
  config.distributed.process_id = -1

  config.variant = arg or ''  # main.py re-applies it after --method.
  if arg == 'smoke':
    config.data.max_train = 512
    config.data.max_test = 256
    config.model.width = 8
    config.train.epochs = 1
    config.train.batch_size = 32
    config.eval.batch_size = 128
    config.ssl.epochs = 1
    config.ssl.batch_size = 32
    augmentation.shrink(config.augmentation)
    shrink_method(config.method)
  elif arg:
    raise ValueError(f'unknown config variant {arg!r}; known: smoke')
  return config


def shrink_method(method: ml_collections.ConfigDict):
  """The smoke variant of a method section: one short epoch, small batches."""
  method.epochs = 1
  method.batch_size = 32


def parse_variants(arg: str | None, known: tuple[str, ...]) -> list[str]:
  """The comma-separated variants in `arg`, each checked against `known`."""
  variants = [v for v in (arg or '').split(',') if v]
  for variant in variants:
    if variant not in known:
      raise ValueError(f'unknown config variant {variant!r}; known: '
                       f'{", ".join(known)}')
  return variants


def use_capstone_recipe(method: ml_collections.ConfigDict):
  """The original project's `mu_main.py` defaults for its distillation runs.

  Two epochs at batch 256 with SGD (lr 0.005, momentum 0.9, weight decay
  5e-4) and temperature 1 (SEED.md), for Bad Teaching's and SCRUB's
  `capstone` variants.
  """
  method.variant = 'capstone'
  method.epochs = 2
  method.batch_size = 256
  method.optim.name = 'sgd'
  method.optim.lr = 0.005
  method.optim.momentum = 0.9
  method.optim.weight_decay = 5e-4
  method.temperature = 1.0
