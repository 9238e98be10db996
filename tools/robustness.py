"""The robustness grids: every method, with its defaults, with and without
the guard rails (docs/RESULTS.md).

  python tools/make_mnist5k.py runs/data/mnist5k.npz      # once
  python tools/make_eval_datasets.py runs/data             # once
  python tools/robustness.py --grid dev --out runs/robustness    # tuning
  python tools/robustness.py --grid eval --out runs/evaluation   # reported
  python tools/robustness.py --out runs/robustness \
      --settings embedded_class3 --methods scrub --guard on \
      --set optim.lr=0.002 --tag lr2e-3                  # a variant

Two grids, kept apart. The *development* grid (`--grid dev`) is where
defaults may be tuned: the embedded Fashion-MNIST subset, MNIST-5k and the
full Fashion-MNIST, with the classes, seeds and forget-set sizes the
defaults were looked at on. The *evaluation* grid (`--grid eval`) is run
once, after the defaults are frozen, and is what docs/RESULTS.md reports as
the robustness result: other datasets (a colour one built by
tools/make_eval_datasets.py from photographs, scikit-learn's 8 x 8 digits),
other classes, seeds and forget-set sizes.

Each (setting, method, guard, tag) cell is one unlearning run from the
setting's original model, scored against its retrain model; both models are
trained once per setting (and seed) into --checkpoint_dir and reused. Cells
are stored in --out/cells/ as JSON, so a rerun skips finished cells and a
killed grid resumes. At the end the script prints one markdown table per
setting and a summary against the bar of the robustness issue: class-wise,
UA >= 95 with test accuracy within 3 points of the original's; random, an
Avg. Gap no larger than the original's and at most 3 points of test accuracy
lost; no NaN.
"""

import argparse
import copy
import json
import os
import sys
import time

# Run from the repository root or from tools/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mu_jax import methods  # pylint: disable=g-import-not-at-top
from mu_jax import parallel  # pylint: disable=g-import-not-at-top



def _embedded(mode, *, seed=0, classes=(0,), forget_num=0,
              forget_fraction=0.1):
  def apply(config, args):
    del args
    config.seed = seed
    config.split.mode = mode
    config.split.forget_classes = classes
    config.split.forget_num = forget_num
    config.split.forget_fraction = forget_fraction
  return apply


def _other_data(name, source, mode, *, classes=(0,), seed=0,
                forget_fraction=0.1):
  def apply(config, args):
    _embedded(mode, seed=seed, classes=classes,
              forget_fraction=forget_fraction)(config, args)
    config.data.name = name
    config.data.source = source
    config.data.path = (os.path.join(args.data_dir, f'{name}.npz')
                        if source == 'npz' else '')
  return apply


# Setting name -> what it changes in configs/default.py: the development
# grid, where the defaults were looked at and may be tuned.
DEV_SETTINGS = {
    'embedded_random10': _embedded('random'),
    'embedded_class0': _embedded('class_wise'),
    'embedded_class3': _embedded('class_wise', classes=(3,)),
    'embedded_class7': _embedded('class_wise', classes=(7,)),
    'embedded_class3_s7': _embedded('class_wise', classes=(3,), seed=7),
    'embedded_random10_s1': _embedded('random', seed=1),
    'embedded_random10_s2': _embedded('random', seed=2),
    'embedded_random1pct': _embedded('random', forget_fraction=0.01),
    'embedded_random20pct': _embedded('random', forget_fraction=0.2),
    'embedded_random50': _embedded('random', forget_num=50),
    'mnist5k_random10': _other_data('mnist5k', 'npz', 'random'),
    'mnist5k_class3': _other_data('mnist5k', 'npz', 'class_wise',
                                  classes=(3,)),
    'fmnist_random10': _other_data('fashion_mnist', 'auto', 'random'),
    'fmnist_class5': _other_data('fashion_mnist', 'auto', 'class_wise',
                                 classes=(5,)),
}
# The evaluation grid: run once with the frozen defaults, never tuned on.
EVAL_SETTINGS = {
    'tiles_random10': _other_data('photo_tiles', 'npz', 'random', seed=1),
    'tiles_class2': _other_data('photo_tiles', 'npz', 'class_wise',
                                classes=(2,), seed=1),
    'skdigits_random10': _other_data('sklearn_digits', 'npz', 'random',
                                     seed=2),
    'skdigits_class8': _other_data('sklearn_digits', 'npz', 'class_wise',
                                   classes=(8,), seed=2),
    'mnist5k_class7_s1': _other_data('mnist5k', 'npz', 'class_wise',
                                     classes=(7,), seed=1),
    'mnist5k_random5pct_s2': _other_data('mnist5k', 'npz', 'random', seed=2,
                                         forget_fraction=0.05),
    'embedded_class5_s3': _embedded('class_wise', classes=(5,), seed=3),
}
SETTINGS = {**DEV_SETTINGS, **EVAL_SETTINGS}
GRIDS = {'dev': DEV_SETTINGS, 'eval': EVAL_SETTINGS}


