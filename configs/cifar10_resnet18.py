"""CIFAR-10 with ResNet-18 at the scale of the SalUn and Unlearn-Sparse papers.

  python main.py --config configs/cifar10_resnet18.py                 # FT
  python main.py --config configs/cifar10_resnet18.py:salun           # SalUn
  python main.py --config configs/cifar10_resnet18.py:scrub,class_wise
  python main.py --config configs/cifar10_resnet18.py:salun,guarded   # + guard
  python main.py --config configs/suite_cifar10_resnet18.py           # all

Made for a GPU: one model is 182 epochs of 50,000 images, about 92 hours on
a 2-core CPU (see README, "Benchmark suite"). On a GPU or TPU it trains in
mixed precision (bfloat16 activations, float32 weights), on a CPU in float32
(`config.model.dtype = 'auto'`; `--config.model.dtype=float32` for the
papers' float32 on an accelerator). Checkpoint folders carry the resolved
dtype (`..._resnet18_bf16_...`), so CPU and GPU runs never share one.

Original and retrain models: the training recipe of SalUn's
`Classification/main_train.py` (`TRAIN_RECIPE`): ResNet-18 with the 3x3
stride-1 stem and no max-pool, SGD lr 0.1, momentum 0.9, weight decay 5e-4,
batch 256, 182 epochs, lr x0.1 at epochs 91 and 136, random crop (padding 4)
and horizontal flip. The forget set is 10% of the 50,000 training images (the
papers hold out 5,000 for validation and forget 4,500 of 45,000).

Each unlearning method runs with its reference code's recipe for CIFAR-10 /
ResNet-18 (`RECIPES`), one complete table per method and forgetting mode:
every field of the method's `config.method` section is written here, none
comes from the method's CPU (Fashion-MNIST) defaults in
configs/<name>.py. docs/RECIPES.md gives the source of every value, the
decisions taken where a reference is silent, and what mu_jax cannot express
yet. The config carries the whole table as `config.method_configs`, so
`--method NAME` and `--mode` pick from it too.

The data is TFDS `cifar10` in array_record format
(`--config.data.tfds_data_dir`), or the python pickles with
`--config.data.source=cifar --config.data.path=DIR`.

The papers' protocol by default: each method runs exactly as its recipe
says, without mu_jax's guard rails (no paper rescaled a learning rate or
rewound a run), and test accuracy and the MIA use the whole CIFAR-10 test
set (no validation slice: `split.val_fraction = 0`). The 'guarded' variant
is the other protocol, reported as its own row: the guard rails on, with
the 20 % validation slice they select on taken out of the test set.

Variants (after the colon, comma-separated): a method name, 'class_wise'
(forget class 0 with the methods' class-wise recipes), 'guarded' and/or
'smoke'.
"""

import copy
from typing import Any, Mapping

import ml_collections

from configs import default

MODES = default.MODES

# config.train: SalUn `Classification/main_train.py` with the defaults of
# `Classification/arg_parser.py` (README: `--lr 0.1 --epochs 182`); the
# training loader augments (`dataset.py:cifar10_dataloaders`, train_transform).
TRAIN_RECIPE: Mapping[str, Any] = {
    'epochs': 182,
    'batch_size': 256,
    'augment': True,
    'crop_padding': 4,
    'flip': True,
    'optim': {
        'name': 'sgd',
        'lr': 0.1,
        'momentum': 0.9,
        'weight_decay': 5e-4,
        'nesterov': False,
        'schedule': 'multistep',
        'milestones': (91, 136),
        'gamma': 0.1,
        'warmup_epochs': 0,
    },
}

# Fine-tune. Unlearn-Sparse README, FT: `--unlearn_lr 0.01 --unlearn_epochs
# 10`; SGD momentum 0.9, weight decay 5e-4, batch 256 (arg_parser.py
# defaults, unlearn/impl.py); one retain pass per epoch (unlearn/FT.py); the
# retain loader crops and flips (dataset.py train_transform). MultiStepLR at
# 91, 136 never fires in 10 epochs: constant.
_FINETUNE = {
    'name': 'finetune',
    'variant': 'canonical',
    'epochs': 10,
    'batch_size': 256,
    'forget_batch_size': 0,  # = batch_size (one --batch_size for all loaders).
    'retain_batch_size': 0,
    'augment': True,
    'loss_weight': 0.0,  # mu_jax extensions, off in the reference.
    'supervised_mode': 'simple',
    'ssl_no_grad': False,
    'data_augment': 'none',
    'augment_num': 500,
    'optim': {
        'name': 'sgd',
        'lr': 0.01,
        'momentum': 0.9,
        'weight_decay': 5e-4,
        'nesterov': False,
        'schedule': 'constant',
        'milestones': (),
        'gamma': 0.1,
        'warmup_epochs': 0,
    },
}

