"""`--data_augment opengan`: forget-like features from a feature-level GAN.

The original project (SEED.md 8.3; `openGan_main.py`, `OpenGAN/network.py`)
repurposed OpenGAN's "GAN-fea" (Kong and Ramanan, "OpenGAN: Open-Set
Recognition via Open Data Generation", ICCV 2021): a generator and a
discriminator of 1x1 convolutions (dense layers here, `mu_jax.models.gan`)
trained with BCE on the original model's penultimate features of the forget
set, real features labelled 1 and generated ones 0; Adam with beta1 0.5.

It adds no samples to the forget set. During Bad Teaching and SCRUB each
forget sample's real feature (the competent teacher's) is replaced by the
most similar (cosine) of `num_candidates` generated features, and a teacher's
classifier head alone on that feature gives a second KL target for the
student's logits on the real image (SEED.md 6.4, 6.5):

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
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging

from mu_jax import checkpoint as checkpoint_lib
from mu_jax import models
from mu_jax.models import gan

PyTree = Any


def opengan_config() -> ml_collections.ConfigDict:
  """Settings of the feature GAN (config.augmentation.opengan); SEED.md 8.3."""
  config = ml_collections.ConfigDict()
  config.epochs = 300  # The original's checkpoint: epoch 300.
  config.batch_size = 128  # Clamped to the forget set's size.
  config.nz = 256  # Noise size of the original's checkpoint.
  config.lr_g = 1e-3  # Adam(0.5, 0.999); the original: lr_G = lr,
  config.lr_d = 5e-4  # lr_D = lr / 2.
  config.hidden_g = (512, 256, 128, 256)  # OpenGAN's GAN-fea widths.
  config.hidden_d = (512, 256, 128, 64)  # Its discriminator's widths.
  config.num_candidates = 100  # Generated features per forget sample.
  config.log_every = 50  # Epochs between logged losses.
  return config


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


def _optimizers(config):
  # Each network has its own Adam, with DCGAN's beta1 = 0.5.
  return (optax.adam(config.lr_g, b1=0.5, b2=0.999),
          optax.adam(config.lr_d, b1=0.5, b2=0.999))


def init_opt_state(config, params: dict) -> dict:
  g_tx, d_tx = _optimizers(config)
  return {'G': g_tx.init(params['G']), 'D': d_tx.init(params['D'])}


def _bce(logits: jax.Array, target: float) -> jax.Array:
  """Mean BCE of sigmoid(logits) against a constant label."""
  return optax.sigmoid_binary_cross_entropy(
      logits, jnp.full_like(logits, target)).mean()


def make_train_step(config, feature_dim: int):
  """One jitted GAN step: a discriminator step, then a generator step.

  Returns:
    `step(params, opt_state, real [B, D], rng) -> (params, opt_state,
    {'loss_D', 'loss_G'})`; D sees `real` as 1 and fresh fakes as 0, then G
    is updated to make the updated D call its fakes 1.
  """
  generator = _generator(config, feature_dim)
  discriminator = _discriminator(config)
  g_tx, d_tx = _optimizers(config)

  def step(params, opt_state, real, rng):
    z = jax.random.normal(rng, (real.shape[0], config.nz))
    fake = jax.lax.stop_gradient(
        generator.apply({'params': params['G']}, z))

    def d_loss_fn(d_params):
      d = lambda x: discriminator.apply({'params': d_params}, x)
      return _bce(d(real), 1.0) + _bce(d(fake), 0.0)

    d_loss, d_grads = jax.value_and_grad(d_loss_fn)(params['D'])
    d_updates, d_opt = d_tx.update(d_grads, opt_state['D'], params['D'])
    d_params = optax.apply_updates(params['D'], d_updates)

    def g_loss_fn(g_params):
      fake = generator.apply({'params': g_params}, z)
      return _bce(discriminator.apply({'params': d_params}, fake), 1.0)

    g_loss, g_grads = jax.value_and_grad(g_loss_fn)(params['G'])
    g_updates, g_opt = g_tx.update(g_grads, opt_state['G'], params['G'])
    g_params = optax.apply_updates(params['G'], g_updates)
    return ({'G': g_params, 'D': d_params}, {'G': g_opt, 'D': d_opt},
            {'loss_D': d_loss, 'loss_G': g_loss})

  return jax.jit(step)


def train(config, features: np.ndarray, seed: int) -> tuple[dict, list]:
  """Trains the GAN on `features` [N, D]; returns (params, history).

  history holds the mean losses of every `config.log_every`-th epoch (and
  the last one), which are also logged.
  """
  n, feature_dim = features.shape
  rng = jax.random.key(seed)
  init_rng, loop_rng = jax.random.split(rng)
  params = init_params(config, feature_dim, init_rng)
  opt_state = init_opt_state(config, params)
  step = make_train_step(config, feature_dim)
  batch = min(int(config.batch_size), n)
  steps = n // batch
  order_rng = np.random.default_rng(seed)
  history = []
  with tqdm.tqdm(total=steps * config.epochs, desc='train opengan',
                 unit='step', mininterval=2.0) as bar:
    for epoch in range(config.epochs):
      order = order_rng.permutation(n)
      sums = {}
      for i in range(steps):
        real = jnp.asarray(features[order[i * batch:(i + 1) * batch]])
        params, opt_state, metrics = step(
            params, opt_state, real,
            jax.random.fold_in(loop_rng, epoch * steps + i))
        sums = {k: sums.get(k, 0.0) + v for k, v in metrics.items()}
        bar.update(1)
      if (epoch + 1) % config.log_every == 0 or epoch + 1 == config.epochs:
        row = {'epoch': epoch + 1,
               **{k: float(v) / steps for k, v in sums.items()}}
        logging.info('opengan epoch %d: loss_D %.4f, loss_G %.4f', epoch + 1,
                     row['loss_D'], row['loss_G'])
        bar.set_postfix(loss_D=f"{row['loss_D']:.3g}",
                        loss_G=f"{row['loss_G']:.3g}", refresh=False)
        history.append(row)
  return params, history


def train_or_restore(config, features: np.ndarray, seed: int, directory: str,
                     recipe: dict) -> tuple[dict, dict]:
  """Trains the GAN into `directory` (Orbax), or reuses a finished one there.

  Args:
    config: `opengan_config()`.
    features: float [N, D], the original model's forget-set features.
    seed: seeds the initialisation, batch order and noise.
    directory: the checkpoint folder.
    recipe: what the weights depend on (JSON types); a checkpoint made with
      another recipe is refused.

  Returns:
    (params, info) with info = {'seconds', 'reused', 'checkpoint',
    'history'}; 'seconds' is the training time (of the run that trained it).
  """
  return checkpoint_lib.train_or_reuse(
      directory, recipe, 'an OpenGAN generator',
      template=lambda: init_params(config, features.shape[1],
                                   jax.random.key(seed)),
      train=lambda: train(config, features, seed), step=int(config.epochs))


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

