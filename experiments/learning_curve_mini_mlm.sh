#!/usr/bin/env bash
# Sanity check for the few-shot table: does mini-mlm learn SST-2 at all when given more examples?
# fixed_prompt vs finetune at K = 16, 64, 256, 1024 per class, seed 13, the same 300 steps / lr 1e-4 as
# experiments/few_shot_mini_mlm.sh.  -> multirun/learning_curve_mini_mlm/summary.{md,json}
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
SWEEP=multirun/learning_curve_mini_mlm
rm -rf "$SWEEP"
for S in fixed_prompt finetune; do
  python -m promptlearn.run -m +task=sst2 model.name_or_path="$MODEL" seed=13 progress=false strategy=$S \
    strategy.k_shot=16,64,256,1024 strategy.max_steps=300 strategy.eval_every=50 strategy.lr=1e-4 \
    hydra.sweep.dir=$SWEEP/$S
done
python -m promptlearn.report "$SWEEP" --out "$SWEEP/summary"
