"""Collects report.json files of one split into one SalUn-format table.

  python tools/collect_reports.py runs/fashion_mnist_subset_cnn/*_random1000_s0

Prints a markdown table: the original and retrain rows (from the first
report) and one row per report's unlearned model, with UA, RA, TA,
MIA-efficacy, Avg. Gap and RTE (seconds).
"""

import json
import os
import sys

# Run from the repository root or from tools/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mu_jax import report  # pylint: disable=g-import-not-at-top


def main(paths):
  if not paths:
    sys.exit('usage: collect_reports.py RUN_DIR_OR_REPORT [...]')
  reports = []
  for path in paths:
    if os.path.isdir(path):
      path = os.path.join(path, 'report.json')
    with open(path) as f:
      reports.append(json.load(f))
  digests = {r['split']['digest'] for r in reports}
  if len(digests) > 1:
    sys.exit('error: the reports are for different splits; collect one '
             'split at a time')
  first = reports[0]
  rows = {'original': first['metrics']['original'],
          'retrain': first['metrics']['retrain']}
  seconds = {'original': first['timings']['original_train_seconds'],
             'retrain': first['timings']['retrain_seconds']}
  for r in reports:
    label = r['method']
    method = r['config']['method']
    variant = method.get('variant', 'canonical')
    if variant != 'canonical':
      label += f' ({variant})'
    if method.get('loss_weight'):
      label += f" + {method['supervised_mode']} x{method['loss_weight']:g}"
    augment = method.get('data_augment', 'none')
    if augment == 'opengan':  # Substitutes features; adds no samples.
      label += ' + opengan augmentation'
    elif augment != 'none':
      label += f" + {augment} augmentation x{method['augment_num']}"
    if label == 'retrain':
      continue
    rows[label] = r['metrics']['unlearned']
    seconds[label] = r['timings']['unlearn_seconds']
  print(report.format_table(rows, seconds))


if __name__ == '__main__':
  main(sys.argv[1:])
