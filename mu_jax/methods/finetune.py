"""Fine-tune (FT): continue training the original model on the retain set.

The simplest baseline of the unlearning literature (SalUn, Unlearn-Sparse):
forgetting comes only from catastrophic forgetting of the unseen forget set.
"""

import ml_collections

from mu_jax.methods import base


# What the rest of mu_jax knows of the method (`base.Card`).
CARD = base.Card(label='FT', aliases=('ft', 'fine_tune'), order=0)


def make(config: ml_collections.ConfigDict, ctx: base.Context) -> base.Method:
  """Returns fine-tuning; `config.augment` enables crop and flip."""
  return base.single_phase(base.supervised_update('retain'), ('retain',),
                           ctx.steps_per_epoch['retain'],
                           augment=config.get('augment', False))
