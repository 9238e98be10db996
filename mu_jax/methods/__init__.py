"""Unlearning methods by name: `get(name)` imports `mu_jax.methods.<name>`.

Each method module exports `get_config()` (its `config.method` section, with
its own defaults) and `make(config, ctx) -> base.Method`. A new method is one
file here (plus `configs/<name>.py`); it is found and tested automatically.
"""

import importlib
import os
import pkgutil

import ml_collections

from mu_jax.methods import base

# Spellings of the original project's CLI and of the literature.
ALIASES = {'salun': 'salun', 'ft': 'finetune', 'fine_tune': 'finetune',
           'rl': 'random_label', 'ga': 'neggrad', 'badteaching': 'bad_teaching',
           'bad_teacher': 'bad_teaching', 'neggrad+': 'neggrad_plus'}
# The roadmap's methods: until their module exists, a clear error.
PLANNED = ('neggrad', 'neggrad_plus', 'random_label', 'salun', 'bad_teaching',
           'scrub')
AVAILABLE = tuple(sorted(
    m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)])
    if m.name != 'base'))


def canonical_name(name: str) -> str:
  """Maps aliases (e.g. the original CLI's 'salUN') to module names."""
  name = name.lower()
  return ALIASES.get(name, name)


def get(name: str):
  """The method module for `name`; ValueError naming the choices if unknown."""
  module = canonical_name(name)
  if module in AVAILABLE:
    return importlib.import_module(f'mu_jax.methods.{module}')
  if module in PLANNED:
    raise ValueError(f'method {name!r} is not built yet in this version of '
                     f'mu_jax; available: {", ".join(AVAILABLE)}')
  raise ValueError(f'unknown method {name!r}; available: '
                   f'{", ".join(AVAILABLE)}')


def get_config(name: str) -> ml_collections.ConfigDict:
  """The default `config.method` section of method `name`."""
  return get(name).get_config()


__all__ = ['base', 'get', 'get_config', 'canonical_name', 'AVAILABLE']
