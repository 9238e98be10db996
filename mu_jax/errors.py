"""The exceptions that mean bad input, reported as one line by the CLI.

Every error a user can cause (a bad flag, missing or corrupt data, a split
that cannot be made, a checkpoint of another recipe, a diverging run) is a
`MuJaxError`, raised with an actionable one-line message; `mu_jax.cli`
prints it as `mu_jax: error: ...` and exits with status 2. Anything else is
a bug and keeps its traceback. Each area subclasses it where it raises
(`data.DataError`, `splits.SplitError`, `checkpoint.CheckpointError`,
`train.TrainingError`); this module imports nothing of mu_jax, so every
module can use it.
"""


class MuJaxError(Exception):
  """Bad input or a run that cannot succeed as configured; one line."""


class ConfigError(MuJaxError, ValueError):
  """The configuration asks for something impossible or not built."""
