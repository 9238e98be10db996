"""What a benchmark suite run shows: its tables, plots, report.json, results.md.

From the finished cells (mu_jax/suite_store.py) of a suite run this module
computes the mean and sample std over seeds of every (mode, model)
(`summarize`), lays them out in the SalUn paper's table (`format_table`)
under a heading per mode (`title`), draws the figures through
mu_jax/plots.py (`draw`), and writes report.json and results.md (`write`).
It runs nothing: a report of a stopped suite (`suite.report_only`) is the same
code on fewer cells.
"""

import os
import time
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np
from absl import logging

from mu_jax import atomic_files
from mu_jax import data as data_lib
from mu_jax import guard
from mu_jax import methods
from mu_jax import parallel
from mu_jax import plots
from mu_jax import report
from mu_jax import suite_store



def labels() -> dict[str, str]:
  """Row -> the literature's name (SalUn, Unlearn-Sparse tables): the
  original model's and each method's (its card's label)."""
  names = {name: methods.card(name).label for name in methods.AVAILABLE}
  return {'original': 'Original', **names,
          **{name + suite_store.UNGUARDED: f'{label} (unguarded)'
             for name, label in names.items()}}
MODE_TITLES = {'random': 'Random forgetting',
               'class_wise': 'Class-wise forgetting'}
# (header, metric): the SalUn paper's columns; RTE is in seconds here.
TABLE_COLUMNS = (('UA', 'unlearn_acc'), ('RA', 'retain_acc'),
                 ('TA', 'test_acc'), ('MIA-Efficacy', 'mia_efficacy'),
                 ('Avg. Gap', 'avg_gap'), ('F', 'forgetting_quality'),
                 ('Score', 'challenge_score'), ('RTE (s)', 'seconds'),
                 ('of which guard (s)', 'guard_seconds'))
# Shown only when some row has them (--config.suite.forgetting_quality_models;
# 'guard_seconds': of RTE, the guard rails' checks and unkept attempts).
_OPTIONAL_COLUMNS = ('forgetting_quality', 'challenge_score', 'guard_seconds')


def summarize(cells: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """Mean and std over seeds of one model's cells.

  Args:
    cells: cell dicts of one (mode, model), one per seed, each with 'seed',
      'status' ('ok' or 'failed') and, if ok, 'metrics' and 'seconds'.

  Returns:
    {'n': successful seeds, 'seeds', 'failed': [{'seed', 'error'}],
    'mean': {metric: mean}, 'std': {metric: sample std (ddof=1), 0 for one
    seed}} over the metrics and 'seconds' of the successful cells.
  """
  ok = [c for c in cells if c['status'] == 'ok']
  values = {}
  for cell in ok:
    numbers = {**cell['metrics'], 'seconds': cell['seconds']}
    # Of RTE, what the guard rails added: checks, the attempts not kept.
    overhead = (cell.get('guard') or {}).get('overhead_seconds')
    if overhead is not None:
      numbers['guard_seconds'] = overhead
    for key, value in numbers.items():
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        values.setdefault(key, []).append(float(value))
  return {
      'n': len(ok), 'seeds': [c['seed'] for c in ok],
      'failed': [{'seed': c['seed'], 'error': c['error']}
                 for c in cells if c['status'] == 'failed'],
      'mean': {k: float(np.mean(v)) for k, v in values.items()},
      'std': {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
              for k, v in values.items()}}


def format_table(summary: Mapping[str, Mapping[str, Any]],
                 order: Sequence[str]) -> str:
  """A markdown table in the SalUn paper's format, mean +- std over seeds.

  Args:
    summary: model -> `summarize` output.
    order: the rows, by model name.
  """
  columns = [(name, key) for name, key in TABLE_COLUMNS
             if key not in _OPTIONAL_COLUMNS or any(
                 key in row['mean'] for row in summary.values())]
  header = ['Method'] + [name for name, _ in columns]
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join(['---'] + ['---:'] * len(columns)) + '|']
  for model in order:
    if model not in summary:
      continue
    row = summary[model]
    n, failed = row['n'], len(row['failed'])
    label = labels().get(model, model)
    if failed:
      label += f' ({n}/{n + failed} seeds)'
    if not n:
      cells = [f'failed ({failed}/{failed} seeds)'] + ['—'] * (
          len(columns) - 1)
    else:
      cells = []
      for _, key in columns:
        if key not in row['mean']:
          cells.append('—')
          continue
        digits = {'seconds': 1, 'guard_seconds': 1, 'forgetting_quality': 3,
                  'challenge_score': 3}.get(key, 2)
        cells.append(f"{row['mean'][key]:.{digits}f} ± "
                     f"{row['std'][key]:.{digits}f}")
    lines.append('| ' + ' | '.join([label] + cells) + ' |')
  return '\n'.join(lines)


