"""Experiment configs: ml_collections files for `--config configs/NAME.py`.

Installed with mu_jax as the top-level package `configs` (pyproject.toml), so
that `from configs import default`, which every config file does, works
outside the checkout, and `--config configs/NAME.py[:VARIANT]` is found from
any directory (mu_jax/cli.py).
"""