# Random labels: SalUn's unlearn/RL.py (CIFAR-10 branch) without a mask, run
# by main_forget.py. Every epoch a forget pass with torch.randint labels,
# then a full retain pass; SGD momentum 0.9, weight decay 5e-4, batch 256;
# crop and flip. No published RL lr or epochs: SalUn's 10 epochs and lr 0.013
# (decision, docs/RECIPES.md).
_RANDOM_LABEL = {
    'name': 'random_label',
    'variant': 'canonical',
    'epochs': 10,
    'batch_size': 256,
    'forget_batch_size': 0,
    'retain_batch_size': 0,
    'augment': True,
    'loss_weight': 0.0,
    'supervised_mode': 'simple',
    'ssl_no_grad': False,
    'data_augment': 'none',
    'augment_num': 500,
    'loop': 'sequential',
    'different_label': False,  # torch.randint over all classes.
    'retain_weight': 1.0,
    'retain_steps': 0,  # 0 = a full retain pass.
    'optim': {
        'name': 'sgd',
        'lr': 0.013,
        'momentum': 0.9,
        'weight_decay': 5e-4,
        'nesterov': False,
        'schedule': 'constant',
        'milestones': (),
        'gamma': 0.1,
        'warmup_epochs': 0,
    },
}

# SalUn: README `main_random.py --unlearn RL --unlearn_epochs 10 --unlearn_lr
# 0.013 --num_indexes_to_replace 4500 --mask_path mask/with_0.5.pt`; the RL
# loop above with the top-50% saliency mask of generate_mask.py.
_SALUN = {
    'name': 'salun',
    'variant': 'canonical',
    'epochs': 10,
    'batch_size': 256,
    'forget_batch_size': 0,
    'retain_batch_size': 0,
    'augment': True,
    'loss_weight': 0.0,
    'supervised_mode': 'simple',
    'ssl_no_grad': False,
    'data_augment': 'none',
    'augment_num': 500,
    'loop': 'sequential',
    'different_label': False,
    'retain_weight': 1.0,
    'retain_steps': 0,
    'retain_fraction': 1.0,  # With retain_steps 0: a full retain pass.
    'mask_ratio': 0.5,
    'optim': {
        'name': 'sgd',
        'lr': 0.013,
        'momentum': 0.9,
        'weight_decay': 5e-4,
        'nesterov': False,
        'schedule': 'constant',
        'milestones': (),
        'gamma': 0.1,
        'warmup_epochs': 0,
    },
}

# Gradient ascent. Unlearn-Sparse README, GA: `--unlearn_lr 0.0001
# --unlearn_epochs 5`; SGD momentum 0.9, weight decay 5e-4, batch 256; one
# forget pass per epoch (unlearn/GA.py); crop and flip.
_NEGGRAD = {
    'name': 'neggrad',
    'variant': 'canonical',
    'epochs': 5,
    'batch_size': 256,
    'forget_batch_size': 0,
    'retain_batch_size': 0,
    'augment': True,
    'loss_weight': 0.0,
    'supervised_mode': 'simple',
    'ssl_no_grad': False,
    'data_augment': 'none',
    'augment_num': 500,
    'optim': {
        'name': 'sgd',
        'lr': 1e-4,
        'momentum': 0.9,
        'weight_decay': 5e-4,
        'nesterov': False,
        'schedule': 'constant',
        'milestones': (),
        'gamma': 0.1,
        'warmup_epochs': 0,
    },
}

# NegGrad+: SCRUB's MIA_experiments.ipynb (CIFAR-10, ResNet, cell 22:
# ng_alpha 0.9999, ng_epochs 5, ng_lr 0.01, retain_bs 32, forget_bs 16;
# cell 16: torch.optim.SGD(lr, weight_decay=0), i.e. no momentum); loops.py
# train_negrad. The reference's epoch is a retain pass with the forget loader
# cycled: 5 x ceil(45000 / 32) = 7035 steps; mu_jax's epoch is a forget pass
# (5000 // 16 = 312 steps), so 23 epochs (7176 steps) give the same number
# of steps and samples (decision, docs/RECIPES.md). No augmentation.
_NEGGRAD_PLUS = {
    'name': 'neggrad_plus',
    'variant': 'canonical',
    'epochs': 23,
    'batch_size': 32,
    'forget_batch_size': 16,
    'retain_batch_size': 32,
    'augment': False,
    'loss_weight': 0.0,
    'supervised_mode': 'simple',
    'ssl_no_grad': False,
    'data_augment': 'none',
    'augment_num': 500,
    'alpha': 0.9999,
    'optim': {
        'name': 'sgd',
        'lr': 0.01,
        'momentum': 0.0,
        'weight_decay': 0.0,
        'nesterov': False,
        'schedule': 'constant',
        'milestones': (),
        'gamma': 0.1,
        'warmup_epochs': 0,
    },
}

