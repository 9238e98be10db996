"""`--data_augment opengan`: forget-like features from a feature-level GAN.

The original project (kklusd/Unlearning: `openGan_main.py`,
`OpenGAN/network.py`)
repurposed OpenGAN's "GAN-fea" (Kong and Ramanan, "OpenGAN: Open-Set
Recognition via Open Data Generation", ICCV 2021): a generator and a
discriminator of 1x1 convolutions (dense layers here, `mu_jax.models.gan`)
trained with BCE on the original model's penultimate features of the forget
set, real features labelled 1 and generated ones 0; Adam with beta1 0.5.

It adds no samples to the forget set. During Bad Teaching and SCRUB each
forget sample's real feature (the competent teacher's) is replaced by the
most similar (cosine) of `num_candidates` generated features, and a teacher's
classifier head alone on that feature gives a second KL target for the
student's logits on the real image (its `mu/bad_teaching.py`, `mu/Scrub.py`):

* Bad Teaching: the incompetent teacher's head; the loss is the mean of the
  usual Bad Teaching KL and the same KL with the generated target for forget
  samples (retain samples keep the competent target).
* SCRUB: the competent teacher's head; the forget KL is the mean of the KL
  to the teacher's logits and to the head's logits on the generated feature.

`FeatureHook` is that interface: the pipeline trains (or reloads) the GAN
and passes a hook in `Context.feature_augment`; a method puts `hook.init()`
into its method state and calls `hook.logits(...)` inside its update.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mu_jax import checkpoint as checkpoint_lib
from mu_jax import host_batches
from mu_jax import models
from mu_jax import optim
from mu_jax import parallel
from mu_jax import state as state_lib
from mu_jax import train
from mu_jax.methods import base
from mu_jax.models import gan

PyTree = Any


def _generator(config, feature_dim: int) -> gan.FeatureGenerator:
  return gan.FeatureGenerator(feature_dim, tuple(config.hidden_g))


def _discriminator(config) -> gan.FeatureDiscriminator:
  return gan.FeatureDiscriminator(tuple(config.hidden_d))


def init_params(config, feature_dim: int, rng: jax.Array) -> dict:
  """Fresh `{'G', 'D'}` parameters for features of size `feature_dim`."""
  g_rng, d_rng = jax.random.split(rng)
  return {
      'G': _generator(config, feature_dim).init(
          g_rng, jnp.zeros((1, config.nz)))['params'],
      'D': _discriminator(config).init(
          d_rng, jnp.zeros((1, feature_dim)))['params'],
  }


def _optimizers(config) -> dict[str, optax.GradientTransformation]:
  # Each network has its own Adam, with DCGAN's beta1 = 0.5.
  return {'G': optax.adam(config.lr_g, b1=0.5, b2=0.999),
          'D': optax.adam(config.lr_d, b1=0.5, b2=0.999)}


def new_state(config, feature_dim: int, rng: jax.Array) -> state_lib.TrainState:
  """The GAN as one TrainState: params {'G', 'D'}, an optimizer per network."""
  params = init_params(config, feature_dim, rng)
  tx = optim.per_part(_optimizers(config))
  return state_lib.TrainState(
      step=jnp.zeros((), jnp.int32), params=params, model_state={},
      opt_state=tx.init(params),
      apply_fn=_generator(config, feature_dim).apply, tx=tx)


def _bce(logits: jax.Array, target: float) -> jax.Array:
  """Mean BCE of sigmoid(logits) against a constant label."""
  return optax.sigmoid_binary_cross_entropy(
      logits, jnp.full_like(logits, target)).mean()


def method(config, feature_dim: int, steps_per_epoch: int) -> base.Method:
  """The GAN's training as a driver method over the split 'features'.

  Each step takes a batch of real features (`batch['feature']`), draws as
  many noise vectors, makes a discriminator step (real -> 1, fakes -> 0),
  then a generator step that makes the updated discriminator call its fakes
  1, each with its own optimizer (`new_state`).
  """
  generator = _generator(config, feature_dim)
  discriminator = _discriminator(config)
  txs = _optimizers(config)

  def update(state, method_state, batches, rng):
    real = batches['features']['feature']
    params, opt_state = state.params, state.opt_state
    z = jax.random.normal(rng, (real.shape[0], config.nz))
    fake = jax.lax.stop_gradient(generator.apply({'params': params['G']}, z))

    def d_loss_fn(d_params):
      d = lambda x: discriminator.apply({'params': d_params}, x)
      return _bce(d(real), 1.0) + _bce(d(fake), 0.0)

    d_loss, d_grads = jax.value_and_grad(d_loss_fn)(params['D'])
    d_params, d_opt = optim.step_part(txs['D'], d_grads, opt_state['D'],
                                      params['D'])

    def g_loss_fn(g_params):
      fake = generator.apply({'params': g_params}, z)
      return _bce(discriminator.apply({'params': d_params}, fake), 1.0)

    g_loss, g_grads = jax.value_and_grad(g_loss_fn)(params['G'])
    g_params, g_opt = optim.step_part(txs['G'], g_grads, opt_state['G'],
                                      params['G'])
    state = state.replace(step=state.step + 1,
                          params={'G': g_params, 'D': d_params},
                          opt_state={'G': g_opt, 'D': d_opt})
    return state, method_state, {'loss_D': d_loss, 'loss_G': g_loss}

  return base.single_phase(update, ('features',), steps_per_epoch)


def train_or_restore(config, features: np.ndarray, seed: int, directory: str,
                     recipe: dict, mesh) -> tuple[dict, dict]:
  """Trains the GAN into `directory`, or reuses (or resumes) it there.

  Args:
    config: config.augmentation.opengan (configs/default.py).
    features: float [N, D], the original model's forget-set features.
    seed: seeds the initialisation, batch order and noise.
    directory: the checkpoint folder.
    recipe: what the weights depend on (JSON types); a checkpoint made with
      another recipe is refused.
    mesh: the device mesh the driver trains on.

  Returns:
    (params {'G', 'D'}, info) with info = {'seconds', 'reused',
    'checkpoint', 'history'}; 'seconds' is the training time (of the run
    that trained it).
  """
  n, feature_dim = features.shape
  batch = parallel.fit_batch_size(int(config.batch_size), n, mesh)
  template = jax.device_put(new_state(config, feature_dim,
                                      jax.random.key(seed)),
                            parallel.replicated(mesh))
  data = {'features': {'feature': features.astype(np.float32),
                       'label': np.zeros(n, np.int32)}}
  state, info = checkpoint_lib.train_or_reuse(
      directory, {**recipe, 'format': 2}, 'an OpenGAN generator', template,
      lambda checkpointer: train.run(
          method(config, feature_dim, n // batch), template, data,
          epochs=int(config.epochs), batch_size={'features': batch},
          seed=seed, prep=host_batches.Preprocessing((0.0,), (1.0,)),
          mesh=mesh, desc='train opengan', checkpointer=checkpointer,
          checkpoint_meta={'recipe': {**recipe, 'format': 2}}))
  return state.params, info


def most_similar(real: jax.Array, candidates: jax.Array) -> jax.Array:
  """For each real feature, the candidate with the highest cosine similarity.

  Args:
    real: float [B, D].
    candidates: float [B, K, D], K candidates per real feature.

  Returns:
    float [B, D], `candidates[i, argmax_k cos(real_i, candidates[i, k])]`.
  """
  def unit(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  similarity = jnp.einsum('bd,bkd->bk', unit(real), unit(candidates))
  best = jnp.argmax(similarity, axis=-1)
  return jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0]


class FeatureHook(NamedTuple):
  """The trained generator, as methods use it (`Context.feature_augment`).

  Attributes:
    params: the generator's parameters; `init()` copies them into the method
      state, so that they are placed and donated like the teachers.
    feature_dim: size of the penultimate features.
    nz: noise size.
    num_candidates: generated features per real one (K).
    hidden: the generator's hidden widths.
  """
  params: PyTree
  feature_dim: int
  nz: int
  num_candidates: int
  hidden: tuple[int, ...]

  def init(self) -> PyTree:
    """The method-state entry (a real copy: the driver donates buffers)."""
    return jax.tree.map(jnp.array, self.params)

  def substitute(self, g_params, real: jax.Array, rng: jax.Array):
    """Each real feature [B, D] -> the most similar of K generated ones."""
    generator = gan.FeatureGenerator(self.feature_dim, self.hidden)
    batch = real.shape[0]
    z = jax.random.normal(rng, (batch * self.num_candidates, self.nz))
    fake = generator.apply({'params': g_params}, z)
    return most_similar(real, fake.reshape(batch, self.num_candidates, -1))

  def logits(self, g_params, teacher_params, real: jax.Array,
             rng: jax.Array) -> jax.Array:
    """A teacher's head on the generated substitutes of `real` features.

    Args:
      g_params: `method_state[...]` made by `init()`.
      teacher_params: the teacher model's 'params' (only its classifier head
        is used, `mu_jax.models.classifier_head`).
      real: float [B, D], the competent teacher's features of the samples.
      rng: noise key.

    Returns:
      float [B, classes], constant (no gradient): a KL target.
    """
    fake = self.substitute(g_params, jax.lax.stop_gradient(real), rng)
    return jax.lax.stop_gradient(models.classifier_head(teacher_params, fake))


def make_hook(config, params: dict, feature_dim: int) -> FeatureHook:
  """The hook for a trained generator (`params['G']`)."""
  return FeatureHook(params=params['G'], feature_dim=int(feature_dim),
                     nz=int(config.nz),
                     num_candidates=int(config.num_candidates),
                     hidden=tuple(int(h) for h in config.hidden_g))

