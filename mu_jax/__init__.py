"""mu_jax: machine unlearning for image classifiers in JAX/Flax.

The library face (mu_jax/api.py), for a Flax classifier of your own:
  result = mu_jax.unlearn(model, variables, forget=(xf, yf),
                          retain=(xr, yr), val=(xv, yv), method='salun')
  mu_jax.evaluate(model, result.variables, forget=..., retain=..., test=...)
  mu_jax.save_variables(folder, result.variables)
  mu_jax.load_variables(folder, like=variables)
and `mu_jax.load(workdir)`, the unlearned model a CLI run saved,
`(flax module, variables)` (mu_jax/unlearned_model.py).
"""

__version__ = '0.1.0'

# pylint: disable=g-import-not-at-top
# Imported on first use, so that `import mu_jax` (e.g. for __version__)
# stays light.


def unlearn(model, variables, **kwargs):
  """Unlearns with a model of your own; see `mu_jax.api.unlearn`."""
  from mu_jax import api
  return api.unlearn(model, variables, **kwargs)


def evaluate(model, variables, **kwargs):
  """UA, RA, TA, MIA (and Avg. Gap); see `mu_jax.api.evaluate`."""
  from mu_jax import api
  return api.evaluate(model, variables, **kwargs)


def save_variables(directory: str, variables, meta=None) -> str:
  """See `mu_jax.unlearned_model.save_variables`."""
  from mu_jax import unlearned_model
  return unlearned_model.save_variables(directory, variables, meta)


def load_variables(directory: str, like):
  """See `mu_jax.unlearned_model.load_variables`."""
  from mu_jax import unlearned_model
  return unlearned_model.load_variables(directory, like)


def load(workdir: str, run: int | None = None):
  """The unlearned model of a finished run; see `unlearned_model.load`."""
  from mu_jax import unlearned_model
  return unlearned_model.load(workdir, run)
