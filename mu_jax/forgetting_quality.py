"""Forgetting quality from many models: the NeurIPS 2023 challenge's measure.

MIA-efficacy judges one model with one attack. The NeurIPS 2023 Machine
Unlearning Challenge (Triantafillou et al., 2024) compares, example by
example, the outputs of many unlearned models with those of many retrained
models: `--config.eval.forgetting_quality_models=N` (N >= 2) trains N
retrain models of the run's split (the run's own and N - 1 from seeds of
their own), runs the unlearning method N times from the same original model
(the run's own and N - 1 with seeds of their own for the method's
randomness: batch order, random labels, teachers), and scores

* F, `challenge.forgetting_quality` on the forget set's logit-scaled confidences
  (log p_y - log sum_{k != y} p_k), with the per-example epsilon histogram;
* the challenge's final score, F x (RA_u / RA_r) x (TA_u / TA_r), with
  the mean retain and test accuracies of the unlearned and retrained models;
* a U-LiRA-style per-example attack (`likelihood_ratio.ulira_attack`)
  when N >= 3.

Cost: N - 1 more retrain models (checkpointed and reused like the run's own)
and N - 1 more unlearning runs, whose outputs are kept in
`workdir/forgetting_quality/` so that a killed run resumes. F's precision
grows with N: the challenge used 512 models per side; with few models the
per-example tests have little power and F is optimistic (a lower bound on
epsilon); its buckets stop at ceil(ln(N - 1)).

The extra retrain models train one after the other or together in one
vmapped program (`config.eval.forgetting_quality_vmap`): 'auto' vmaps on GPUs
and TPUs, which run the vmapped (grouped) convolutions natively, and trains
them one at a time on CPUs, where XLA computes grouped convolutions densely
and the vmapped program is slower (docs/RESULTS.md measures both).
"""

import copy
import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from mu_jax import atomic_files
from mu_jax import classifiers
from mu_jax import errors
from mu_jax import evaluation
from mu_jax import likelihood_ratio
from mu_jax import methods
from mu_jax import challenge
from mu_jax import multiseed
from mu_jax import parallel
from mu_jax import splits as splits_lib
from mu_jax import unlearning
from mu_jax.experiment import Experiment

VMAP_CHOICES = ('auto', 'always', 'never')


def _vmapped(setting: str) -> bool:
  if setting not in VMAP_CHOICES:
    raise errors.ConfigError(
        f'--config.eval.forgetting_quality_vmap={setting!r}: choose one of '
        f'{", ".join(VMAP_CHOICES)}')
  if setting == 'auto':
    return jax.default_backend() != 'cpu'
  return setting == 'always'


def model_outputs(exp: Experiment, state, split: splits_lib.Split,
             desc: str) -> dict[str, Any]:
  """The forget set's logit-scaled confidences, RA and TA of one model."""
  dataset = exp.dataset
  forget = evaluation.per_example(
      state, dataset.train_images[split.forget],
      dataset.train_labels[split.forget], mean=dataset.mean, std=dataset.std,
      mesh=exp.mesh, batch_size=exp.config.eval.batch_size, desc=desc)
  row = exp.evaluate(state, split, desc)
  return {'confidence': forget['logit_confidence'].astype(np.float64),
          'retain_acc': row['retain_acc'], 'test_acc': row['test_acc']}


