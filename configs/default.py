"""Default experiment: SalUn unlearning of a random 10% of the embedded
Fashion-MNIST subset with a small CNN, against original and retrained models.

Runs offline on 2 CPU cores in a few minutes. Variants (after the colon):
  configs/default.py:smoke   tiny data and model, for tests and CI.

This file also holds what every config file shares: the sections that are
no method's (`guard_section`, `ssl_section`, `augmentation_section`), the
common fields of a method section (`method_section`), a method's defaults
for a forgetting mode (`method_config`), the table of every method's
sections that each experiment config carries (`method_table`, as
`config.method_configs`) and the variant syntax (`parse_variants`). Each
method's own defaults live once, in configs/<method>.py:method(mode); the
table finds those files by themselves (`method_names`).

Config files are data: they import ml_collections, the standard library and
each other, never mu_jax, so that mu_jax reads them as plain values and
loading one imports no JAX. They know a method by its module name only:
mu_jax resolves aliases (the original CLI's 'salUN', 'RL') before it looks a
section up in the table. An unknown name or variant is a ValueError with a
one-line message, which mu_jax's CLI prints as its error.
"""

import copy
import importlib
import pkgutil
from typing import Callable, Iterable, Mapping

import ml_collections

# The variant every config file takes: tiny data, model and epochs.
SMOKE = 'smoke'
# The forgetting modes a method section can be made for.
MODES = ('random', 'class_wise')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the default config; `arg='smoke'` shrinks it to seconds."""
  variants = parse_variants(arg, (SMOKE,))
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds the split, initialisation, batch order and rngs.
  # The model cache (original, retrain, SimCLR, generators): '' =
  # $MU_JAX_CHECKPOINT_DIR, else the checkout's checkpoints/ (an absolute
  # path, whatever the current directory), else ~/.cache/mu_jax/checkpoints.
  # Folders are keyed by content (data, split, model, recipe, seed).
  config.checkpoint_dir = ''
  # Restoring checkpoints (mu_jax/checkpoint.py).
  config.checkpoint = ml_collections.ConfigDict()
  # Every saved step holds the SHA-256 of each array, checked on restore. A
  # step without them (its checksums/ deleted, or saved by an older mu_jax)
  # is refused, unless this is True: then it is restored unverified, with a
  # warning.
  config.checkpoint.allow_unverified = False
  # A folder holding a finished mu_jax checkpoint of the original model to use
  # instead of training one (e.g. checkpoints/<dataset>_<model>_all_s0-<key>).
  config.init_from = ''
  # True for the `smoke` variant: tiny data, model and epochs (tests, CI).
  # `--method` keeps a smoke config's method section small too.
  config.smoke = SMOKE in variants

  config.data = ml_collections.ConfigDict()
  config.data.name = 'fashion_mnist_subset'  # Embedded in mu_jax/datasets.
  config.data.source = 'embedded'  # embedded | tfds | idx | cifar | npz | auto
  config.data.path = ''  # Folder or file for idx / cifar / npz sources.
  config.data.tfds_data_dir = ''  # '' = TFDS's default folder.
  config.data.download = False  # TFDS may download only if True.
  config.data.max_train = 0  # >0 keeps the first N train images (tests).
  config.data.max_test = 0  # >0 keeps the first N test images (tests).

  config.split = ml_collections.ConfigDict()
  config.split.mode = 'random'  # random | class_wise (alias: classwise)
  config.split.forget_num = 0  # Random mode: forget set size; 0 = fraction.
  config.split.forget_fraction = 0.1  # Random mode, when forget_num is 0.
  config.split.forget_classes = (0,)  # Class-wise mode: classes to forget.
  # Class-wise mode: if > 0, the number of train images the forgotten
  # classes have (Unlearn-Saliency's --num_indexes_to_replace); mu_jax
  # forgets whole classes, so another number is an error.
  config.split.class_wise_count = 0
  config.split.saved_data_path = ''  # Folder to save / reload the split in.
  # Fraction of the test set (outside the forgotten classes) held out as a
  # validation set: the guard rails and the tuner select on it, and test
  # accuracy and the MIA never see it.
  config.split.val_fraction = 0.2

  config.model = ml_collections.ConfigDict()
  config.model.name = 'cnn'  # cnn | resnet8 | resnet20 | resnet18
  config.model.width = 32  # cnn only: channels of the first convolution.
  config.model.max_pool = False  # ResNets: the max-pool the original kept.
  # float32 | bfloat16: mixed precision (bfloat16 activations and matrix
  # products, float32 parameters and optimizer state); for GPUs and TPUs.
  # auto: bfloat16 on a GPU or TPU, float32 on a CPU (the paper configs,
  # configs/cifar10_resnet18.py). Checkpoint recipes and folder names
  # record the resolved dtype (mu_jax/models/backends.py).
  config.model.dtype = 'float32'
  # auto | cpu_tuned | standard: the CNN's convolution and max-pool. auto:
  # the CPU-tuned ones (mu_jax/models/conv.py, pooling.py) on a CPU, flax's
  # nn.Conv / nn.max_pool elsewhere. Same parameters and values either way,
  # so checkpoints are interchangeable; ResNets use flax's layers always.
  config.model.layers = 'auto'

  # The recipe of the original model and of retrain (the gold standard).
  config.train = ml_collections.ConfigDict()
  config.train.epochs = 15  # Passes over the training data.
  config.train.batch_size = 128  # Global batch, split over the devices.
  # Off by default: the original model should memorise its training set, as
  # a CIFAR ResNet-18 does, so that forgetting is measurable.
  config.train.augment = False  # Random crop and horizontal flip.
  config.train.crop_padding = 2  # Pixels of padding for the random crop.
  config.train.flip = True  # Random horizontal flip when augmenting.
  config.train.optim = optimizer_section(
      'sgd', lr=0.05, momentum=0.9, weight_decay=5e-4, schedule='cosine')

  # Every method's section for each forgetting mode, {mode: {name:
  # section}} (`method_table`: each method's defaults in
  # configs/<name>.py:method(mode); a config of other recipes brings its
  # own table, e.g. configs/cifar10_resnet18.py the papers'). `--method NAME`
  # and `--mode` take their section from here, and the tuner starts each
  # method from its own; a run's report.json keeps only the section used
  # (`config.method`), not the table.
  config.method_configs = method_table(smoke=config.smoke)
  # The unlearning method: its section for the forgetting mode, from the
  # table; `--method NAME` and `--mode` swap in the chosen method's section
  # for the chosen mode. SalUn: on the default data it reaches the guard
  # rails' target in its first attempt, as configured (fine-tuning, the
  # weakest baseline, stays short of it: exit status 3).
  config.method = pick(config, 'salun')

  # Oracle-free guard rails around every unlearning run (mu_jax/guard.py):
  # a two-sided forgetting target, rewinds, retries within a budget, and a
  # loud outcome (exit status 3) when the target is not met.
  config.guard = guard_section()

  # SimCLR pretraining and the self-supervised unlearning terms, used when
  # method.loss_weight > 0 (see mu_jax/self_supervised.py).
  config.ssl = ssl_section()

  # Forget-set augmentation, used when method.data_augment is simple, arpl
  # (extra forget samples) or opengan (generated features inside Bad
  # Teaching's and SCRUB's losses); see mu_jax/augmentation/.
  config.augmentation = augmentation_section()

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 512  # Global evaluation batch.
  # N >= 2: the NeurIPS 2023 challenge's forgetting quality from N retrained
  # and N unlearned models (mu_jax/forgetting_quality.py); 0 = off.
  config.eval.forgetting_quality_models = 0
  # The extra retrain models: auto (vmapped on GPU/TPU, one at a time on
  # CPU), always or never vmapped.
  config.eval.forgetting_quality_vmap = 'auto'

  config.mesh = ml_collections.ConfigDict()
  config.mesh.num_devices = 0  # 0 = all visible devices.
  # The kernels XLA's CPU backend runs convolutions with, set by main.py
  # before JAX starts: 'auto' (the faster for the model: Eigen for the cnn,
  # YNNPACK for the ResNets; docs/PERFORMANCE.md), 'eigen' or 'ynnpack'.
  # Only the speed and float rounding differ; GPUs and TPUs ignore it.
  config.mesh.cpu_convolutions = 'auto'

  # Several processes joined by jax.distributed (multi-host GPU / TPU).
  config.distributed = ml_collections.ConfigDict()
  config.distributed.enabled = False  # Calls jax.distributed.initialize.
  config.distributed.coordinator_address = ''  # host:port; '' = auto-detect.
  config.distributed.num_processes = 0  # 0 = auto-detect.
  config.distributed.process_id = -1  # -1 = auto-detect.
  # Seconds of silence after which the coordination service counts a process
  # as dead and fails the others' barriers (JAX's default: 100).
  config.distributed.heartbeat_timeout_seconds = 30

  if config.smoke:
    config.data.max_train = 512
    config.data.max_test = 256
    config.model.width = 8
    config.train.epochs = 1
    config.train.batch_size = 32
    config.eval.batch_size = 128
    config.ssl.epochs = 1
    config.ssl.batch_size = 32
    # 512 images and one epoch check the plumbing, not the forgetting: a
    # smoke run short of the target still prints NOT FORGOTTEN, but exits 0.
    config.guard.allow_unmet = True
    shrink_augmentation(config.augmentation)
  return config


def guard_section() -> ml_collections.ConfigDict:
  """`config.guard`: the guard rails' thresholds and budget (mu_jax/guard.py)."""
  config = ml_collections.ConfigDict()
  config.enabled = True  # False runs the method exactly as configured.
  # Checks per epoch in epochs of a single phase (plus the epoch's end);
  # epochs of several phases (e.g. SCRUB's max then min) are checked at
  # their end only, where the repair phase has run.
  config.checks_per_epoch = 2
  config.forget_samples = 500  # Forget-set subsample measured per check.
  config.retain_samples = 500  # Retain-set subsample measured per check.
  # Damage: points below the original's retain accuracy ...
  config.max_retain_drop = 10.0
  # ... or below its held-out (validation) accuracy ...
  config.max_val_drop = 2.0
  # ... by more than this many standard errors of the measured drop.
  config.noise_z = 1.0
  # Class-wise: forget accuracy (%) at or below which a class is forgotten.
  config.class_wise_target = 2.0
  # Random: forgotten while forget and held-out accuracy differ by at most
  # this many standard errors (two-sided; 2.576 = a 1 % error rate).
  config.target_z = 2.576
  # All attempts and checks together cost at most this fraction of the
  # retrain's optimizer steps (0 = no budget: max_attempts alone limits).
  config.budget = 0.25
  # ... or this many optimizer steps where that is more: on a small dataset
  # a quarter of a retrain is less than one attempt and its checks.
  config.min_budget_steps = 100
  config.max_attempts = 8  # Runs of the method, the first included.
  config.lr_factor = 2.0  # Step-size change between attempts.
  # An attempt of fewer optimizer steps that forgot too little is run again
  # twice as long (before its step size is raised).
  config.min_steps = 30
  # Checks are spaced so that they cost at most this share of an attempt's
  # optimizer steps (a check costs its forward passes; the last step of an
  # attempt is always checked).
  config.check_share = 0.25
  # True: a run that did not reach the target exits 0, not 3.
  config.allow_unmet = False
  return config