def paired_comparison(mode_cells: Mapping[str, Sequence[Mapping[str, Any]]],
                      order: Sequence[str], metric: str = 'avg_gap',
                      confidence: float = 0.95) -> list[dict[str, Any]]:
  """Each row's `metric` against the best row's, paired over seeds.

  The best row is the method (or the original) with the lowest mean. For
  every other row the differences row - best on the seeds both finished
  give a mean and a Student-t interval (a paired t-test at 1 -
  `confidence`): the ranking holds when the interval excludes 0. With
  n = 3 seeds the interval is wide (t = 4.30), which is the point.

  Args:
    mode_cells: model -> its cells of one mode (`CellStore.collect`).
    order: the rows; 'retrain' (the reference, gap 0) is skipped.
    metric: a cell metric where lower is better.
    confidence: the interval's coverage.

  Returns:
    [{'model', 'best', 'n', 'mean', 'low', 'high', 'holds'}], in `order`;
    low and high are None, and holds False, for n < 2.
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top
  values = {model: {c['seed']: float(c['metrics'][metric])
                    for c in mode_cells.get(model, [])
                    if c['status'] == 'ok' and metric in c['metrics']}
            for model in order if model != 'retrain'}
  values = {m: v for m, v in values.items() if v}
  if len(values) < 2:
    return []
  best = min(values, key=lambda m: np.mean(list(values[m].values())))
  rows = []
  for model in values:
    if model == best:
      continue
    seeds = sorted(set(values[model]) & set(values[best]))
    diffs = np.array([values[model][s] - values[best][s] for s in seeds])
    row = {'model': model, 'best': best, 'n': len(diffs),
           'mean': float(diffs.mean()) if len(diffs) else None,
           'low': None, 'high': None, 'holds': False}
    if len(diffs) >= 2:
      half = float(stats.t.ppf((1 + confidence) / 2, len(diffs) - 1)
                   * diffs.std(ddof=1) / np.sqrt(len(diffs)))
      row.update(low=row['mean'] - half, high=row['mean'] + half)
      row['holds'] = bool(row['low'] > 0 or row['high'] < 0)
    rows.append(row)
  return rows


def format_comparison(rows: Sequence[Mapping[str, Any]],
                      metric_name: str = 'Avg. Gap') -> str:
  """`paired_comparison`'s rows as a markdown table."""
  if not rows:
    return ''
  best = labels().get(rows[0]['best'], rows[0]['best'])
  lines = [f'{metric_name} against the best ({best}), paired over seeds '
           '(95 % Student-t interval of the difference):', '',
           '| Method | n | difference | 95 % interval | ranking |',
           '|---|---:|---:|---|---|']
  for row in rows:
    label = labels().get(row['model'], row['model'])
    if row['low'] is None:
      interval, verdict = '—', 'n < 2: no interval'
    else:
      interval = f"[{row['low']:.2f}, {row['high']:.2f}]"
      verdict = 'holds' if row['holds'] else 'within noise'
    mean = '—' if row['mean'] is None else f"{row['mean']:+.2f}"
    lines.append(f"| {label} | {row['n']} | {mean} | {interval} | "
                 f'{verdict} |')
  return '\n'.join(lines)


def title(mode: str, split_info: Mapping[str, Any], *, dataset: str,
          model: str, seeds: int, seeds_done: int | None = None) -> str:
  """The heading of one mode's table.

  Args:
    mode: 'random' or 'class_wise'.
    split_info: the mode's split sizes ('forget', 'retain',
      'forget_classes').
    dataset: the dataset's name.
    model: the model's name.
    seeds: the seeds the suite runs.
    seeds_done: seeds with a finished retrain model; fewer than `seeds` (a
      report_only report after a stopped run) says so.
  """
  total = split_info['forget'] + split_info['retain']
  if mode == 'random':
    what = (f"{split_info['forget']:,} of {total:,} train images "
            f"({100 * split_info['forget'] / total:.0f}%)")
  else:
    classes = ', '.join(str(c) for c in split_info['forget_classes'])
    what = f"class {classes} ({split_info['forget']:,} train images)"
  count = f'{seeds} seeds'
  if seeds_done is not None and seeds_done < seeds:
    count = f'{seeds_done} of {seeds} seeds'
  return f'{MODE_TITLES[mode]}: {what}, {dataset}, {model}, {count}'


