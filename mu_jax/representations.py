"""What a model's layers compute: penultimate features and linear CKA.

The analyses behind the suite's representation plots (the original project's
`feature_visialization` and `metriccc/torch_cka`): the penultimate features
of forget and retain samples, which mu_jax/plots.py embeds with t-SNE
(`forget_retain_features`), and the linear CKA (Kornblith et al., 2019,
"Similarity of Neural Network Representations Revisited") between every layer
of the unlearned model and every layer of the original, the matrix the
original project drew with torch_cka (`cka_matrix`, `layer_cka`). They take
models and images, and know nothing of suites, cells or files.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from mu_jax import augment
from mu_jax import parallel


@functools.partial(parallel.compile_function,
                   static_argnames=('mean', 'std'))
def _features(state, images, *, mean, std):
  x = augment.normalize(images, mean, std)
  (_, features), _ = state.apply(state.params, x, train=False)
  return features


def features(state, images: np.ndarray, *, mean, std,
             batch_size: int = 512) -> np.ndarray:
  """Penultimate features (the classifier head's input), eval mode.

  Args:
    state: a TrainState.
    images: uint8 [N, H, W, C].
    mean: per-channel normalisation mean.
    std: per-channel normalisation std.
    batch_size: images per compiled call.

  Returns:
    float32 [N, D].
  """
  # Read on every process of a multi-process run (`parallel.to_host`).
  out = [parallel.to_host(_features(state, images[i:i + batch_size],
                                    mean=tuple(mean), std=tuple(std)))
         for i in range(0, len(images), batch_size)]
  return np.concatenate(out)


def _is_layer(module: nn.Module, method_name: str) -> bool:
  """The model's direct children (Conv_0, BasicBlock_3, Dense_0...)."""
  return (method_name == '__call__' and len(module.path) == 1
          and not type(module).__name__.startswith('BatchNorm'))


def layer_activations(state, images: np.ndarray, *, mean,
                      std) -> dict[str, np.ndarray]:
  """Outputs of the model's top-level layers, in call order, eval mode.

  BatchNorm layers are left out (they rescale the layer before them); the
  penultimate features are added as 'features'.

  Returns:
    Layer name -> float32 [N, ...] activations.
  """
  x = augment.normalize(images, tuple(mean), tuple(std))
  variables = {'params': state.params, **state.model_state}
  # Not jitted: jit returns dicts with sorted keys, losing the call order
  # (BasicBlock_10 before BasicBlock_2); this runs once per model.
  (_, penultimate), captured = state.apply_fn(
      variables, x, train=False, capture_intermediates=_is_layer,
      mutable=['intermediates'])
  out = {name: parallel.to_host(jax.tree.leaves(calls['__call__'])[0])
         for name, calls in captured['intermediates'].items()}
  out['features'] = parallel.to_host(penultimate)
  return out


def _centered_gram(x: np.ndarray) -> np.ndarray:
  x = x.reshape(len(x), -1).astype(np.float64)
  x = x - x.mean(0, keepdims=True)
  return x @ x.T


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
  """Linear CKA of two representations of the same N samples.

  CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centred
  Xc, Yc, computed through the N x N Gram matrices. 1 for representations
  equal up to rotation, isotropic scaling and translation.

  Args:
    x: [N, ...] activations (flattened per sample).
    y: [N, ...] activations of the same samples.

  Returns:
    A float in [0, 1].
  """
  return _cka_from_grams(_centered_gram(x), _centered_gram(y))


def _cka_from_grams(gram_x: np.ndarray, gram_y: np.ndarray) -> float:
  # <Kx, Ky>_F equals ||Yc^T Xc||_F^2 for centred features.
  denominator = np.linalg.norm(gram_x) * np.linalg.norm(gram_y)
  return (float(np.sum(gram_x * gram_y) / denominator) if denominator > 0
          else 0.0)


def cka_matrix(state_a, state_b, images: np.ndarray, *, mean,
               std) -> tuple[list[str], np.ndarray]:
  """Linear CKA between every layer of model A and every layer of model B.

  Args:
    state_a: TrainState of model A (rows).
    state_b: TrainState of model B (columns), same architecture.
    images: uint8 [N, H, W, C], the samples both models see.
    mean: normalisation mean.
    std: normalisation std.

  Returns:
    (layer names, float [L, L] matrix); the diagonal compares each layer
    with itself.
  """
  grams = []
  for state in (state_a, state_b):
    acts = layer_activations(state, images, mean=mean, std=std)
    grams.append({name: _centered_gram(a) for name, a in acts.items()})
  names = list(grams[0])
  matrix = np.array([[_cka_from_grams(grams[0][a], grams[1][b])
                      for b in names] for a in names])
  return names, matrix


def layer_cka(state, reference, images: np.ndarray, *, mean,
              std) -> dict[str, Any]:
  """`cka_matrix` of a model against a reference, as plain JSON values.

  Args:
    state: TrainState of the model analysed (e.g. an unlearned one).
    reference: TrainState of the model it is compared with (the original).
    images: uint8 [N, H, W, C], e.g. forget samples.
    mean: normalisation mean.
    std: normalisation std.

  Returns:
    {'layers': [L names], 'matrix': [L][L] floats, rows the model's layers,
    columns the reference's}.
  """
  layers, matrix = cka_matrix(state, reference, images, mean=mean, std=std)
  return {'layers': layers, 'matrix': matrix.tolist()}


def forget_retain_features(state, images: np.ndarray, labels: np.ndarray,
                           forget: np.ndarray, retain: np.ndarray, *, mean,
                           std) -> dict[str, np.ndarray]:
  """Penultimate features and labels of forget and retain samples.

  Args:
    state: a TrainState.
    images: uint8 [N, H, W, C], the train images.
    labels: int [N], their labels.
    forget: indices of the forget samples.
    retain: indices of the retain samples.
    mean: normalisation mean.
    std: normalisation std.

  Returns:
    {'forget': [F, D], 'forget_label': [F], 'retain': [R, D],
    'retain_label': [R]}: one panel of `plots.tsne`.
  """
  arrays = {}
  for name, index in (('forget', forget), ('retain', retain)):
    arrays[name] = features(state, images[index], mean=mean, std=std)
    arrays[f'{name}_label'] = labels[index]
  return arrays
