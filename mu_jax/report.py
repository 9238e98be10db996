"""The run report: `report.json` (written atomically) and the printed table."""

import importlib.metadata
import json
import os
import platform
from typing import Any, Mapping

import jax

PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint',
            'tensorflow-datasets', 'ml-collections', 'absl-py', 'numpy',
            'scikit-learn')


def versions() -> dict[str, str]:
  out = {'python': platform.python_version()}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = 'not installed'
  return out


def device_info() -> dict[str, Any]:
  devices = jax.devices()
  return {'platform': devices[0].platform, 'kind': devices[0].device_kind,
          'count': len(devices), 'processes': jax.process_count()}


def write_json(path: str, payload: Mapping[str, Any]):
  """Writes JSON via a temporary file and a rename: never half-written."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(payload, f, indent=2, sort_keys=False)
    f.write('\n')
  os.replace(tmp, path)


_COLUMNS = (('UA', 'unlearn_acc'), ('RA', 'retain_acc'), ('TA', 'test_acc'),
            ('Forget-test', 'forget_test_acc'), ('MIA-eff.', 'mia_efficacy'),
            ('MIA-AUC', 'mia_loss_auc'), ('Avg.Gap', 'avg_gap'))


def format_table(rows: Mapping[str, Mapping[str, float]],
                 seconds: Mapping[str, float]) -> str:
  """A markdown table in the SalUn paper's format (UA, RA, TA, MIA, gap, RTE).

  Args:
    rows: model label -> metrics dict (see `evaluate.metrics`).
    seconds: model label -> run time in seconds (RTE for the unlearned one).
  """
  columns = [c for c in _COLUMNS
             if any(c[1] in row for row in rows.values())]
  header = ['model'] + [c[0] for c in columns] + ['time (s)']
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
  for label, row in rows.items():
    cells = [label]
    for _, key in columns:
      value = row.get(key)
      fmt = '{:.3f}' if key == 'mia_loss_auc' else '{:.2f}'
      cells.append('—' if value is None else fmt.format(value))
    time_s = seconds.get(label)
    cells.append('—' if time_s is None else f'{time_s:.1f}')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)