def draw(out_dir: str, mode: str, heading: str,
         summary: Mapping[str, Any], cells: Mapping[str, Sequence[dict]],
         methods: Sequence[str], *, store: suite_store.CellStore,
         tsne_seed: int, tsne_iterations: int) -> list[str]:
  """The plots of one mode; a plot that fails is logged and left out.

  Args:
    out_dir: folder of the PNG files (`<kind>_<mode>.png`).
    mode: the forgetting mode.
    heading: the mode's `title`.
    summary: model -> `summarize` output.
    cells: model -> the mode's cells.
    methods: the methods, in row order.
    store: where the t-SNE features of the cells are.
    tsne_seed: the seed whose features are embedded (the first).
    tsne_iterations: t-SNE optimisation steps.

  Returns:
    The paths written.
  """
  ok = {m: [c for c in cs if c['status'] == 'ok']
        for m, cs in cells.items()}
  written = []

  def attempt(name, fn):
    try:
      written.append(fn(os.path.join(out_dir, f'{name}_{mode}.png')))
    except Exception:  # pylint: disable=broad-except
      # A figure is not worth losing the report over.
      logging.exception('suite: plot %s_%s failed', name, mode)

  # Metric bars against retrain.
  if 'retrain' in summary and summary['retrain']['n']:
    attempt('bars', lambda p: plots.metric_bars(
        summary, methods, p, labels=labels(), title=heading))
  # Forget and retain accuracy over the unlearning steps, sampled at the
  # first seed's steps.
  curves = {}
  for method in methods:
    runs = [c['curve'] for c in ok[method]]
    if runs:
      steps = runs[0]['step']
      curves[method] = {'step': steps, **{
          key: [np.interp(steps, r['step'], r[key]) for r in runs]
          for key in ('forget_acc', 'retain_acc')}}
  if curves and 'retrain' in summary:
    reference = {k: summary['retrain']['mean'][k]
                 for k in ('forget_acc', 'retain_acc')}
    attempt('curves', lambda p: plots.accuracy_curves(
        curves, p, reference=reference, labels=labels(), title=heading))
  # t-SNE of the penultimate features, one seed.
  panels = {}
  for model in (*suite_store.BASE_MODELS, *methods):
    if any(c['seed'] == tsne_seed for c in ok[model]):
      arrays = store.load_features(mode, tsne_seed, model)
      if arrays is not None:
        panels[model] = arrays
  if panels:
    names = {**labels(), 'original': 'Original (before)'}
    attempt('tsne', lambda p: plots.tsne(
        panels, p, labels=names, title=heading + f', seed {tsne_seed}',
        iterations=tsne_iterations, seed=tsne_seed))
  # Layer-wise CKA to the original: the matrices, and their diagonals.
  matrices, diagonals, layers = {}, {}, None
  for model in ('retrain', *methods):
    runs = [np.asarray(c['cka']['matrix']) for c in ok[model] if 'cka' in c]
    if runs:
      layers = ok[model][0]['cka']['layers']
      matrices[model] = np.mean(runs, 0)
      diagonals[model] = np.stack([np.diag(r) for r in runs])
  if matrices:
    attempt('cka', lambda p: plots.cka_heatmaps(
        matrices, layers, p, labels=labels(),
        title=heading + ' (mean over seeds)'))
    attempt('cka_layers', lambda p: plots.cka_layers(
        diagonals, layers, p, labels=labels(), title=heading))
  return written


