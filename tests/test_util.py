"""Small shared helpers for the tests: tiny synthetic data and configs."""

import os

import ml_collections
import numpy as np

from configs import default


def tiny_images(n: int, seed: int = 0, shape=(8, 8, 1)) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n, *shape), np.uint8)


def tiny_labels(n: int, num_classes: int = 4, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed + 1).integers(0, num_classes, n).astype(
      np.int32)


def smoke_config(tmp_dir: str) -> ml_collections.ConfigDict:
  """configs/default.py:smoke with checkpoints under `tmp_dir`."""
  config = default.get_config('smoke')
  config.checkpoint_dir = f'{tmp_dir}/checkpoints'
  return config


def file_snapshot(directory: str) -> list[tuple[str, int, int]]:
  """(path, size, mtime) of every file below `directory`: equal snapshots
  taken before and after a run mean it left those files untouched."""
  out = []
  for root, _, files in os.walk(directory):
    for name in files:
      stat = os.stat(os.path.join(root, name))
      out.append((os.path.join(root, name), stat.st_size, stat.st_mtime_ns))
  return sorted(out)
