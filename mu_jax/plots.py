"""The suite's figures, written as PNG files with matplotlib's Agg canvas.

Every function takes plain numbers (dicts, lists, numpy arrays) and a path,
draws one figure and returns the path; none of them knows about runs or
checkpoints (mu_jax/suite_report.py turns a suite's cells into their
inputs). Figures are built with `matplotlib.figure.Figure`, not pyplot, so
nothing here touches global matplotlib state or needs a display.
"""

import io
import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from mu_jax import atomic_files

# Mean and std of one metric per model: {'mean': {...}, 'std': {...}}.
Summary = Mapping[str, Mapping[str, Mapping[str, float]]]

BAR_METRICS = (('unlearn_acc', 'UA'), ('retain_acc', 'RA'),
               ('test_acc', 'TA'), ('mia_efficacy', 'MIA-Efficacy'),
               ('avg_gap', 'Avg. Gap'))
_FORGET, _RETAIN = '#d62728', '#1f77b4'
_DPI = 90


def _save(fig: Figure, path: str) -> str:
  """Writes a 256-colour PNG: a third of the size, small enough for docs/."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=_DPI, bbox_inches='tight')
  buffer.seek(0)
  image = Image.open(buffer).convert('RGB').quantize(
      colors=256, method=Image.Quantize.MEDIANCUT)
  return atomic_files.write(
      path, lambda f: image.save(f, format='PNG', optimize=True))


def _mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and sample std (ddof=1; 0 for one seed) over axis 0."""
  std = values.std(0, ddof=1) if len(values) > 1 else np.zeros(
      values.shape[1:])
  return values.mean(0), std


def _panels(n: int, width: float, height: float,
            max_columns: int = 4) -> tuple[Figure, np.ndarray]:
  """A figure for `n` panels of `width` x `height` inches, at most
  `max_columns` a row: the figure and all its axes, flat, the ones after
  the n-th hidden (the grid's spare cells stay blank)."""
  columns = min(max(1, n), max_columns)
  rows = math.ceil(max(1, n) / columns)
  fig = Figure(figsize=(width * columns, height * rows), layout='constrained')
  axes = fig.subplots(rows, columns, squeeze=False).ravel()
  for ax in axes[n:]:
    ax.set_visible(False)
  return fig, axes


