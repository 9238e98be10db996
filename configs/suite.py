"""The benchmark suite on the default experiment: every method, random and
class-wise forgetting, 3 seeds, on the embedded Fashion-MNIST subset.

  python main.py --config configs/suite.py --workdir runs/suite
  python main.py --config configs/suite.py \
      --config.suite.methods=finetune,salun --config.suite.seeds=5
  python main.py --config configs/suite.py \
      --config.suite.method_configs.random.salun.optim.lr=0.02
  python main.py --config configs/suite.py:smoke   # seconds; tests and CI

Everything outside `config.suite` is the experiment of configs/default.py
(data, model, training recipe of the original and retrain models, split
sizes). `config.method` is not used by the suite; each method runs with its
section in `config.suite.method_configs.<mode>`: the experiment's table
(`config.method_configs`), here configs/<name>.py's defaults for that mode
(e.g. a smaller step size for gradient ascent class-wise).
"""

import copy

import ml_collections

from configs import default


def method_sections(
    config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Each method's `config.method` section per forgetting mode, for the suite.

  A copy of the experiment's table (`config.method_configs`,
  configs/default.py:method_table) without retrain, whose row comes from the
  training recipe.

  Returns:
    {'random': {name: section}, 'class_wise': {name: section}}.
  """
  sections = ml_collections.ConfigDict()
  for mode, table in config.method_configs.items():
    sections[mode] = ml_collections.ConfigDict()
    for name, section in table.items():
      if name != 'retrain':
        sections[mode][name] = copy.deepcopy(section)
  return sections


def add_suite(config: ml_collections.ConfigDict, variant: str = ''):
  """Adds the `suite` section to an experiment config (in place).

  Args:
    config: an experiment config (configs/default.py and the like), whose
      table of method sections (`config.method_configs`) the suite runs.
    variant: '' or 'smoke'.
  """
  config.suite = ml_collections.ConfigDict()
  # Comma-separated method names; '' = every method in mu_jax/methods/
  # except retrain, whose row (the gold standard) is always there.
  config.suite.methods = ''
  # Class-wise mode forgets config.split.forget_classes.
  config.suite.modes = 'random,class_wise'
  config.suite.seeds = 3  # Seeds config.seed, config.seed + 1, ...
  # Train the seeds' original and retrain models together in one vmapped
  # program per kind (mu_jax/multiseed.py) instead of one after the other.
  # Off here: on a 2-core CPU, XLA computes the vmapped (grouped)
  # convolutions of this CNN densely and it runs 2x slower; it is 2x faster
  # for the smoke-sized CNN, and GPUs run grouped convolutions natively
  # (tools/bench_multiseed.py measures it; README, "Benchmark suite").
  config.suite.multiseed = False
  # 'config': each method as `config.guard` says (on by default); 'both':
  # each method guarded and unguarded, side by side (rows `<method>` and
  # `<method>-unguarded`), the guard's share of the run time in its column.
  config.suite.guard = 'config'
  config.suite.retry_failed = True  # A rerun retries failed cells.
  # Comma-separated models whose finished cells are run again. Cells are
  # keyed by settings, not code: after changing a method's code (not its
  # config), name it here.
  config.suite.rerun = ''
  # Only write report.json, results.md and plots from the finished cells
  # (e.g. of a stopped suite); nothing is trained or run.
  config.suite.report_only = False
  config.suite.plots = True
  config.suite.curve_samples = 500  # Forget / retain samples per curve point.
  # N >= 2: each method's forgetting quality (the NeurIPS 2023 challenge's F
  # and score) from N unlearned and N retrained models per seed
  # (mu_jax/forgetting_quality.py); 0 = off.
  config.suite.forgetting_quality_models = 0
  config.suite.cka_samples = 500  # Forget samples for the CKA.
  config.suite.tsne_samples = 300  # Forget and retain samples, first seed.
  config.suite.tsne_iterations = 1000  # t-SNE optimisation steps (>= 250).
  config.suite.method_configs = method_sections(config)
  if variant == default.SMOKE:
    config.suite.seeds = 2
    config.suite.multiseed = True
    config.suite.curve_samples = 64
    config.suite.cka_samples = 64
    config.suite.tsne_samples = 40
    config.suite.tsne_iterations = 250


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the suite config; `arg` is '' or 'smoke'."""
  config = default.get_config(arg)
  add_suite(config, arg or '')
  return config