def write(workdir: str, *, config: ml_collections.ConfigDict,
          methods: Sequence[str], modes: Sequence[str], seeds: Sequence[int],
          dataset: data_lib.Dataset, splits: Mapping[str, Mapping[str, Any]],
          cells: Mapping[str, Mapping[str, Sequence[dict]]],
          store: suite_store.CellStore, trained: Mapping[str, Any],
          timings: Mapping[str, Any], total_start: float) -> dict[str, Any]:
  """Aggregates the cells; writes report.json, results.md and the plots.

  Args:
    workdir: the suite's output folder.
    config: the suite's config.
    methods: the methods, in row order.
    modes: the forgetting modes.
    seeds: the seeds.
    dataset: the suite's data.
    splits: mode -> split sizes ('name', 'forget', 'retain', 'test',
      'forget_classes') of the first seed.
    cells: `CellStore.collect` of the modes, seeds and models.
    store: the cell store (the t-SNE features).
    trained: checkpoint name -> training info of models trained together.
    timings: the run's timings so far.
    total_start: `time.perf_counter()` at the start of the run.

  Returns:
    The report: per-mode 'summary', 'comparisons' (`paired_comparison`
    of Avg. Gap), 'tables' and 'titles', 'table' (all modes' markdown), 'failures', 'guard' (the cells in which the guard
    rails acted), 'plots', 'per_seed' metrics, timings and provenance.
  """
  order = [*suite_store.BASE_MODELS, *methods]
  summary, tables, titles, figures, failures = {}, {}, {}, {}, []
  comparisons = {}  # Mode -> `paired_comparison` of Avg. Gap.
  guarded = []  # Cells in which the guard rails acted.
  for mode in modes:
    summary[mode] = {m: summarize(cs) for m, cs in cells[mode].items() if cs}
    titles[mode] = title(
        mode, splits[mode], dataset=dataset.name, model=config.model.name,
        seeds=len(seeds), seeds_done=len(
            [c for c in cells[mode]['retrain'] if c['status'] == 'ok']))
    tables[mode] = format_table(summary[mode], order)
    comparisons[mode] = paired_comparison(cells[mode], order)
    if comparisons[mode]:
      tables[mode] += '\n\n' + format_comparison(comparisons[mode])
    for model in order:
      for cell in cells[mode][model]:
        if cell['status'] == 'failed':
          failures.append({k: cell[k] for k in ('mode', 'seed', 'model',
                                                'error')})
        elif cell.get('guard', {}).get('acted'):
          guarded.append({'mode': mode, 'seed': cell['seed'], 'model': model,
                          'summary': cell['guard']['summary']})
    unmet = _unmet(cells[mode], order)
    if unmet:
      # Not ordinary numbers: the guard rails did not reach the target.
      tables[mode] += ('\n\nNOT FORGOTTEN (the guard rails did not reach '
                       'the target; these seeds are in the means above): '
                       + '; '.join(unmet))
  plot_start = time.perf_counter()
  if config.suite.plots and parallel.is_main_process():  # It writes them.
    for mode in modes:
      figures[mode] = [os.path.relpath(p, workdir) for p in draw(
          os.path.join(workdir, 'plots'), mode, titles[mode], summary[mode],
          cells[mode], methods, store=store, tsne_seed=seeds[0],
          tsne_iterations=config.suite.tsne_iterations)]
  timings = {**timings, 'plot_seconds': time.perf_counter() - plot_start}
  timings['total_seconds'] = time.perf_counter() - total_start
  table = '\n\n'.join(f'{titles[m]}\n\n{tables[m]}' for m in modes)
  payload = {
      'config': suite_store.config_json(config),
      'methods': list(methods), 'modes': list(modes), 'seeds': list(seeds),
      'dataset': {'name': dataset.name, 'fingerprint': dataset.fingerprint(),
                  'train': int(len(dataset.train_labels)),
                  'test': int(len(dataset.test_labels))},
      'splits': splits, 'summary': summary, 'comparisons': comparisons,
      'titles': titles, 'tables': tables, 'table': table, 'failures': failures,
      'guard': guarded,
      'plots': figures, 'models': trained, 'timings': timings,
      'per_seed': {mode: {model: {c['seed']: c.get('metrics') for c in cs}
                          for model, cs in cells[mode].items()}
                   for mode in modes},
      'workdir': workdir, 'versions': report.versions(),
      'device': report.device_info()}
  report.write_json(os.path.join(workdir, 'report.json'), payload)
  _write_markdown(os.path.join(workdir, 'results.md'), payload)
  return payload


def _unmet(mode_cells: Mapping[str, list], order) -> list[str]:
  """'FT: seeds 0, 2 (kept_original)' for each model with cells whose
  guard outcome is short of the target (`guard.UNMET`)."""
  out = []
  for model in order:
    bad = [c for c in mode_cells.get(model, [])
           if c.get('guard', {}).get('outcome') in guard.UNMET]
    if bad:
      out.append(f"{labels().get(model, model)}: seed" +
                 ('s ' if len(bad) > 1 else ' ') +
                 ', '.join(f"{c['seed']} ({c['guard']['outcome']})"
                           for c in bad))
  return out


def _write_markdown(path: str, payload: Mapping[str, Any]):
  """results.md: per mode its heading, table and plots; guard, failures."""
  lines = ['# Benchmark suite', '',
           'Mean ± sample std over seeds; each seed has its own split, '
           'original and retrain models. RTE: unlearning wall time in '
           'seconds (original, retrain: training time).', '']
  for mode in payload['modes']:
    lines += [f"## {payload['titles'][mode]}", '', payload['tables'][mode],
              '']
    lines += [f'![{p}]({p})' for p in payload['plots'].get(mode, [])] + ['']
  if payload['guard']:
    lines += ['## Guard rails', '',
              'Cells in which the oracle-free guard rails changed the run '
              '(mu_jax/guard.py):', '']
    lines += [f"- {labels().get(g['model'], g['model'])}, {g['mode']}, seed "
              f"{g['seed']}: {g['summary']}" for g in payload['guard']]
    lines.append('')
  if payload['failures']:
    lines += ['## Failures', '']
    for f in payload['failures']:
      error = f['error'].splitlines()[0][:300] if f['error'] else ''
      lines.append(f"- {labels().get(f['model'], f['model'])}, {f['mode']}, "
                   f"seed {f['seed']}: {error}")
    lines.append('')
  lines.append(f"Total wall time: {payload['timings']['total_seconds']:.0f} s"
               f" on {payload['device']['kind']}.")
  if not parallel.is_main_process():  # Process 0 writes the run's files.
    return
  atomic_files.write_text(path, '\n'.join(lines) + '\n')
