"""Retrain: the gold standard. A fresh model trained on the retain set only.

It uses the original model's training recipe (`config.train`): same epochs,
optimizer, schedule and augmentation, so that it differs from the original only
by never having seen the forget set. The driver also uses it, on the whole
train set, to pretrain the original model.
"""

import jax
import ml_collections

from mu_jax.methods import base


# What the rest of mu_jax knows of the method (`base.Card`).
CARD = base.Card(label='Retrain', unlearns=False)


def make(config: ml_collections.ConfigDict, ctx: base.Context) -> base.Method:
  """Returns the retrain method; `config.augment` enables crop and flip."""

  def prepare(rng, state):
    params, model_state = ctx.init_variables(rng)
    # Real copies of nothing: a fresh init shares no buffer with `state`.
    state = state.replace(params=params, model_state=model_state,
                          opt_state=state.tx.init(params),
                          step=jax.numpy.zeros_like(state.step))
    return state, ()

  return base.single_phase(base.supervised_update('retain'), ('retain',),
                           ctx.steps_per_epoch['retain'], prepare=prepare,
                           augment=config.get('augment', True))