def ssl_section() -> ml_collections.ConfigDict:
  """`config.ssl`: the SimCLR pretraining recipe and the unlearning terms
  (mu_jax/self_supervised.py)."""
  config = ml_collections.ConfigDict()
  config.out_dim = 128  # Projection size.
  config.epochs = 10
  config.batch_size = 256
  config.temperature = 0.5  # NT-Xent temperature of pretraining.
  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'adam'  # SimCLR (sthalles): Adam 3e-4, wd 1e-4.
  config.optim.lr = 1e-3
  config.optim.weight_decay = 1e-4
  config.optim.schedule = 'cosine'
  config.optim.warmup_epochs = 1
  config.unlearn_temperature = 1.0  # `original` mode; the original used 1.
  return config


def augmentation_section() -> ml_collections.ConfigDict:
  """`config.augmentation`: one section per generator (mu_jax/augmentation/)."""
  config = ml_collections.ConfigDict()
  config.simple = simple_section()
  config.arpl = arpl_section()
  config.opengan = opengan_section()
  return config


def simple_section() -> ml_collections.ConfigDict:
  """Settings of the simple augmentation (config.augmentation.simple;
  mu_jax/augmentation/simple.py)."""
  config = ml_collections.ConfigDict()
  config.crop_padding = 2  # Random crop after zero padding, in pixels.
  config.flip = True  # Random left-right flip.
  config.jitter = 0.3  # Brightness / contrast (/ saturation, hue) strength.
  config.noise_std = 0.05  # Gaussian pixel noise, on the [0, 1] scale.
  config.batch_size = 256  # Images augmented per jitted call.
  return config


