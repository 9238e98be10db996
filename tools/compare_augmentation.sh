#!/usr/bin/env bash
# Forget-set augmentation on a small random forget set of the embedded
# dataset (docs/RESULTS.md, "Forget-set augmentation"): scrub and
# bad_teaching with their default configs, without augmentation and with
# each of simple, opengan and arpl, plus the original README's
# `--data_augment aplr --augment_num 3000` with scrub. Runs one after
# another (so run times are comparable), then prints the table.
#
#   tools/compare_augmentation.sh            # forget 50 samples, seed 0
#   FORGET_NUM=100 AUGMENT_NUM=1000 tools/compare_augmentation.sh
#
# The original, retrain, ARPL and OpenGAN models are cached under
# checkpoints/ by the first run that needs them. Extra arguments go to every
# `python main.py` call.
set -euo pipefail
cd "$(dirname "$0")/.."
forget_num=${FORGET_NUM:-50}
augment_num=${AUGMENT_NUM:-500}
out="runs/compare_augment_${forget_num}"
runs=()
run() {  # run WORKDIR_NAME ARGS...
  local workdir="${out}/$1"
  shift
  python main.py --mode random --forget_num "$forget_num" --seed 0 \
      --workdir "$workdir" "$@" > /dev/null
  runs+=("$workdir")
}
for method in scrub bad_teaching; do
  run "${method}_none" --method "$method" "$@"
  for augment in simple opengan arpl; do
    run "${method}_${augment}" --method "$method" --data_augment "$augment" \
        --augment_num "$augment_num" "$@"
  done
done
run scrub_aplr3000 --method scrub --data_augment aplr --augment_num 3000 "$@"
python tools/collect_reports.py "${runs[@]}"
