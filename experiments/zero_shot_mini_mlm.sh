#!/usr/bin/env bash
# Zero-shot (tuning_free) on every local task with the in-house mini-mlm test model; prints the table.
# Usage: bash experiments/zero_shot_mini_mlm.sh [extra hydra overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
SWEEP=multirun/zero_shot_mini_mlm
rm -rf "$SWEEP"
python -m promptlearn.run -m +task=sst2,sst5,mr,mpqa,subj,trec,agnews,snli,qnli,rte,cb,boolq \
  model.name_or_path="$MODEL" progress=false hydra.sweep.dir="$SWEEP" "$@"
python -m promptlearn.report "$SWEEP" --out "$SWEEP/summary"
