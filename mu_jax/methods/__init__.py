"""Unlearning methods by name: `get(name)` imports `mu_jax.methods.<name>`.

Each method module exports `make(config, ctx) -> base.Method`; its defaults
(the `config.method` section, per forgetting mode) live in
`configs/<name>.py:method(mode)`. A new method is one file here plus its
config file; it is found and tested automatically.
"""

import importlib
import os
import pkgutil

from mu_jax import errors
from mu_jax.methods import base

# Spellings of the original project's CLI and of the literature.
ALIASES = {'salun': 'salun', 'ft': 'finetune', 'fine_tune': 'finetune',
           'rl': 'random_label', 'ga': 'neggrad', 'badteaching': 'bad_teaching',
           'bad_teacher': 'bad_teaching', 'neggrad+': 'neggrad_plus'}
AVAILABLE = tuple(sorted(
    m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)])
    if m.name != 'base'))


def canonical_name(name: str) -> str:
  """Maps aliases (e.g. the original CLI's 'salUN') to module names."""
  name = name.lower()
  return ALIASES.get(name, name)


def get(name: str):
  """The method module for `name`; a ConfigError naming the choices if
  unknown."""
  module = canonical_name(name)
  if module in AVAILABLE:
    return importlib.import_module(f'mu_jax.methods.{module}')
  raise errors.ConfigError(f'unknown method {name!r}; available: '
                           f'{", ".join(AVAILABLE)}')


__all__ = ['base', 'get', 'canonical_name', 'AVAILABLE']
