"""Small shared helpers for the tests: tiny synthetic data and configs."""

import glob
import importlib.util
import os
import struct
import types

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


def event_tags(directory: str) -> set[str]:
  """The tags of every value in the TensorBoard event files of `directory`.

  Reads the files as TFRecords (8-byte length, 4-byte CRC, the record, its
  4-byte CRC) of `Event` protos, with the proto that tensorboardX ships.
  """
  # pylint: disable-next=g-import-not-at-top
  from tensorboardX.proto import event_pb2
  tags = set()
  for path in glob.glob(os.path.join(directory, 'events.out.tfevents*')):
    with open(path, 'rb') as f:
      data = f.read()
    offset = 0
    while offset + 12 <= len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      record = data[offset + 12:offset + 12 + length]
      offset += 12 + length + 4
      event = event_pb2.Event.FromString(record)
      tags.update(value.tag for value in event.summary.value)
  return tags


def load_tool(name: str) -> types.ModuleType:
  """A fresh module of tools/<name>.py (a script, not a package module)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  spec = importlib.util.spec_from_file_location(
      f'tools_{name}', os.path.join(root, 'tools', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
