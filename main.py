"""Runs a mu_jax unlearning experiment.

  python main.py                                   # default experiment, offline
  python main.py --config configs/default.py --workdir runs/ft \
      --config.method.optim.lr=0.02
  python main.py --method retrain --mode random --lr 0.005 --epoches 2  # the
      # original project's command lines (mu_main.py) work as shortcuts.

Installed (`pip install -e .`), `mu-jax` takes the same flags from any
directory. Kept short on purpose: the flags live in mu_jax/cli.py, the logic
in mu_jax.pipeline.
"""

from mu_jax import cli

if __name__ == '__main__':
  cli.run()
