"""`--data_augment arpl`: confusing samples from an ARPL generator.

ARPL (Chen et al., 2021, "Adversarial Reciprocal Points Learning"), as the
original project's vendored `arplood.py` trained it (SEED.md 8.2): a
classifier whose logits come from reciprocal points P,
  logits = d_l2(x, P) - <x, P>,   d_l2(x, P_k) = ||x - P_k||^2 / D,
  L = CE(logits / temp) + weight_pl * max(0, mean((x - P_y)^2) - R + 1),
trained jointly with a GAN whose generator also maximises the entropy of
softmax(d_l2(net(G(z)), P)) (the "confusing samples"); the classifier
maximises it too. Generated images (sigmoid, [0, 1]) are turned into the
data's uint8 format, so they share the real data's normalisation (the
original added [0, 1] images to normalised ones).

Images are fed to the ARPL networks on the [0, 1] scale, as in the original.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging

from mu_jax import checkpoint as checkpoint_lib
from mu_jax.models import gan


def arpl_config() -> ml_collections.ConfigDict:
  """Settings of ARPL training (config.augmentation.arpl); SEED.md 8.2."""
  config = ml_collections.ConfigDict()
  config.epochs = 3  # Original: 50 (a ResNet-34 on GPU); short on CPU.
  config.batch_size = 128
  config.lr = 1e-3  # Adam, classifier and reciprocal points (orig. 1e-4).
  config.gan_lr = 2e-4  # Adam(0.5, 0.999) for G and D.
  config.temp = 1.0
  config.weight_pl = 0.1
  config.beta = 0.1  # Weight of the entropy (confusing-sample) term.
  config.nz = 100  # Noise size.
  config.width = 32  # Classifier and GAN widths.
  config.feature_dim = 128
  config.label = 'predicted'  # predicted | random: labels of the fakes.
  return config


def distance_l2(features: jax.Array, points: jax.Array) -> jax.Array:
  """||x - P_k||^2 / D for features [B, D], points [K, D] -> [B, K]."""
  x2 = jnp.sum(features**2, -1, keepdims=True)
  p2 = jnp.sum(points**2, -1)[None, :]
  return (x2 - 2 * features @ points.T + p2) / features.shape[-1]


def arpl_logits(features: jax.Array, points: jax.Array) -> jax.Array:
  """d_l2(x, P) - <x, P>."""
  return distance_l2(features, points) - features @ points.T


def arpl_loss(features: jax.Array, labels: jax.Array, points: jax.Array,
              radius: jax.Array, temp: float, weight_pl: float):
  """The ARPL loss; returns (loss, logits)."""
  logits = arpl_logits(features, points)
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits / temp, labels).mean()
  dist_known = jnp.mean((features - points[labels])**2, -1)
  # MarginRankingLoss(R, d, target=+1, margin=1) = max(0, d - R + 1).
  margin = jnp.mean(jnp.maximum(0.0, dist_known - radius + 1.0))
  return ce + weight_pl * margin, logits


def fake_loss(features: jax.Array, points: jax.Array) -> jax.Array:
  """exp(mean_i sum_k p log p), p = softmax(d_l2): small when confusing."""
  logp = jax.nn.log_softmax(distance_l2(features, points), -1)
  return jnp.exp(jnp.mean(jnp.sum(jnp.exp(logp) * logp, -1)))


def _bce(logits, target):
  return optax.sigmoid_binary_cross_entropy(
      logits, jnp.full_like(logits, target)).mean()


class Models(NamedTuple):
  net: gan.ArplNet
  generator: gan.ImageGenerator
  discriminator: gan.ImageDiscriminator


def make_models(config, image_shape) -> Models:
  return Models(gan.ArplNet(config.width, config.feature_dim),
                gan.ImageGenerator(tuple(image_shape), 2 * config.width),
                gan.ImageDiscriminator(config.width))


def init_params(config, image_shape, num_classes: int, rng) -> dict:
  """{'net', 'points', 'radius', 'G', 'D'}."""
  models = make_models(config, image_shape)
  net_rng, p_rng, g_rng, d_rng = jax.random.split(rng, 4)
  image = jnp.zeros((1, *image_shape), jnp.float32)
  return {
      'net': models.net.init(net_rng, image)['params'],
      'points': 0.1 * jax.random.normal(p_rng,
                                        (num_classes, config.feature_dim)),
      'radius': jnp.zeros(()),
      'G': models.generator.init(g_rng, jnp.zeros((1, config.nz)))['params'],
      'D': models.discriminator.init(d_rng, image)['params'],
  }


def _optimizers(config):
  net_tx = optax.adam(config.lr)
  gan_tx = optax.adam(config.gan_lr, b1=0.5, b2=0.999)
  return net_tx, gan_tx


def make_train_step(config, image_shape):
  """A jitted (params, opt_states, images uint8, labels, rng) step."""
  models = make_models(config, image_shape)
  net_tx, gan_tx = _optimizers(config)

  def step(params, opt_state, images, labels, rng):
    real = images.astype(jnp.float32) / 255.0
    z_rng, z2_rng = jax.random.split(rng)
    batch = real.shape[0]
    z = jax.random.normal(z_rng, (batch, config.nz))
    fake = models.generator.apply({'params': params['G']}, z)

    # Discriminator: real -> 1, fake -> 0.
    def d_loss_fn(d_params):
      d = lambda x: models.discriminator.apply({'params': d_params}, x)
      return _bce(d(real), 1.0) + _bce(d(jax.lax.stop_gradient(fake)), 0.0)

    d_loss, d_grads = jax.value_and_grad(d_loss_fn)(params['D'])
    d_updates, d_opt = gan_tx.update(d_grads, opt_state['D'], params['D'])
    d_params = optax.apply_updates(params['D'], d_updates)

    # Generator: fool D, and confuse the classifier (high entropy).
    def g_loss_fn(g_params):
      fake = models.generator.apply({'params': g_params}, z)
      gan_loss = _bce(models.discriminator.apply({'params': d_params}, fake),
                      1.0)
      features = models.net.apply({'params': params['net']}, fake)
      return gan_loss + config.beta * fake_loss(features, params['points'])

    g_loss, g_grads = jax.value_and_grad(g_loss_fn)(params['G'])
    g_updates, g_opt = gan_tx.update(g_grads, opt_state['G'], params['G'])
    g_params = optax.apply_updates(params['G'], g_updates)

    # Classifier and criterion: ARPL on real data + entropy on fresh fakes.
    fresh = jax.lax.stop_gradient(models.generator.apply(
        {'params': g_params}, jax.random.normal(z2_rng, (batch, config.nz))))
    net_keys = ('net', 'points', 'radius')

    def net_loss_fn(net_params):
      features = models.net.apply({'params': net_params['net']}, real)
      loss, logits = arpl_loss(features, labels, net_params['points'],
                               net_params['radius'], config.temp,
                               config.weight_pl)
      fake_features = models.net.apply({'params': net_params['net']}, fresh)
      total = loss + config.beta * fake_loss(fake_features,
                                             net_params['points'])
      return total, (loss, jnp.mean(jnp.argmax(logits, -1) == labels))

    net_params = {k: params[k] for k in net_keys}
    (_, (net_loss, acc)), n_grads = jax.value_and_grad(
        net_loss_fn, has_aux=True)(net_params)
    n_updates, n_opt = net_tx.update(n_grads, opt_state['net'], net_params)
    net_params = optax.apply_updates(net_params, n_updates)

    new_params = {**net_params, 'G': g_params, 'D': d_params}
    new_opt = {'net': n_opt, 'G': g_opt, 'D': d_opt}
    metrics = {'loss': net_loss, 'accuracy': acc, 'loss_D': d_loss,
               'loss_G': g_loss}
    return new_params, new_opt, metrics

  return jax.jit(step)


def init_opt_state(config, params):
  net_tx, gan_tx = _optimizers(config)
  return {'net': net_tx.init({k: params[k] for k in
                              ('net', 'points', 'radius')}),
          'G': gan_tx.init(params['G']), 'D': gan_tx.init(params['D'])}


def train(config, images: np.ndarray, labels: np.ndarray, num_classes: int,
          seed: int) -> tuple[dict, list[dict]]:
  """Trains the ARPL classifier and generator; returns (params, history)."""
  image_shape = images.shape[1:]
  rng = jax.random.key(seed)
  params = init_params(config, image_shape, num_classes, rng)
  opt_state = init_opt_state(config, params)
  step = make_train_step(config, image_shape)
  batch = min(config.batch_size, len(labels))
  steps = len(labels) // batch
  order_rng = np.random.default_rng(seed)
  history = []
  with tqdm.tqdm(total=steps * config.epochs, desc='train arpl',
                 unit='step', mininterval=2.0) as bar:
    for epoch in range(config.epochs):
      order = order_rng.permutation(len(labels))
      sums = {}
      for i in range(steps):
        idx = order[i * batch:(i + 1) * batch]
        params, opt_state, metrics = step(
            params, opt_state, jnp.asarray(images[idx]),
            jnp.asarray(labels[idx], jnp.int32),
            jax.random.fold_in(rng, epoch * steps + i))
        for k, v in metrics.items():
          sums[k] = sums.get(k, 0.0) + float(v)
        bar.update(1)
      row = {'epoch': epoch + 1, **{k: v / steps for k, v in sums.items()}}
      logging.info('arpl epoch %d: %s', epoch + 1, row)
      history.append(row)
  return params, history


def train_or_restore(config, images, labels, num_classes: int, seed: int,
                     directory: str, recipe: dict) -> tuple[dict, dict]:
  """Trains ARPL into `directory` (Orbax), or reuses a finished run there.

  Returns:
    (params, info) with info = {'seconds', 'reused', 'checkpoint', 'history'}.
  """
  return checkpoint_lib.train_or_reuse(
      directory, recipe, 'an ARPL generator',
      template=lambda: init_params(config, images.shape[1:], num_classes,
                                   jax.random.key(seed)),
      train=lambda: train(config, images, labels, num_classes, seed),
      step=int(config.epochs))


@functools.partial(jax.jit, static_argnums=(0, 1, 3))
def _sample(config, image_shape, params, n, rng):
  models = make_models(config, image_shape)
  z = jax.random.normal(rng, (n, config.nz))
  fake = models.generator.apply({'params': params['G']}, z)
  features = models.net.apply({'params': params['net']}, fake)
  predicted = jnp.argmax(arpl_logits(features, params['points']), -1)
  return jnp.round(fake * 255.0).astype(jnp.uint8), predicted


def generate(config, params: dict, image_shape, num_classes: int,
             rng: jax.Array, augment_num: int, chunk: int = 512):
  """`augment_num` generated uint8 images [N, H, W, C] and labels [N].

  Labels are the ARPL classifier's predictions (config.label='predicted')
  or uniform random classes, as the original did ('random').
  """
  frozen = ml_collections.FrozenConfigDict(config)
  images, labels = [], []
  for start in range(0, augment_num, chunk):
    n = min(chunk, augment_num - start)
    fake, predicted = _sample(frozen, tuple(image_shape), params, n,
                              jax.random.fold_in(rng, start))
    images.append(np.asarray(fake))
    labels.append(np.asarray(predicted))
  if not images:
    return (np.zeros((0, *image_shape), np.uint8), np.zeros((0,), np.int32))
  labels = np.concatenate(labels).astype(np.int32)
  if config.label == 'random':
    labels = np.random.default_rng(0).integers(
        0, num_classes, len(labels)).astype(np.int32)
  return np.concatenate(images), labels
