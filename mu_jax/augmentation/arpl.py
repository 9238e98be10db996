"""`--data_augment arpl`: confusing samples from an ARPL generator.

ARPL (Chen et al., 2021, "Adversarial Reciprocal Points Learning"), as the
original project's vendored `arplood.py` trained it (kklusd/Unlearning,
after iCGY96/ARPL): a
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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mu_jax import checkpoint as checkpoint_lib
from mu_jax import host_batches
from mu_jax import optim
from mu_jax import parallel
from mu_jax import state as state_lib
from mu_jax import train
from mu_jax.methods import base
from mu_jax.models import gan


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
  """{'classifier': {'net', 'points', 'radius'}, 'G', 'D'}."""
  models = make_models(config, image_shape)
  net_rng, p_rng, g_rng, d_rng = jax.random.split(rng, 4)
  image = jnp.zeros((1, *image_shape), jnp.float32)
  return {
      'classifier': {
          'net': models.net.init(net_rng, image)['params'],
          'points': 0.1 * jax.random.normal(
              p_rng, (num_classes, config.feature_dim)),
          'radius': jnp.zeros(()),
      },
      'G': models.generator.init(g_rng, jnp.zeros((1, config.nz)))['params'],
      'D': models.discriminator.init(d_rng, image)['params'],
  }


def _optimizers(config) -> dict[str, optax.GradientTransformation]:
  gan_tx = optax.adam(config.gan_lr, b1=0.5, b2=0.999)
  return {'classifier': optax.adam(config.lr), 'G': gan_tx, 'D': gan_tx}


def new_state(config, image_shape, num_classes: int,
              rng: jax.Array) -> state_lib.TrainState:
  """Classifier, generator and discriminator as one TrainState, each with
  its own optimizer (`optim.per_part`)."""
  params = init_params(config, image_shape, num_classes, rng)
  tx = optim.per_part(_optimizers(config))
  return state_lib.TrainState(
      step=jnp.zeros((), jnp.int32), params=params, model_state={},
      opt_state=tx.init(params),
      apply_fn=make_models(config, image_shape).generator.apply, tx=tx)


def method(config, image_shape, steps_per_epoch: int) -> base.Method:
  """ARPL's joint training as a driver method over the split 'train'.

  Per step, on a batch of real images (scaled to [0, 1] by the driver's
  preprocessing): a discriminator step, a generator step (fool D and confuse
  the classifier), then a classifier step (ARPL on the real images plus the
  entropy term on fresh fakes), each with its own optimizer.
  """
  models = make_models(config, image_shape)
  txs = _optimizers(config)

  def update(state, method_state, batches, rng):
    real, labels = batches['train']['image'], batches['train']['label']
    params, opt_state = state.params, state.opt_state
    z_rng, z2_rng = jax.random.split(rng)
    batch = real.shape[0]
    z = jax.random.normal(z_rng, (batch, config.nz))
    fake = models.generator.apply({'params': params['G']}, z)
    classifier = params['classifier']

    # Discriminator: real -> 1, fake -> 0.
    def d_loss_fn(d_params):
      d = lambda x: models.discriminator.apply({'params': d_params}, x)
      return _bce(d(real), 1.0) + _bce(d(jax.lax.stop_gradient(fake)), 0.0)

    d_loss, d_grads = jax.value_and_grad(d_loss_fn)(params['D'])
    d_params, d_opt = optim.step_part(txs['D'], d_grads, opt_state['D'],
                                      params['D'])

    # Generator: fool D, and confuse the classifier (high entropy).
    def g_loss_fn(g_params):
      fake = models.generator.apply({'params': g_params}, z)
      gan_loss = _bce(models.discriminator.apply({'params': d_params}, fake),
                      1.0)
      features = models.net.apply({'params': classifier['net']}, fake)
      return gan_loss + config.beta * fake_loss(features, classifier['points'])

    g_loss, g_grads = jax.value_and_grad(g_loss_fn)(params['G'])
    g_params, g_opt = optim.step_part(txs['G'], g_grads, opt_state['G'],
                                      params['G'])

    # Classifier and criterion: ARPL on real data + entropy on fresh fakes.
    fresh = jax.lax.stop_gradient(models.generator.apply(
        {'params': g_params}, jax.random.normal(z2_rng, (batch, config.nz))))

    def net_loss_fn(c_params):
      features = models.net.apply({'params': c_params['net']}, real)
      loss, logits = arpl_loss(features, labels, c_params['points'],
                               c_params['radius'], config.temp,
                               config.weight_pl)
      fake_features = models.net.apply({'params': c_params['net']}, fresh)
      total = loss + config.beta * fake_loss(fake_features,
                                             c_params['points'])
      return total, (loss, jnp.mean(jnp.argmax(logits, -1) == labels))

    (_, (net_loss, accuracy)), c_grads = jax.value_and_grad(
        net_loss_fn, has_aux=True)(classifier)
    c_params, c_opt = optim.step_part(txs['classifier'], c_grads,
                                      opt_state['classifier'], classifier)
    state = state.replace(
        step=state.step + 1,
        params={'classifier': c_params, 'G': g_params, 'D': d_params},
        opt_state={'classifier': c_opt, 'G': g_opt, 'D': d_opt})
    return state, method_state, {'loss': net_loss, 'accuracy': accuracy,
                                 'loss_D': d_loss, 'loss_G': g_loss}

  return base.single_phase(update, ('train',), steps_per_epoch)


def train_or_restore(config, images, labels, num_classes: int, seed: int,
                     directory: str, recipe: dict, mesh) -> tuple[dict, dict]:
  """Trains ARPL into `directory`, or reuses (or resumes) it there.

  Returns:
    (params, info) with info = {'seconds', 'reused', 'checkpoint', 'history'}.
  """
  image_shape = images.shape[1:]
  channels = image_shape[-1]
  batch = parallel.fit_batch_size(int(config.batch_size), len(labels), mesh)
  template = jax.device_put(new_state(config, image_shape, num_classes,
                                      jax.random.key(seed)),
                            parallel.replicated(mesh))
  recipe = {**recipe, 'format': 2}
  state, info = checkpoint_lib.train_or_reuse(
      directory, recipe, 'an ARPL generator', template,
      lambda checkpointer: train.run(
          method(config, image_shape, len(labels) // batch), template,
          {'train': host_batches.split_data(images, labels)},
          epochs=int(config.epochs), batch_size={'train': batch}, seed=seed,
          # The ARPL networks see images on the [0, 1] scale, as originally.
          prep=host_batches.Preprocessing((0.0,) * channels,
                                          (1.0,) * channels),
          mesh=mesh, desc='train arpl', checkpointer=checkpointer,
          checkpoint_meta={'recipe': recipe}))
  return state.params, info


@functools.partial(parallel.compile_function, static_argnums=(0, 1, 3))
def _sample(config, image_shape, params, n, rng):
  models = make_models(config, image_shape)
  z = jax.random.normal(rng, (n, config.nz))
  fake = models.generator.apply({'params': params['G']}, z)
  classifier = params['classifier']
  features = models.net.apply({'params': classifier['net']}, fake)
  predicted = jnp.argmax(arpl_logits(features, classifier['points']), -1)
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
    images.append(parallel.to_host(fake))  # On every process.
    labels.append(parallel.to_host(predicted))
  if not images:
    return (np.zeros((0, *image_shape), np.uint8), np.zeros((0,), np.int32))
  labels = np.concatenate(labels).astype(np.int32)
  if config.label == 'random':
    labels = np.random.default_rng(0).integers(
        0, num_classes, len(labels)).astype(np.int32)
  return np.concatenate(images), labels
