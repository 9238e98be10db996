"""mu_jax: machine unlearning for image classifiers in JAX/Flax."""

__version__ = '0.1.0'
