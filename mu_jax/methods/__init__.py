"""Unlearning methods by name: `get(name)` imports `mu_jax.methods.<name>`.

Each method module exports `make(config, ctx) -> base.Method` and its
`CARD` (`base.Card`: label, aliases, table order, the tuner's knob); its
defaults (the `config.method` section, per forgetting mode) live in
`configs/<name>.py:method(mode)`. A new method is one file here plus its
config file: every list of methods (the aliases `--method` accepts, the
suite's rows and order, the tuner's knobs, the benchmarks' and the
robustness tool's methods) is built here, from the modules, when asked.
"""

import importlib
import os
import pkgutil

from mu_jax import errors
from mu_jax.methods import base

AVAILABLE = tuple(sorted(
    m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)])
    if m.name != 'base'))


def _module(name: str):
  return importlib.import_module(f'mu_jax.methods.{name}')


def card(name: str) -> base.Card:
  """The method's `CARD` (a plain card with its name if it has none)."""
  return getattr(get(name), 'CARD', None) or base.Card(label=name)


def aliases() -> dict[str, str]:
  """Alias -> method, from the cards (e.g. 'rl' -> 'random_label')."""
  return {alias: name for name in AVAILABLE
          for alias in getattr(_module(name), 'CARD', base.Card('')).aliases}


def canonical_name(name: str) -> str:
  """Maps aliases (e.g. the original CLI's 'salUN') to module names."""
  name = name.lower()
  return name if name in AVAILABLE else aliases().get(name, name)


def in_paper_order(names) -> list[str]:
  """`names` in the SalUn paper's row order (FT, RL, GA, ..., SalUn), the
  methods it does not have after them, by name."""
  return sorted(names, key=lambda n: (card(n).order, n))


def unlearning_methods() -> list[str]:
  """Every method but the gold standard (retrain), in the paper's order."""
  return in_paper_order(n for n in AVAILABLE if card(n).unlearns)


def get(name: str):
  """The method module for `name`; a ConfigError naming the choices if
  unknown."""
  module = canonical_name(name)
  if module in AVAILABLE:
    return _module(module)
  raise errors.ConfigError(f'unknown method {name!r}; available: '
                           f'{", ".join(AVAILABLE)}')


__all__ = ['base', 'get', 'card', 'aliases', 'canonical_name',
           'in_paper_order', 'unlearning_methods', 'AVAILABLE']
