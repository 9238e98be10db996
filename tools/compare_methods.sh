#!/usr/bin/env bash
# Runs every unlearning method with its default config on one split of the
# embedded dataset, one after another (so run times are comparable), then
# prints the SalUn-format table of docs/RESULTS.md.
#
#   tools/compare_methods.sh random       # random 10 % forgetting
#   tools/compare_methods.sh class_wise   # forget class 0
#
# Extra arguments go to every `python main.py` call.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-random}
shift || true
# Every unlearning method, from the registry (mu_jax/methods/).
methods=$(python -c 'from mu_jax import methods; print(" ".join(methods.unlearning_methods()))')
runs=()
for method in $methods; do
  workdir="runs/compare_${mode}/${method}"
  variant=""
  # Methods may have a tuned class-wise variant of their config.
  if [ "$mode" = class_wise ] && grep -q "'class_wise'" "configs/${method}.py"; then
    variant=":class_wise"
  fi
  python main.py --config "configs/${method}.py${variant}" --mode "$mode" \
      --workdir "$workdir" "$@" > /dev/null
  runs+=("$workdir")
done
python tools/collect_reports.py "${runs[@]}"
