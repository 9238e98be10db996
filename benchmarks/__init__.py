"""Speed benchmarks of mu_jax against a plain PyTorch reference.

  python -m benchmarks.run                  # CNN step + every method's RTE
  python -m benchmarks.run --help           # model, batch, shape, repeats...
  python -m benchmarks.profile_step         # the CNN step's XLA op profile

`mu_jax_side` measures mu_jax through its public driver (`train.run`,
`unlearning.unlearn`); `torch_reference` runs the same models and unlearning
loops written the straightforward PyTorch way; `run` alternates the two and
writes JSON plus a table; `profile_step` lists the XLA operations a train
step spends its time in (docs/PERFORMANCE.md).
"""
