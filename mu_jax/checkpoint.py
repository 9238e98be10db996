"""Checkpoints through Orbax; the only module that calls `orbax.checkpoint`.

A training run saves `{'state', 'method_state'}` plus a JSON `meta` dict at the
end of every epoch. Orbax writes each step into a temporary directory and
renames it when complete, and `CheckpointManager` lists only completed steps, so
a run killed mid-write leaves nothing that can be loaded by mistake.
"""

import json
import os
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging

PyTree = Any


class CheckpointError(RuntimeError):
  """A checkpoint is missing, unreadable or does not match the run."""


def _has_leaves(tree) -> bool:
  return bool(jax.tree.leaves(tree))


class Checkpointer:
  """Saves and restores one training run's per-epoch checkpoints."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True))

  def latest_meta(self) -> dict | None:
    """The metadata of the newest complete step, or None if there is none."""
    step = self._manager.latest_step()
    if step is None:
      return None
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f'checkpoint {self.directory}/{step} is unreadable ({e!r:.80}); '
          'delete that directory to start over') from e
    return dict(restored['meta'])

  def restore(self, state: PyTree, method_state: PyTree = ()):
    """Restores the newest step into the structure (and shardings) given.

    Returns:
      (state, method_state, meta).
    """
    step = self._manager.latest_step()
    if step is None:
      raise CheckpointError(f'no checkpoint in {self.directory}')
    items = {'state': state}
    if _has_leaves(method_state):
      items['method_state'] = method_state
    args = {k: ocp.args.StandardRestore(
        jax.tree.map(ocp.utils.to_shape_dtype_struct, v))
            for k, v in items.items()}
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(meta=ocp.args.JsonRestore(), **args))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f'checkpoint {self.directory}/{step} does not fit this model or is '
          f'corrupt ({type(e).__name__}); delete it or use another '
          '--config.checkpoint_dir') from e
    return (restored['state'], restored.get('method_state', method_state),
            dict(restored['meta']))

  def save(self, step: int, state: PyTree, method_state: PyTree, meta: dict):
    """Saves one step and waits until it is fully written."""
    items = {'state': ocp.args.StandardSave(state)}
    if _has_leaves(method_state):
      items['method_state'] = ocp.args.StandardSave(method_state)
    self._manager.save(step, args=ocp.args.Composite(
        meta=ocp.args.JsonSave(meta), **items))
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()


def train_or_reuse(directory: str, recipe: dict, what: str,
                   template: Callable[[], PyTree],
                   train: Callable[[], tuple[PyTree, list]],
                   step: int) -> tuple[PyTree, dict]:
  """Reuses a finished run saved in `directory`, or trains and saves one.

  For the small auxiliary models (the augmentation generators) that train in
  one go, without per-epoch resume. A checkpoint made with another `recipe`
  is refused rather than silently reused.

  Args:
    directory: the checkpoint folder.
    recipe: what the weights depend on (JSON types after a round trip).
    what: names the model in messages, e.g. 'an OpenGAN'.
    template: returns a pytree of the weights' structure, for restoring.
    train: trains from scratch; returns (weights, per-epoch history).
    step: the step number to save under (e.g. the epoch count).

  Returns:
    (weights, info) with info = {'seconds' (training time, that of the run
    that trained it when reused), 'reused', 'checkpoint', 'history'}.
  """
  recipe = json.loads(json.dumps(recipe))  # Tuples become lists, as in JSON.
  checkpointer = Checkpointer(directory)
  try:
    meta = checkpointer.latest_meta()
    if meta is not None and meta.get('recipe') != recipe:
      raise CheckpointError(
          f'{directory} holds {what} trained with another recipe, split or '
          'original model; delete it or set --config.checkpoint_dir')
    if meta is not None and meta.get('done'):
      weights, _, meta = checkpointer.restore(template())
      logging.info('reusing %s in %s', what, directory)
      return weights, {'seconds': meta['run_seconds'], 'reused': True,
                       'checkpoint': directory, 'history': meta['history']}
    start = time.perf_counter()
    weights, history = train()
    jax.block_until_ready(weights)
    seconds = time.perf_counter() - start
    checkpointer.save(step, weights, (), {
        'recipe': recipe, 'done': True, 'run_seconds': seconds,
        'history': history})
  finally:
    checkpointer.close()
  return weights, {'seconds': seconds, 'reused': False,
                   'checkpoint': directory, 'history': history}