def arpl_section() -> ml_collections.ConfigDict:
  """Settings of ARPL training (config.augmentation.arpl;
  mu_jax/augmentation/arpl.py); the original's `arplood.py`'s."""
  config = ml_collections.ConfigDict()
  config.epochs = 3  # Original: 50 (a ResNet-34 on GPU); short on CPU.
  config.batch_size = 128
  config.lr = 1e-3  # Adam, classifier and reciprocal points (orig. 1e-4).
  config.gan_lr = 2e-4  # Adam(0.5, 0.999) for G and D.
  config.temp = 1.0
  config.weight_pl = 0.1
  config.beta = 0.1  # Weight of the entropy (confusing-sample) term.
  config.nz = 100  # Noise size.
  config.width = 32  # Classifier and GAN widths.
  config.feature_dim = 128
  config.label = 'predicted'  # predicted | random: labels of the fakes.
  return config


def opengan_section() -> ml_collections.ConfigDict:
  """Settings of the feature GAN (config.augmentation.opengan;
  mu_jax/augmentation/opengan.py).

  After the original's `openGan_main.py`.
  """
  config = ml_collections.ConfigDict()
  config.epochs = 300  # The original's checkpoint: epoch 300.
  config.batch_size = 128  # Clamped to the forget set's size.
  config.nz = 256  # Noise size of the original's checkpoint.
  config.lr_g = 1e-3  # Adam(0.5, 0.999); the original: lr_G = lr,
  config.lr_d = 5e-4  # lr_D = lr / 2.
  config.hidden_g = (512, 256, 128, 256)  # OpenGAN's GAN-fea widths.
  config.hidden_d = (512, 256, 128, 64)  # Its discriminator's widths.
  config.num_candidates = 100  # Generated features per forget sample.
  return config