def metric_bars(summary: Summary, methods: Sequence[str], path: str, *,
                labels: Mapping[str, str] | None = None,
                title: str = '') -> str:
  """One panel per metric: a bar per method, retrain's value as a line.

  Args:
    summary: model -> {'mean': {metric: v}, 'std': {metric: v}}; must hold
      'retrain' (drawn as a dashed line with a +-std band) and may hold
      'original' (a dotted line).
    methods: the models drawn as bars, in order; missing ones are skipped.
    path: PNG file to write.
    labels: display names.
    title: figure title.
  """
  labels = labels or {}
  methods = [m for m in methods if m in summary]
  fig = Figure(figsize=(3.0 * len(BAR_METRICS), 3.4), layout='constrained')
  axes = fig.subplots(1, len(BAR_METRICS), squeeze=False)[0]
  x = np.arange(len(methods))
  for ax, (key, name) in zip(axes, BAR_METRICS):
    means = [summary[m]['mean'].get(key, np.nan) for m in methods]
    stds = [summary[m]['std'].get(key, 0.0) for m in methods]
    ax.bar(x, means, yerr=stds, color='#7f7f7f', capsize=3)
    for i, mean in enumerate(means):
      if np.isnan(mean):  # Failed on every seed: say so, not an empty slot.
        ax.text(x[i], 0, 'failed', rotation=90, ha='center', va='bottom',
                fontsize=7, color='#d62728')
    ref = summary['retrain']
    if key in ref['mean']:
      value, spread = ref['mean'][key], ref['std'].get(key, 0.0)
      ax.axhline(value, color='k', linestyle='--', linewidth=1,
                 label='Retrain')
      ax.axhspan(value - spread, value + spread, color='k', alpha=0.1)
    if 'original' in summary and key in summary['original']['mean']:
      ax.axhline(summary['original']['mean'][key], color='#2ca02c',
                 linestyle=':', linewidth=1.2, label='Original')
    ax.set_title(name)
    ax.set_xticks(x, [labels.get(m, m) for m in methods], rotation=45,
                  ha='right', fontsize=8)
    ax.grid(axis='y', alpha=0.3)
  axes[0].set_ylabel('%')
  axes[-1].legend(fontsize=7, loc='best')
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def accuracy_curves(curves: Mapping[str, Mapping[str, Sequence]],
                    path: str, *,
                    reference: Mapping[str, float] | None = None,
                    labels: Mapping[str, str] | None = None,
                    title: str = '') -> str:
  """Forget and retain accuracy over the unlearning steps, one panel each.

  Args:
    curves: method -> {'step': [S], 'forget_acc': [seeds][S],
      'retain_acc': [seeds][S]} (percent); the mean is drawn with a +-std
      band over seeds.
    path: PNG file to write.
    reference: retrain's {'forget_acc', 'retain_acc'}, drawn as dashed lines.
    labels: display names.
    title: figure title.
  """
  labels = labels or {}
  fig, axes = _panels(len(curves), 3.4, 2.8)
  for ax, (method, curve) in zip(axes, curves.items()):
    steps = np.asarray(curve['step'])
    for key, color, name in (('forget_acc', _FORGET, 'forget'),
                             ('retain_acc', _RETAIN, 'retain')):
      values = np.asarray(curve[key], float).reshape(-1, len(steps))
      mean, std = _mean_std(values)
      ax.plot(steps, mean, color=color, label=name, linewidth=1.3)
      ax.fill_between(steps, mean - std, mean + std, color=color,
                      alpha=0.2, linewidth=0)
      if reference and key in reference:
        ax.axhline(reference[key], color=color, linestyle='--',
                   linewidth=0.9, alpha=0.8)
    ax.set_title(labels.get(method, method), fontsize=10)
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.set_xlabel('unlearning step', fontsize=8)
  axes[0].set_ylabel('accuracy (%)')
  axes[0].legend(fontsize=7, loc='lower left',
                 title='dashed: retrain', title_fontsize=7)
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def tsne(panels: Mapping[str, Mapping[str, np.ndarray]], path: str, *,
         labels: Mapping[str, str] | None = None, title: str = '',
         perplexity: float = 30.0, iterations: int = 1000,
         seed: int = 0) -> str:
  """t-SNE of penultimate features, one embedding per model.

  Drawn as the original project did: points coloured by class, retain
  samples as small dots, forget samples as diamonds (here edged in black).

  Args:
    panels: model -> {'forget': [F, D], 'forget_label': [F],
      'retain': [R, D], 'retain_label': [R]}; e.g. the original model
      ("before") and each unlearned one ("after").
    path: PNG file to write.
    labels: display names.
    title: figure title.
    perplexity: t-SNE perplexity (capped below the sample count).
    iterations: t-SNE optimisation steps (at least 250).
    seed: t-SNE random state.
  """
  import threadpoolctl  # pylint: disable=g-import-not-at-top
  from sklearn import manifold  # pylint: disable=g-import-not-at-top

  labels = labels or {}
  fig, axes = _panels(len(panels), 3.0, 3.0)
  for ax, (model, panel) in zip(axes, panels.items()):
    points = np.concatenate([panel['retain'], panel['forget']]).astype(
        np.float64)
    # One OpenMP thread: a few hundred points gain nothing from more, and on
    # a busy 2-core machine OpenMP's spin-waiting made each embedding 4x
    # slower (17.7 s against 4.3 s for 600 points under load 6).
    with threadpoolctl.threadpool_limits(1, user_api='openmp'):
      embedding = manifold.TSNE(
          n_components=2, init='pca', random_state=seed,
          max_iter=iterations,
          perplexity=min(perplexity, (len(points) - 1) / 3)).fit_transform(
              points)
    n_retain = len(panel['retain'])
    classes = np.concatenate([panel['retain_label'], panel['forget_label']])
    colors = np.array([f'C{c % 10}' for c in classes])
    ax.scatter(*embedding[:n_retain].T, c=colors[:n_retain], s=2,
               linewidths=0)
    ax.scatter(*embedding[n_retain:].T, c=colors[n_retain:], s=10,
               marker='D', edgecolors='k', linewidths=0.3)
    ax.set_title(labels.get(model, model), fontsize=10)
    ax.axis('off')
  if title:
    fig.suptitle(title + '\n(colour = class; dots = retain, '
                 'diamonds = forget)', fontsize=10)
  return _save(fig, path)