def _parse_value(text):
  try:
    return json.loads(text)
  except json.JSONDecodeError:
    return text


def _set(section, path, value):
  *parents, leaf = path.split('.')
  for parent in parents:
    section = section[parent]
  if isinstance(section[leaf], tuple):
    value = tuple(value)
  section[leaf] = type(section[leaf])(value) if isinstance(
      section[leaf], (int, float)) and not isinstance(
          section[leaf], bool) else value


def _cell_path(args, setting, method, guard, tag):
  name = f'{method}_{"guard" if guard else "plain"}'
  if tag:
    name += f'_{tag}'
  return os.path.join(args.out, 'cells', setting, name + '.json')


def _cell_config(config, method, guard, overrides):
  """The method section and guard settings a cell runs with."""
  from configs import default  # pylint: disable=g-import-not-at-top
  cell_config = copy.deepcopy(config)
  cell_config.method = default.method_config(method, config.split.mode)
  for item in overrides:
    path, _, value = item.partition('=')
    _set(cell_config.method, path, _parse_value(value))
  cell_config.guard.enabled = guard
  return cell_config


def _settings_of(cell_config) -> dict:
  """What a cell's numbers depend on besides the setting (a change reruns
  it); without the guard, its thresholds do not matter."""
  guard = (json.loads(cell_config.guard.to_json())
           if cell_config.guard.enabled else {'enabled': False})
  return {'method_config': json.loads(cell_config.method.to_json()),
          'guard_config': guard}


def _done(path: str, cell_config) -> bool:
  """A finished cell made with the same method and guard settings."""
  if not os.path.exists(path):
    return False
  with open(path) as f:
    cell = json.load(f)
  return all(cell.get(k) == v for k, v in _settings_of(cell_config).items())


def run_setting(args, setting):
  """Runs the cells of one setting that are not done (with these settings)."""
  from configs import default  # pylint: disable=g-import-not-at-top
  from mu_jax import classifiers  # pylint: disable=g-import-not-at-top
  from mu_jax import evaluate  # pylint: disable=g-import-not-at-top
  from mu_jax import experiment  # pylint: disable=g-import-not-at-top
  from mu_jax import unlearn  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  config.checkpoint_dir = args.checkpoint_dir
  SETTINGS[setting](config, args)
  todo = [(m, g) for m in args.methods for g in args.guard
          if not _done(_cell_path(args, setting, m, g, args.tag),
                       _cell_config(config, m, g, args.set))]
  if not todo:
    return
  dataset, mesh = experiment.setup(config)
  split = experiment.make_split(config, dataset)
  base = experiment.Experiment(config, dataset, mesh)
  original, original_info, retrained, retrain_info = (
      classifiers.train_classifiers(base, split))
  rows = {k: base.evaluate(s, split, f'eval {k}')
          for k, s in (('original', original), ('retrain', retrained))}
  rows['original']['avg_gap'] = evaluate.avg_gap(rows['original'],
                                                 rows['retrain'])
  rows['retrain']['avg_gap'] = 0.0
  for method, guard in todo:
    cell_config = _cell_config(config, method, guard, args.set)
    exp = experiment.Experiment(cell_config, dataset, mesh)
    start = time.perf_counter()
    try:
      state, info, _ = unlearn.unlearn(exp, original, split)
      row = exp.evaluate(state, split, 'eval unlearned')
      row['avg_gap'] = evaluate.avg_gap(row, rows['retrain'])
      cell = {'status': 'ok', 'metrics': row, 'seconds': info['seconds'],
              'compile_seconds': info['compile_seconds'],
              'guard': info['guard']}
    except Exception as e:  # pylint: disable=broad-except
      cell = {'status': 'failed', 'error': f'{type(e).__name__}: {e}'}
    cell.update(setting=setting, method=method, guard_on=guard, tag=args.tag,
                set=list(args.set), wall_seconds=time.perf_counter() - start,
                base=rows, split={'name': split.name, 'mode': split.mode},
                base_seconds={'original': original_info['seconds'],
                              'retrain': retrain_info['seconds']},
                **_settings_of(cell_config))
    path = _cell_path(args, setting, method, guard, args.tag)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
      json.dump(cell, f, indent=1)
    os.replace(path + '.tmp', path)
    print(_line(cell), flush=True)