# Bad Teaching: vikram2000b/bad-teaching-unlearning,
# CIFARSuper20_Rocket_Unlearn.ipynb cells 6 and 15: Adam lr 1e-4 (no weight
# decay), 1 epoch, batch 256 of the shuffled forget set + a random 30% of the
# retain set, KL temperature 1; no crop or flip (dataset.py transforms).
# Here 64 forget + 192 retain samples per step (decision, docs/RECIPES.md).
_BAD_TEACHING = {
    'name': 'bad_teaching',
    'variant': 'canonical',
    'epochs': 1,
    'batch_size': 256,
    'forget_batch_size': 64,
    'retain_batch_size': 192,
    'augment': False,
    'loss_weight': 0.0,
    'supervised_mode': 'simple',
    'ssl_no_grad': False,
    'data_augment': 'none',
    'augment_num': 500,
    'temperature': 1.0,
    'retain_fraction': 0.3,
    'optim': {
        'name': 'adam',
        'lr': 1e-4,
        'momentum': 0.0,  # Unused by Adam.
        'weight_decay': 0.0,
        'nesterov': False,
        'schedule': 'constant',
        'milestones': (),
        'gamma': 0.1,
        'warmup_epochs': 0,
    },
}

# SCRUB, random (selective) forgetting: MIA_experiments.ipynb, the CIFAR-10
# ResNet run that forgets samples, not a class (cell 18 `scrub`: sgd, lr
# 5e-4, momentum 0.9, weight decay 5e-4, 5 epochs, msteps 3, kd_T 4, alpha
# 0.5, gamma 1, lr_decay_epochs [3, 5, 9] x0.1; cell 22: retain_bs 32,
# forget_bs 16). Every epoch is a full retain pass (loops.py train_distill).
_SCRUB_RANDOM = {
    'name': 'scrub',
    'variant': 'canonical',
    'epochs': 5,
    'batch_size': 32,
    'forget_batch_size': 16,
    'retain_batch_size': 32,
    'augment': False,
    'loss_weight': 0.0,
    'supervised_mode': 'simple',
    'ssl_no_grad': False,
    'data_augment': 'none',
    'augment_num': 500,
    'alpha': 0.5,
    'gamma': 1.0,
    'temperature': 4.0,
    'msteps': 3,
    'lr_decay_epochs': (3, 5, 9),
    'lr_decay_rate': 0.1,
    'retain_fraction': 1.0,
    'optim': {
        'name': 'sgd',
        'lr': 5e-4,
        'momentum': 0.9,
        'weight_decay': 5e-4,
        'nesterov': False,
        'schedule': 'constant',  # The decay is lr_decay_epochs'.
        'milestones': (),
        'gamma': 0.1,
        'warmup_epochs': 0,
    },
}

# SCRUB, class-wise: large_scale_unlearning.ipynb (CIFAR-10, whole class 5;
# cell 32: sgd, lr 5e-4, momentum 0.9, weight decay 5e-4, 3 epochs, msteps 2,
# kd_T 4, alpha 0.001, gamma 0.99, lr_decay_epochs [3, 5, 9] (no decay within
# 3 epochs); cell 28: forget loader batch 512, retain loader batch 256 (its
# sgda_batch_size 128 and del_batch_size 32 are never used). Full passes.
_SCRUB_CLASS_WISE = {
    'name': 'scrub',
    'variant': 'canonical',
    'epochs': 3,
    'batch_size': 256,
    'forget_batch_size': 512,
    'retain_batch_size': 256,
    'augment': False,
    'loss_weight': 0.0,
    'supervised_mode': 'simple',
    'ssl_no_grad': False,
    'data_augment': 'none',
    'augment_num': 500,
    'alpha': 0.001,
    'gamma': 0.99,
    'temperature': 4.0,
    'msteps': 2,
    'lr_decay_epochs': (3, 5, 9),
    'lr_decay_rate': 0.1,
    'retain_fraction': 1.0,
    'optim': {
        'name': 'sgd',
        'lr': 5e-4,
        'momentum': 0.9,
        'weight_decay': 5e-4,
        'nesterov': False,
        'schedule': 'constant',
        'milestones': (),
        'gamma': 0.1,
        'warmup_epochs': 0,
    },
}

