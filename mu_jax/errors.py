"""The exceptions that mean bad input, reported as one line by main.py.

Each is raised with an actionable message; anything else is a bug and keeps
its traceback.
"""

from mu_jax import checkpoint
from mu_jax import data
from mu_jax import pipeline
from mu_jax import splits
from mu_jax import train

USER_ERRORS = (ValueError, data.DataError, splits.SplitError,
               train.TrainingError, checkpoint.CheckpointError,
               pipeline.ConfigError, FileNotFoundError)