def _outcome(cell) -> str:
  """The guard's outcome ('' unguarded or without one)."""
  return (cell.get('guard') or {}).get('outcome', '')


def _budget_used(cell) -> str:
  """Steps the guard spent, as a fraction of the retrain's ('' unguarded)."""
  budget = (cell.get('guard') or {}).get('budget')
  if not budget or not budget.get('retrain_steps'):
    return ''
  return f"{budget['spent_steps'] / budget['retrain_steps']:.2f}"


def _verdict(cell) -> str:
  """'ok' or what the robustness bar says is wrong with the cell; a miss
  the guard rails did not flag (outcome forgotten) is marked 'silent'."""
  if cell['status'] != 'ok':
    return 'FAILED'
  problems = _misses(cell)
  if problems and cell['guard_on'] and _outcome(cell) == 'forgotten':
    problems.append('silent')
  return ','.join(problems) or 'ok'


def _misses(cell) -> list[str]:
  """What the robustness bar says is wrong with a finished cell."""
  row, base = cell['metrics'], cell['base']
  problems = []
  if cell['split']['mode'] == 'class_wise':
    if row['unlearn_acc'] < 95:
      problems.append('UA<95')
    if base['original']['test_acc'] - row['test_acc'] > 3:
      problems.append('TA-3')
  else:
    if row['avg_gap'] > base['original']['avg_gap'] + 1e-9:
      problems.append('gap>orig')
    if base['original']['test_acc'] - row['test_acc'] > 3:
      problems.append('TA-3')
  return problems


def _line(cell) -> str:
  label = f"{cell['setting']} {cell['method']}" + (
      ' +guard' if cell['guard_on'] else '')
  if cell['status'] != 'ok':
    return f'{label}: {cell["error"]}'
  row = cell['metrics']
  return (f"{label}: UA {row['unlearn_acc']:.2f} RA {row['retain_acc']:.2f} "
          f"TA {row['test_acc']:.2f} MIA {row['mia_efficacy']:.2f} gap "
          f"{row['avg_gap']:.2f} ({cell['seconds']:.1f} s) {_outcome(cell)} "
          f"budget {_budget_used(cell)} {_verdict(cell)}")


