#!/usr/bin/env bash
# Saved-artifact sizes per strategy / prompt encoder with mini-mlm (2 training steps on 20 test examples:
# only the size matters).  Prints `du -sb` of each <run dir>/model.
# Usage: bash experiments/artifact_sizes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
OUT=outputs/artifact_sizes
rm -rf "$OUT"
run() {  # name, overrides...
  local name=$1; shift
  python -m promptlearn.run +task=sst2 model.name_or_path="$MODEL" strategy.max_steps=2 limit=20 save_model=true \
    progress=false hydra.run.dir="$OUT/$name" "$@" > /dev/null 2>&1
  printf '%-34s %10s bytes  (%s)\n' "$name" "$(du -sb "$OUT/$name/model" | cut -f1)" "$(ls "$OUT/$name/model" | tr '\n' ' ')"
}
run fixed_lm_embedding strategy=fixed_lm
run p_tuning_v2 strategy=p_tuning_v2
run fixed_lm_mlp strategy=fixed_lm strategy.prompt_encoder.type=mlp
run fixed_lm_mlp_materialized strategy=fixed_lm strategy.prompt_encoder.type=mlp materialize_prompt=true
run fixed_lm_lstm strategy=fixed_lm strategy.prompt_encoder.type=lstm
run fixed_lm_lstm_materialized strategy=fixed_lm strategy.prompt_encoder.type=lstm materialize_prompt=true
run fixed_prompt strategy=fixed_prompt
run finetune strategy=finetune
run prompt_lm strategy=prompt_lm
run lora strategy=lora
run bitfit strategy=bitfit
