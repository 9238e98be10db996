"""Package data: the embedded Fashion-MNIST subset read by `mu_jax.data`."""