def tables(args) -> str:
  """Markdown: one table per setting, then the summary."""
  out, summary = [], {}
  for setting in args.settings:
    directory = os.path.join(args.out, 'cells', setting)
    if not os.path.isdir(directory):
      continue
    cells = []
    for name in sorted(os.listdir(directory)):
      with open(os.path.join(directory, name)) as f:
        cell = json.load(f)
      if (cell['tag'] or '') == (args.tag or '') and cell['method'] in (
          args.methods):
        cells.append(cell)
    if not cells:
      continue
    base = cells[0]['base']
    out.append(f"\n### {setting} ({cells[0]['split']['name']})\n")
    out.append('| model | guard | UA | RA | TA | MIA-eff. | Avg.Gap | '
               'time (s) | guard outcome | steps / retrain | bar |')
    out.append('|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|')
    for key in ('original', 'retrain'):
      row = base[key]
      out.append(f"| {key} | | {row['unlearn_acc']:.2f} | "
                 f"{row['retain_acc']:.2f} | {row['test_acc']:.2f} | "
                 f"{row['mia_efficacy']:.2f} | {row['avg_gap']:.2f} | "
                 f"{cells[0]['base_seconds'][key]:.1f} | | | |")
    order = {m: i for i, m in enumerate(args.methods)}
    for cell in sorted(cells, key=lambda c: (order[c['method']],
                                             not c['guard_on'])):
      verdict = _verdict(cell)
      on = 'on' if cell['guard_on'] else 'off'
      summary.setdefault((cell['method'], cell['guard_on']), []).append(
          (setting, verdict))
      if cell['status'] != 'ok':
        out.append(f"| {cell['method']} | {on} | {cell['error']} |||||||||")
        continue
      row = cell['metrics']
      out.append(
          f"| {cell['method']} | {on} | "
          f"{row['unlearn_acc']:.2f} | {row['retain_acc']:.2f} | "
          f"{row['test_acc']:.2f} | {row['mia_efficacy']:.2f} | "
          f"{row['avg_gap']:.2f} | {cell['seconds']:.1f} | "
          f"{_outcome(cell)} | {_budget_used(cell)} | {verdict} |")
  out.append('\n### Against the bar (settings that miss it)\n')
  out.append('| method | guard | settings meeting the bar | misses |')
  out.append('|---|---|---:|---|')
  for (method, guard), results in sorted(summary.items(),
                                         key=lambda kv: (order[kv[0][0]],
                                                         not kv[0][1])):
    misses = [f'{s} ({v})' for s, v in results if v != 'ok']
    out.append(f"| {method} | {'on' if guard else 'off'} | "
               f"{len(results) - len(misses)}/{len(results)} | "
               f"{', '.join(misses) or '—'} |")
  return '\n'.join(out)


def parse_args(argv=None) -> argparse.Namespace:
  """The command line, with the settings, methods and guard resolved."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='runs/robustness')
  parser.add_argument('--checkpoint_dir', default='checkpoints')
  parser.add_argument('--grid', choices=sorted(GRIDS), default='dev',
                      help='the settings of the development or evaluation '
                      'grid (unless --settings names some)')
  parser.add_argument('--settings', default='')
  parser.add_argument('--methods', default='',
                      help='comma-separated; default: every unlearning '
                      'method (mu_jax.methods.unlearning_methods)')
  parser.add_argument('--guard', default='on,off',
                      help='on, off or on,off')
  parser.add_argument('--set', action='append', default=[],
                      help='method-section override, e.g. optim.lr=0.01')
  parser.add_argument('--tag', default='',
                      help='names the cells of a --set variant')
  parser.add_argument('--data_dir', default='runs/data',
                      help='the npz files of tools/make_mnist5k.py and '
                      'tools/make_eval_datasets.py')
  parser.add_argument('--report_only', action='store_true')
  args = parser.parse_args(argv)
  args.settings = ([s for s in args.settings.split(',') if s]
                   or list(GRIDS[args.grid]))
  args.methods = ([m for m in args.methods.split(',') if m]
                  or methods.unlearning_methods())
  args.guard = [g == 'on' for g in args.guard.split(',') if g]
  unknown = set(args.settings) - set(SETTINGS)
  if unknown:
    parser.error(f'unknown settings {sorted(unknown)}; known: '
                 f'{", ".join(SETTINGS)}')
  if args.set and not args.tag:
    parser.error('--set needs a --tag to name its cells')
  return args


def main():
  args = parse_args()
  if not args.report_only:
    parallel.configure_host(cpu_convolutions='eigen')  # The cnn's faster.
    for setting in args.settings:
      run_setting(args, setting)
  print(tables(args))


if __name__ == '__main__':
  main()