def shrink_augmentation(config: ml_collections.ConfigDict):
  """The smoke variant of `augmentation_section()`: one short ARPL epoch, a
  tiny OpenGAN."""
  config.arpl.epochs = 1
  config.arpl.batch_size = 32
  config.arpl.width = 8
  config.arpl.feature_dim = 32
  config.opengan.epochs = 5
  config.opengan.nz = 16
  config.opengan.hidden_g = (32, 32)
  config.opengan.hidden_d = (32, 16)
  config.opengan.num_candidates = 8


def optimizer_section(name: str = 'sgd', *, lr: float, momentum: float = 0.9,
                      weight_decay: float = 5e-4, schedule: str = 'constant',
                      milestones: tuple[int, ...] = (), gamma: float = 0.1,
                      warmup_epochs: int = 0) -> ml_collections.ConfigDict:
  """An optimizer section, as mu_jax/optim.py reads it."""
  config = ml_collections.ConfigDict()
  config.name = name  # sgd | adam (L2 weight decay, as PyTorch).
  config.lr = lr  # Peak learning rate.
  config.momentum = momentum  # sgd only.
  config.weight_decay = weight_decay  # Added to the gradient (PyTorch's).
  config.schedule = schedule  # constant | cosine | multistep
  config.milestones = milestones  # Epochs, for multistep.
  config.gamma = gamma  # multistep: lr factor at each milestone.
  config.warmup_epochs = warmup_epochs  # Linear warm-up before the schedule.
  config.nesterov = False  # sgd only: Nesterov momentum.
  return config