def _retrained(exp: Experiment, split: splits_lib.Split, retrained,
               count: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """Outputs of `count` retrain models: the run's and count - 1 more."""
  jobs = [classifiers.classifier_job(exp, 'retrain', split, model_index=i)
          for i in range(1, count)]
  start = time.perf_counter()
  vmapped = _vmapped(exp.config.eval.forgetting_quality_vmap)
  if vmapped:
    multiseed.train_jobs(jobs, exp.mesh, desc='forgetting quality')
  states = [retrained] + [classifiers.train_job(exp, job)[0] for job in jobs]
  seconds = time.perf_counter() - start
  outputs = [model_outputs(exp, state, split, f'eval retrain {i}')
             for i, state in enumerate(states)]
  return outputs, {'seconds': seconds, 'vmapped': vmapped,
                   'checkpoints': [job.directory for job in jobs]}


def _unlearned(exp: Experiment, split: splits_lib.Split, original, unlearned,
               count: int, workdir: str) -> tuple[list[dict[str, Any]], float]:
  """Outputs of `count` unlearned models: the run's and count - 1 more.

  Each extra run's outputs are saved to `workdir`, named after the method,
  a digest of what they depend on (method and guard settings, split,
  original model) and the run's seed, and reused by a resumed run.
  """
  outputs = [model_outputs(exp, unlearned, split, 'eval unlearned 0')]
  seconds = 0.0
  key = atomic_files.content_key(
      [json.loads(exp.config.method.to_json()),
       json.loads(exp.config.guard.to_json()), split.digest(),
       exp.config.init_from, json.loads(exp.config.train.to_json())], 12)
  name = methods.canonical_name(exp.config.method.name)
  for i in range(1, count):
    seed = classifiers.model_seed(exp.config.seed, i)
    path = os.path.join(workdir, f'{name}_{key}_{i}_s{seed}.npz')
    if os.path.exists(path):
      with np.load(path) as saved:
        outputs.append({k: saved[k] if k == 'confidence' else float(saved[k])
                        for k in saved.files})
      continue
    config = copy.deepcopy(exp.config)
    with config.unlocked():
      config.seed = seed  # The method's own randomness; the split is kept.
    run = Experiment(config, exp.dataset, exp.mesh)
    state, info, _ = unlearning.unlearn(run, original, split)
    seconds += info['seconds']
    out = model_outputs(run, state, split, f'eval unlearned {i}')
    if parallel.is_main_process():  # Process 0 writes the run's files.
      atomic_files.write_npz(path, out)  # Complete, or absent.
    outputs.append(out)
  return outputs, seconds


def _models(exp: Experiment, kind: str, split: splits_lib.Split,
            indices) -> list[dict[str, Any]]:
  """Outputs of the `kind` models (`classifiers.classifier_job`) of the
  given model indices, trained or reused."""
  out = []
  for i in indices:
    state, _ = classifiers.train_job(exp, classifiers.classifier_job(
        exp, kind, split, model_index=i))
    out.append(model_outputs(exp, state, split, f'eval {kind} {i}'))
  return out


def reference_rows(exp: Experiment, split: splits_lib.Split,
                   counts=(4, 8)) -> list[dict[str, Any]]:
  """F's ceiling and floor on real models, for each N in `counts`.

  The ceiling: N retrain models scored against N others (held out: trained
  from other seeds on the same retain set), what a perfect method would
  get at this N. The floor: N original models (all data, their own seeds)
  against N retrain models, what doing nothing gets. Trains (or reuses,
  like every checkpoint) 2 max(counts) retrain and max(counts) original
  models.

  Returns:
    [{'models': N, 'retrain_vs_retrain': F, 'original_vs_retrain': F}].
  """
  most = max(counts)
  retrained = _models(exp, 'retrain', split, range(2 * most))
  originals = _models(exp, 'original', split, range(most))
  stack = lambda outs: np.stack([o['confidence'] for o in outs])
  rows = []
  for n in counts:
    held_out = retrained[most:most + n]
    rows.append({
        'models': n,
        'retrain_vs_retrain': float(challenge.forgetting_quality(
            stack(held_out), stack(retrained[:n])).score),
        'original_vs_retrain': float(challenge.forgetting_quality(
            stack(originals[:n]), stack(retrained[:n])).score)})
  return rows


def measure(exp: Experiment, split: splits_lib.Split, original, retrained,
            unlearned, workdir: str) -> dict[str, Any]:
  """The many-model measures of the run (see the module docstring).

  Args:
    exp: the run's experiment (`config.eval.forgetting_quality_models` N).
    split: the run's split.
    original: the original model (every unlearning run starts from it).
    retrained: the run's retrain model (model 0).
    unlearned: the run's unlearned model (model 0).
    workdir: where the extra unlearned models' outputs are kept.

  Returns:
    {'models', 'forgetting_quality' (F), 'challenge_score',
    'epsilon_histogram' {'edges', 'counts'}, 'mean_epsilon', 'ulira' (or
    None), 'retrain' (seconds, vmapped, checkpoints), 'unlearn_seconds'}.
  """
  count = int(exp.config.eval.forgetting_quality_models)
  if count < 2:
    raise errors.ConfigError(
        f'--config.eval.forgetting_quality_models={count}: it needs at least '
        '2 models per side (0 turns it off)')
  logging.info('forgetting quality: %d retrained and %d unlearned models',
               count, count)
  retrain_out, retrain_info = _retrained(exp, split, retrained, count)
  unlearn_out, unlearn_seconds = _unlearned(
      exp, split, original, unlearned, count,
      os.path.join(workdir, 'forgetting_quality'))
  stack = lambda outs: np.stack([o['confidence'] for o in outs])
  quality = challenge.forgetting_quality(stack(unlearn_out), stack(retrain_out))
  score = challenge.challenge_score(
      quality.score, [o['retain_acc'] for o in unlearn_out],
      [o['retain_acc'] for o in retrain_out],
      [o['test_acc'] for o in unlearn_out],
      [o['test_acc'] for o in retrain_out])
  edges, counts = quality.histogram()
  ulira = None
  if count >= 3:
    attack = likelihood_ratio.ulira_attack(stack(unlearn_out),
                                           stack(retrain_out))
    ulira = {'auc': float(attack['auc']),
             'tpr_at_1pct_fpr': float(attack['tpr_at_1pct_fpr'])}
  return {'models': count, 'forgetting_quality': float(quality.score),
          'challenge_score': float(score),
          'mean_epsilon': float(np.mean(quality.epsilons)),
          'epsilon_histogram': {'edges': [float(e) for e in edges],
                                'counts': [int(c) for c in counts]},
          'ulira': ulira, 'retrain': retrain_info,
          'unlearn_seconds': unlearn_seconds}
