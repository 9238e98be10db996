#!/usr/bin/env bash
# Bad Teaching and SCRUB with and without the self-supervised terms on the
# embedded dataset (random 10 %), one run after another; prints the table of
# docs/RESULTS.md. The first run pretrains the SimCLR encoder (cached in
# checkpoints/).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=()
for method in bad_teaching scrub; do
  for setting in "0 simple" "0.5 simple" "0.5 original"; do
    set -- $setting
    workdir="runs/ssl/${method}_w${1}_${2}"
    python main.py --method "$method" --loss_weight "$1" \
        --supervised_mode "$2" --workdir "$workdir" > /dev/null
    runs+=("$workdir")
  done
done
python tools/collect_reports.py "${runs[@]}"