def method_section(name: str, mode: str, *, epochs: int, lr: float,
                   batch_size: int = 128, optimizer: str = 'sgd',
                   momentum: float = 0.9,
                   weight_decay: float = 5e-4) -> ml_collections.ConfigDict:
  """The fields every method's section has; configs/<name>.py adds its own.

  Args:
    name: the method (a module of mu_jax/methods/).
    mode: the forgetting mode these settings were chosen for; main.py
      swaps in the other mode's section when the run's mode differs.
    epochs: unlearning epochs (what an epoch is depends on the method).
    lr: the optimizer's learning rate.
    batch_size: per split; a multiple of the device count.
    optimizer: sgd | adam.
    momentum: sgd's momentum.
    weight_decay: L2, added to the gradient as PyTorch does.
  """
  config = ml_collections.ConfigDict()
  config.name = name
  config.mode = mode  # The forgetting mode these defaults are for.
  config.variant = 'canonical'  # canonical | capstone (the original project).
  config.epochs = epochs
  config.batch_size = batch_size  # Per split; a multiple of the device count.
  config.forget_batch_size = 0  # 0 = batch_size.
  config.retain_batch_size = 0  # 0 = batch_size.
  config.augment = False  # Unlearning sees plain images, as the original did.
  config.loss_weight = 0.0  # Weight of a self-supervised term.
  config.supervised_mode = 'simple'  # simple | original
  # True reproduces the original project, which computed the term under
  # torch.no_grad(): it then changes the reported loss but not the update.
  config.ssl_no_grad = False
  config.data_augment = 'none'  # none | simple | opengan | arpl
  config.augment_num = 500  # Extra forget samples for data_augment.
  config.optim = optimizer_section(optimizer, lr=lr, momentum=momentum,
                                   weight_decay=weight_decay)
  return config


def method_names() -> list[str]:
  """The methods that have a config file: configs/<name>.py with `method`.

  Found by file, when asked (not when this file is imported: every method's
  config file imports this one), so that a new method's config file is all
  the table needs. The names are module names of mu_jax/methods/.
  """
  package = importlib.import_module('configs')
  names = []
  for info in pkgutil.iter_modules(package.__path__):
    module = importlib.import_module(f'configs.{info.name}')
    if callable(getattr(module, 'method', None)):
      names.append(info.name)
  return sorted(names)


def _defaults(name: str, mode: str) -> ml_collections.ConfigDict:
  """configs/<name>.py:method(mode), unchecked."""
  return importlib.import_module(f'configs.{name}').method(mode)


def _check_mode(mode: str):
  """Refuses a mode other than `MODES` ('classwise' is mu_jax's to resolve:
  `mu_jax.splits.canonical_mode`)."""
  if mode not in MODES:
    raise ValueError(f'unknown forgetting mode {mode!r}; choose one of '
                     f'{", ".join(MODES)}')


def method_config(name: str, mode: str = 'random', *,
                  smoke: bool = False) -> ml_collections.ConfigDict:
  """Method `name`'s default section for forgetting `mode`.

  Args:
    name: a method's module name (aliases are mu_jax's to resolve:
      `mu_jax.methods.canonical_name`).
    mode: 'random' or 'class_wise'.
    smoke: shrink it for the smoke variant.

  Returns:
    A fresh ConfigDict: configs/<name>.py:method(mode).

  Raises:
    ValueError: an unknown method or mode.
  """
  _check_mode(mode)
  names = method_names()
  if name not in names:
    raise ValueError(f'unknown method {name!r}: no configs/{name}.py defines '
                     f'method(mode); the methods are {", ".join(names)}')
  section = _defaults(name, mode)
  if smoke:
    shrink_method(section)
  return section


