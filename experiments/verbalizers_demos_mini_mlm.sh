#!/usr/bin/env bash
# Issue 9 results with mini-mlm (every number on the full test split; nothing tuned on test):
#  1. knowledgeable (KPT) verbalizer, zero-shot, with and without support calibration (SST-2, SST-5, TREC, AG News)
#  2. searched label words: promptlearn.label_search on the K=16 split of each seed (few-shot train ranks, few-shot
#     dev chooses), then zero-shot test with the chosen words (SST-2 and AG News, seeds 13/21/42/87/100)
#  3. demonstrations: in-context (tuning_free) and prompt-based fine-tuning (fixed_prompt, the settings of
#     few_shot_mini_mlm.sh: 300 steps, batch 8, eval every 50, lr 1e-4), SST-2 K=16, seeds 13/21/42/87/100
#  4. soft verbalizer under fixed_lm and fixed_prompt, the same settings
# Usage: bash experiments/verbalizers_demos_mini_mlm.sh  -> multirun/verbalizers_demos_mini_mlm/...
#        SECTIONS="kpt soft" bash experiments/verbalizers_demos_mini_mlm.sh   (only those parts, the others kept)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
OUT=multirun/verbalizers_demos_mini_mlm
SEEDS=13,21,42,87,100
SECTIONS=${SECTIONS:-kpt search demos soft}
has() { [[ " $SECTIONS " == *" $1 "* ]]; }
START=$(date +%s)
# 1. KPT (one command per task: each has its own word list)
has kpt && rm -rf "$OUT"/kpt_* && for tw in sst2:sentiment sst5:sst5 trec:trec agnews:agnews; do
  python -m promptlearn.run -m +task=${tw%%:*} verbalizer=kpt verbalizer.words=${tw##*:} calibrate=false,support \
    model.name_or_path="$MODEL" progress=false hydra.sweep.dir=$OUT/kpt_${tw%%:*}
done
echo "kpt: $(( $(date +%s) - START )) s"
# 2. label-word search, then the zero-shot run with the searched words
has search && rm -rf "$OUT"/search_* && for task in sst2 agnews; do
  for seed in ${SEEDS//,/ }; do
    python -m promptlearn.label_search +task=$task model.name_or_path="$MODEL" seed=$seed \
      hydra.run.dir=$OUT/search_$task/search_seed$seed
    python -m promptlearn.run --config-dir $OUT/search_$task/search_seed$seed +task=$task verbalizer=searched \
      model.name_or_path="$MODEL" seed=$seed progress=false hydra.run.dir=$OUT/search_$task/run_seed$seed
  done
done
echo "+search: $(( $(date +%s) - START )) s"
# 3. demonstrations
COMMON=(+task=sst2 model.name_or_path="$MODEL" seed=$SEEDS progress=false demonstrations=lm_bff)
if has demos; then
  rm -rf "$OUT"/demo_*
  python -m promptlearn.run -m "${COMMON[@]}" strategy=tuning_free hydra.sweep.dir=$OUT/demo_tuning_free
  python -m promptlearn.run -m "${COMMON[@]}" strategy=fixed_prompt strategy.lr=1e-4 strategy.max_steps=300 \
    strategy.eval_every=50 hydra.sweep.dir=$OUT/demo_fixed_prompt
fi
echo "+demonstrations: $(( $(date +%s) - START )) s"
# 4. soft verbalizer
SOFT=(+task=sst2 model.name_or_path="$MODEL" seed=$SEEDS progress=false verbalizer=soft strategy.max_steps=300 strategy.eval_every=50)
if has soft; then
  rm -rf "$OUT"/soft_*
  python -m promptlearn.run -m "${SOFT[@]}" strategy=fixed_lm hydra.sweep.dir=$OUT/soft_fixed_lm
  python -m promptlearn.run -m "${SOFT[@]}" strategy=fixed_prompt strategy.lr=1e-4 hydra.sweep.dir=$OUT/soft_fixed_prompt
fi
for d in $OUT/*/; do python -m promptlearn.report "$d" --out "$d/summary" > /dev/null || true; done
echo "sweep wall time: $(( $(date +%s) - START )) s"