def cka_heatmaps(matrices: Mapping[str, np.ndarray],
                 layer_names: Sequence[str], path: str, *,
                 reference: str = 'Original',
                 labels: Mapping[str, str] | None = None,
                 title: str = '') -> str:
  """Layer-by-layer linear CKA, one heatmap per model (torch_cka's style).

  Args:
    matrices: model -> [L, L] CKA, rows the model's layers, columns the
      reference model's.
    layer_names: the L layer names.
    path: PNG file to write.
    reference: name of the model the columns belong to.
    labels: display names.
    title: figure title.
  """
  labels = labels or {}
  fig, axes = _panels(len(matrices), 3.3, 3.0)
  ticks = np.arange(len(layer_names))
  # One colour scale for all panels, stretched over the values present.
  low = min(float(np.min(m)) for m in matrices.values()) if matrices else 0.0
  low = min(0.9, math.floor(low * 20) / 20)
  image = None
  for ax, (model, matrix) in zip(axes, matrices.items()):
    image = ax.imshow(np.asarray(matrix), origin='lower', cmap='magma',
                      vmin=low, vmax=1.0)
    ax.set_title(f'{labels.get(model, model)} vs {reference}', fontsize=9)
    ax.set_xticks(ticks, layer_names, rotation=90, fontsize=6)
    ax.set_yticks(ticks, layer_names, fontsize=6)
  if image is not None:
    fig.colorbar(image, ax=list(axes[:len(matrices)]), shrink=0.8,
                 label='linear CKA')
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def cka_layers(diagonals: Mapping[str, np.ndarray],
               layer_names: Sequence[str], path: str, *,
               labels: Mapping[str, str] | None = None,
               title: str = '') -> str:
  """Same-layer CKA to the original model, one line per model.

  Args:
    diagonals: model -> [seeds, L] CKA of each layer with the original's
      same layer; drawn as the mean with +-std error bars.
    layer_names: the L layer names.
    path: PNG file to write.
    labels: display names.
    title: figure title.
  """
  labels = labels or {}
  fig = Figure(figsize=(max(5.0, 0.7 * len(layer_names) + 3), 3.4),
               layout='constrained')
  ax = fig.subplots()
  x = np.arange(len(layer_names))
  for i, (model, values) in enumerate(diagonals.items()):
    mean, std = _mean_std(
        np.asarray(values, float).reshape(-1, len(layer_names)))
    style = '--' if model == 'retrain' else '-'
    ax.errorbar(x, mean, yerr=std, label=labels.get(model, model),
                linestyle=style, marker='o', markersize=3, capsize=2,
                color='k' if model == 'retrain' else f'C{i}')
  ax.set_xticks(x, layer_names, rotation=45, ha='right', fontsize=8)
  ax.set_ylabel('linear CKA to the original')
  ax.set_ylim(0, 1.05)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc='lower left', ncol=2)
  if title:
    ax.set_title(title)
  return _save(fig, path)