# Retrain is trained with config.train (TRAIN_RECIPE), never with this
# section; it mirrors the recipe so that the section does not mislead.
_RETRAIN = {
    'name': 'retrain',
    'variant': 'canonical',
    'epochs': 182,
    'batch_size': 256,
    'forget_batch_size': 0,
    'retain_batch_size': 0,
    'augment': True,
    'loss_weight': 0.0,
    'supervised_mode': 'simple',
    'ssl_no_grad': False,
    'data_augment': 'none',
    'augment_num': 500,
    'optim': {
        'name': 'sgd',
        'lr': 0.1,
        'momentum': 0.9,
        'weight_decay': 5e-4,
        'nesterov': False,
        'schedule': 'multistep',
        'milestones': (91, 136),
        'gamma': 0.1,
        'warmup_epochs': 0,
    },
}

# Method -> mode -> its complete `config.method` section.
RECIPES: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    'finetune': {'random': _FINETUNE, 'class_wise': _FINETUNE},
    'random_label': {'random': _RANDOM_LABEL, 'class_wise': _RANDOM_LABEL},
    'salun': {'random': _SALUN, 'class_wise': _SALUN},
    'neggrad': {'random': _NEGGRAD, 'class_wise': _NEGGRAD},
    'neggrad_plus': {'random': _NEGGRAD_PLUS, 'class_wise': _NEGGRAD_PLUS},
    'bad_teaching': {'random': _BAD_TEACHING, 'class_wise': _BAD_TEACHING},
    'scrub': {'random': _SCRUB_RANDOM, 'class_wise': _SCRUB_CLASS_WISE},
    'retrain': {'random': _RETRAIN, 'class_wise': _RETRAIN},
}


def paper_method(name: str, mode: str = 'random') -> ml_collections.ConfigDict:
  """Method `name`'s `config.method` section for forgetting `mode`.

  Built from `RECIPES` alone (a fresh copy every call), never from the
  method's CPU defaults; `mode` is also recorded in the section's `mode`
  field.

  Args:
    name: a method's module name (e.g. 'salun', 'neggrad'; mu_jax resolves
      aliases such as 'GA' or 'RL' before it asks).
    mode: 'random' or 'class_wise'.

  Raises:
    ValueError: for an unknown mode, or a method without a recipe here.
  """
  if mode not in MODES:
    raise ValueError(f'unknown forgetting mode {mode!r}; choose one of '
                     f'{", ".join(MODES)}')
  if name not in RECIPES:
    raise ValueError(
        f'method {name!r} has no paper recipe in configs/cifar10_resnet18.py '
        f'(known: {", ".join(sorted(RECIPES))}); a method of mu_jax/methods '
        'needs its complete table there and in docs/RECIPES.md')
  section = ml_collections.ConfigDict(
      copy.deepcopy(dict(RECIPES[name][mode])))
  # The mode the section was made for: main.py replaces a section whose
  # mode is not the run's by this table's section for that mode.
  section.mode = mode
  return section


# The variant that runs the guard rails (and holds out their validation
# slice) around the papers' recipes.
_GUARDED = 'guarded'


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; `arg`: a method name, 'class_wise', 'guarded',
  'smoke' (comma-separated)."""
  variants = [v for v in (arg or '').split(',') if v]
  smoke = 'smoke' in variants
  mode = 'class_wise' if 'class_wise' in variants else 'random'
  names = [v for v in variants
           if v not in ('smoke', 'class_wise', _GUARDED)]
  if len(names) > 1:
    raise ValueError(f'config variants name more than one method: {names}')
  config = default.get_config('smoke' if smoke else None)
  config.data.name = 'cifar10'
  config.data.source = 'tfds'
  config.model.name = 'resnet18'
  config.model.max_pool = False  # SalUn's CIFAR ResNet: maxpool = Identity.
  # Mixed precision (bfloat16, float32 master weights) on a GPU or TPU,
  # float32 on a CPU; checkpoints record the resolved dtype.
  config.model.dtype = 'auto'
  config.train = ml_collections.ConfigDict(copy.deepcopy(dict(TRAIN_RECIPE)))
  config.split.mode = mode
  config.split.forget_num = 0
  config.split.forget_fraction = 0.1
  config.split.forget_classes = (0,)
  # The papers' protocol: the method as its recipe says, TA on the whole
  # test set; 'guarded' adds the guard rails and their validation slice.
  guarded = _GUARDED in variants
  config.guard.enabled = guarded
  config.split.val_fraction = 0.2 if guarded else 0.0
  config.eval.batch_size = 1024
  # The recipe table replaces the methods' CPU defaults: `--method` and
  # `--mode` pick from it, as the variants do.
  config.method_configs = default.method_table(
      smoke=smoke, section=paper_method, names=sorted(RECIPES))
  config.method = default.pick(config, names[0] if names else 'finetune')
  if smoke:  # Tiny, for tests: the data must still be prepared.
    config.train.epochs = 1
    config.train.batch_size = 32
    config.train.optim.milestones = ()
    config.eval.batch_size = 128
  return config
