#!/usr/bin/env bash
# Wall time of `python -m promptlearn.run +task=T` per task with a cold datasets cache (a new user's first run).
set -uo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
export HF_DATASETS_CACHE=$(mktemp -d)
for T in sst2 sst5 mr mpqa subj trec agnews snli qnli rte cb boolq; do
  S=$(date +%s.%N)
  LINE=$(python -m promptlearn.run +task=$T model.name_or_path="$MODEL" progress=false hydra.run.dir=outputs/timing/$T 2>/dev/null | grep "test n=")
  printf '%-7s %6.1f s  %s\n' "$T" "$(echo "$(date +%s.%N) - $S" | bc)" "$LINE"
done
rm -rf "$HF_DATASETS_CACHE"
