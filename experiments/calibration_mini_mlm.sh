#!/usr/bin/env bash
# Zero-shot on every local task with mini-mlm, without and with calibration (calibrate=content_free: Zhao et al.
# 2021 content-free inputs; calibrate=support: KPT's prior over 200 unlabelled pool examples, seed 42).
# Usage: bash experiments/calibration_mini_mlm.sh   -> multirun/calibration_mini_mlm/summary.{md,json}
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
SWEEP=multirun/calibration_mini_mlm
rm -rf "$SWEEP"
python -m promptlearn.run -m +task=sst2,sst5,mr,mpqa,subj,trec,agnews,snli,qnli,rte,cb,boolq \
  model.name_or_path="$MODEL" progress=false calibrate=false,content_free,support hydra.sweep.dir="$SWEEP" "$@"
python -m promptlearn.report "$SWEEP" --out "$SWEEP/summary"
