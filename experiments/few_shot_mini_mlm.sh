#!/usr/bin/env bash
# SST-2, K=16 per class, seeds 13/21/42/87/100: every strategy with the in-house mini-mlm test model.
# Step budget for a 2-core CPU (documented in the README): 300 optimizer steps of batch 8, dev evaluation
# every 50 steps, best dev state reported on the 872-sentence test set.  Learning rates were fixed a priori
# (never tuned on test): LM 1e-4 for every strategy that trains the LM (a 6M-parameter BERT needs more than
# roberta-large's 1e-5, cf. small-BERT fine-tuning practice), prompt 1e-2 for fixed-LM prompt tuning and
# 1e-3 for the prompt in prompt+LM tuning (the strategy defaults).
# Usage: bash experiments/few_shot_mini_mlm.sh   -> multirun/few_shot_mini_mlm/summary.{md,json}
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
SWEEP=multirun/few_shot_mini_mlm
SEEDS=13,21,42,87,100
BASE=(+task=sst2 model.name_or_path="$MODEL" seed=$SEEDS progress=false)
COMMON=("${BASE[@]}" strategy.max_steps=300 strategy.eval_every=50)
rm -rf "$SWEEP"
START=$(date +%s)
python -m promptlearn.run -m "${BASE[@]}" strategy=tuning_free hydra.sweep.dir=$SWEEP/tuning_free
# (one command per strategy: Hydra cannot combine a sweep over the strategy group with strategy.* overrides)
python -m promptlearn.run -m "${COMMON[@]}" strategy=fixed_prompt strategy.lr=1e-4 hydra.sweep.dir=$SWEEP/fixed_prompt
python -m promptlearn.run -m "${COMMON[@]}" strategy=finetune strategy.lr=1e-4 hydra.sweep.dir=$SWEEP/finetune
python -m promptlearn.run -m "${COMMON[@]}" strategy=prompt_lm strategy.lr=1e-4 hydra.sweep.dir=$SWEEP/prompt_lm
python -m promptlearn.run -m "${COMMON[@]}" strategy=fixed_lm strategy.prompt_encoder.type=embedding,lstm,mlp hydra.sweep.dir=$SWEEP/fixed_lm
python -m promptlearn.run -m "${COMMON[@]}" strategy=p_tuning_v2 hydra.sweep.dir=$SWEEP/p_tuning_v2
python -m promptlearn.report "$SWEEP" --out "$SWEEP/summary"
echo "sweep wall time: $(( $(date +%s) - START )) s"
