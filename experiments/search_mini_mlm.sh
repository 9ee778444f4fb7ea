#!/usr/bin/env bash
# Searched-template rows on SST-2, K=16, seeds 13/21/42/87/100 with mini-mlm.  Per seed: AutoPrompt trigger search
# (python -m promptlearn.search, defaults of conf/search.yaml: "{text_a|shortenable} [T] [T] [T] {mask}.",
# 10 rounds, top-k 10, label words fixed, ranked by few-shot dev -- test never read) on that seed's few-shot split,
# then the found template (the written task YAML, --config-dir) zero-shot (tuning_free) and with prompt-based
# fine-tuning at the few-shot table's settings (fixed_prompt, lr 1e-4, 300 steps of batch 8, dev every 50).
# Usage: bash experiments/search_mini_mlm.sh   -> multirun/search_mini_mlm/{seed*/,summary_*}
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
OUT=multirun/search_mini_mlm
rm -rf "$OUT"; mkdir -p "$OUT"
COMMON=(model.name_or_path="$MODEL" progress=false threads=1)
for seed in 13 21 42 87 100; do
  START=$(date +%s)
  python -m promptlearn.search +task=sst2 search.method=autoprompt seed=$seed "${COMMON[@]}" \
    hydra.run.dir=$OUT/seed$seed/search | grep -A1 "^best template"
  MID=$(date +%s)
  python -m promptlearn.run --config-dir $OUT/seed$seed/search +task=sst2_searched seed=$seed "${COMMON[@]}" \
    strategy=tuning_free hydra.run.dir=$OUT/zero_shot/seed$seed | grep "test n="
  python -m promptlearn.run --config-dir $OUT/seed$seed/search +task=sst2_searched seed=$seed "${COMMON[@]}" \
    strategy=fixed_prompt strategy.lr=1e-4 strategy.max_steps=300 strategy.eval_every=50 \
    hydra.run.dir=$OUT/fixed_prompt/seed$seed | grep "test n="
  echo "seed $seed: search $(( MID - START )) s, runs $(( $(date +%s) - MID )) s" | tee -a $OUT/wall_times.txt
done
python -m promptlearn.report $OUT/zero_shot --out $OUT/summary_zero_shot
python -m promptlearn.report $OUT/fixed_prompt --out $OUT/summary_fixed_prompt
