"""mu_jax: machine unlearning for image classifiers in JAX/Flax.

`mu_jax.load(workdir)` returns the unlearned model a run saved,
`(flax module, variables)` (mu_jax/unlearned_model.py).
"""

__version__ = '0.1.0'


def load(workdir: str, run: int | None = None):
  """The unlearned model of a finished run; see `unlearned_model.load`."""
  from mu_jax import unlearned_model  # pylint: disable=g-import-not-at-top
  return unlearned_model.load(workdir, run)
