"""Test set-up: 4 fake CPU devices, so data-parallel code runs on CPU."""

import os

# Must run before JAX creates its backend; pytest imports conftest first.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # pylint: disable=g-import-not-at-top

jax.config.update('jax_num_cpu_devices', 4)