def method_table(smoke: bool = False, *,
                 section: Callable[[str, str], ml_collections.ConfigDict]
                 | None = None,
                 names: Iterable[str] | None = None
                 ) -> ml_collections.ConfigDict:
  """`config.method_configs`: every method's section for each mode.

  A config file of its own (one that does not build on `get_config`) adds
  the table with `config.method_configs = default.method_table()` to let
  `--method` and `--mode` pick a section, and the tuner start from one.

  Args:
    smoke: shrink every section for the smoke variant.
    section: `section(name, mode)` gives a fresh section; default: the
      method's defaults, configs/<name>.py:method(mode). A recipe table's
      (configs/cifar10_resnet18.py:paper_method) replaces them.
    names: the methods; default `method_names()`.

  Returns:
    {mode: {name: section}} for both modes, as a ConfigDict.
  """
  section = section or _defaults
  names = method_names() if names is None else list(names)
  table = ml_collections.ConfigDict()
  for mode in MODES:
    table[mode] = ml_collections.ConfigDict()
    for name in names:
      table[mode][name] = section(name, mode)
      if smoke:
        shrink_method(table[mode][name])
  return table


def pick(config: ml_collections.ConfigDict,
         name: str) -> ml_collections.ConfigDict:
  """Method `name`'s section for the config's mode from its table, a copy:
  what a config file installs as `config.method`.

  Raises:
    ValueError: the table has no such method.
  """
  sections = config.method_configs[config.split.mode]
  if name not in sections:
    raise ValueError(f'unknown method {name!r}; this config has sections for '
                     f'{", ".join(sections)}')
  return copy.deepcopy(sections[name])


def experiment(name: str, arg: str | None = None,
               extra: Mapping[str, Callable[[ml_collections.ConfigDict],
                                            None]] | None = None
               ) -> ml_collections.ConfigDict:
  """The default experiment running method `name`: configs/<name>.py's config.

  Args:
    name: the method.
    arg: comma-separated variants: 'smoke', 'class_wise' (forget class 0
      with the method's class-wise settings) and the keys of `extra`.
    extra: the method's own variants, each a function that edits the
      config in place (after the mode's section is installed).

  Returns:
    configs/default.py's config with `config.method` set.
  """
  extra = dict(extra or {})
  variants = parse_variants(arg, (SMOKE, 'class_wise', *extra))
  config = get_config(SMOKE if SMOKE in variants else None)
  if 'class_wise' in variants:
    config.split.mode = 'class_wise'
  config.method = pick(config, name)
  for variant in variants:
    if variant in extra:
      extra[variant](config)
  return config


def shrink_method(method: ml_collections.ConfigDict):
  """The smoke variant of a method section: one short epoch, small batches."""
  method.epochs = 1
  method.batch_size = 32
  method.forget_batch_size = 0  # = batch_size, within the tiny split.
  method.retain_batch_size = 0


def parse_variants(arg: str | None, known: tuple[str, ...]) -> list[str]:
  """The comma-separated variants in `arg`, each checked against `known`."""
  variants = [v for v in (arg or '').split(',') if v]
  for variant in variants:
    if variant not in known:
      raise ValueError(f'unknown config variant {variant!r}; known: '
                       f'{", ".join(known)}')
  return variants


def use_capstone_recipe(config: ml_collections.ConfigDict):
  """The original project's `mu_main.py` defaults for its distillation runs.

  Two epochs at batch 256 with SGD (lr 0.005, momentum 0.9, weight decay
  5e-4) and temperature 1 (the capstone's README and `mu/arg_parser.py`),
  for Bad Teaching's and SCRUB's `capstone` variants. Keeps a smoke
  config's small batches and single epoch.
  """
  method = config.method
  method.variant = 'capstone'
  method.optim = optimizer_section('sgd', lr=0.005, momentum=0.9,
                                   weight_decay=5e-4)
  method.temperature = 1.0
  if not config.smoke:
    method.epochs = 2
    method.batch_size = 256
