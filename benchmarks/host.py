"""Host set-up shared by the benchmark scripts, with its one flag.

Defined once so that the scripts (run, profile_step, conv_kernels) can be
imported together, as absl flags may only be defined once per process.
"""

from absl import flags

CPU_CONVOLUTIONS = flags.DEFINE_enum(
    'cpu_convolutions', 'auto', ['auto', 'eigen', 'ynnpack'],
    "XLA's CPU convolution kernels (configs/default.py: mesh."
    'cpu_convolutions); auto: the faster for the model measured, as in '
    'main.py.')


def configure(model_name: str, cpu_devices: int, cache_dir: str) -> str:
  """`parallel.configure_host` with --cpu_convolutions; returns the choice.

  Call before any JAX computation.
  """
  from mu_jax import parallel  # pylint: disable=g-import-not-at-top
  choice = parallel.cpu_convolutions_for(model_name, CPU_CONVOLUTIONS.value)
  parallel.configure_host(cpu_devices, cache_dir=cache_dir,
                          cpu_convolutions=choice)
  return choice
