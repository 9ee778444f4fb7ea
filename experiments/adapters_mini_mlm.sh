#!/usr/bin/env bash
# LoRA and BitFit (prompt-based: the task's template, mask + verbalizer) on SST-2, K=16, seeds 13/21/42/87/100,
# with the few-shot table's budget (experiments/few_shot_mini_mlm.sh): 300 optimizer steps of batch 8, dev
# evaluation every 50 steps, best dev state reported on the 872-sentence test set.  Adapter learning rates are the
# strategy defaults, fixed a priori (conf/strategy/lora.yaml: 5e-4, r=8 on query/value; bitfit.yaml: 1e-3).
# Each run saves its adapter-only artifact (save_model=true); the script prints their sizes and the trainable
# parameter counts the runs logged at start.
# Usage: bash experiments/adapters_mini_mlm.sh   -> multirun/adapters_mini_mlm/{lora,bitfit}/summary.{md,json}
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
SWEEP=multirun/adapters_mini_mlm
COMMON=(+task=sst2 model.name_or_path="$MODEL" seed=13,21,42,87,100 progress=false threads=1
        strategy.max_steps=300 strategy.eval_every=50 save_model=true)
rm -rf "$SWEEP"
for s in lora bitfit; do
  START=$(date +%s)
  python -m promptlearn.run -m "${COMMON[@]}" strategy=$s hydra.sweep.dir=$SWEEP/$s
  echo "$s: sweep wall time $(( $(date +%s) - START )) s" | tee -a $SWEEP/wall_times.txt
  python -m promptlearn.report "$SWEEP/$s" --out "$SWEEP/$s/summary"
done
for d in "$SWEEP"/*/0_*; do
  printf '%-8s artifact %10s bytes  (%s)\n' "$(basename "$(dirname "$d")")" "$(du -sb "$d/model" | cut -f1)" \
    "$(ls "$d/model" | tr '\n' ' ')"
  grep -h -m1 "strategy .*: training" "$d"/run.log || true
done
