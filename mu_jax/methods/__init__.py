"""Unlearning methods by name: `get(name)` imports `mu_jax.methods.<name>`.

Each method module exports `make(config, ctx) -> base.Method` and its
`CARD` (`base.Card`: label, aliases, table order, the tuner's knob); its
defaults (the `config.method` section, per forgetting mode) live in
`configs/<name>.py:method(mode)`. A new method is one file here plus its
config file: every list of methods (the aliases `--method` accepts, the
suite's rows and order, the tuner's knobs, the benchmarks' and the
robustness tool's methods) is built here, from the modules, when asked, and
every experiment config's table of sections (`config.method_configs`) from
the config files. `section` looks a method up in that table.
"""

import copy
import importlib
import os
import pkgutil

import ml_collections

from mu_jax import errors
from mu_jax import splits
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


def section(config: ml_collections.ConfigDict, name: str,
            mode: str) -> ml_collections.ConfigDict:
  """Method `name`'s section for forgetting `mode`, from the config's table.

  Every experiment config carries `config.method_configs`, {mode: {name:
  section}} (configs/default.py:method_table); the config files know a
  method by its module name only, so aliases are resolved here first.

  Args:
    config: an experiment config.
    name: a method name or alias (e.g. the original CLI's 'salUN').
    mode: a forgetting mode ('classwise' is accepted).

  Returns:
    A copy of the table's section, to install as `config.method`.

  Raises:
    errors.ConfigError: an unknown method or mode, a config without the
      table, or a table without that section.
  """
  module = canonical_name(name)
  get(module)  # Unknown method: a ConfigError naming the choices.
  mode = splits.canonical_mode(mode)
  if mode not in splits.MODES:
    raise errors.ConfigError(f'unknown mode {mode!r}; choose one of '
                             f'{", ".join(splits.MODES)} (or classwise)')
  table = config.get('method_configs')
  if table is None:
    raise errors.ConfigError(
        f'the config has no method_configs table to take {module}\'s {mode} '
        'section from; add one in the config file with '
        '`config.method_configs = default.method_table()` (configs/'
        'default.py), or give the section itself as config.method '
        f'(with method.mode = {mode!r}) and no --method')
  if mode not in table or module not in table[mode]:
    has = ', '.join(table[mode]) if mode in table else 'none'
    raise errors.ConfigError(
        f'the config\'s method_configs table has no {mode} section for '
        f'{module} (its {mode} sections: {has}); add configs/{module}.py '
        'with method(mode), or the section to the config\'s table')
  return copy.deepcopy(table[mode][module])


__all__ = ['base', 'get', 'card', 'aliases', 'canonical_name',
           'in_paper_order', 'unlearning_methods', 'section', 'AVAILABLE']
