#!/usr/bin/env bash
# Answer engineering with mini-mlm, zero-shot (tuning_free), every number on the full test split:
#  1. exact multi-token scoring (the default, multi_token=exact) with and without calibration on SST-2, SST-5, TREC,
#     AG News and Subj (SST-5 'okay', Subj 'subjective', TREC 'Entity' are 2 sub-tokens for mini-mlm; SST-2 and
#     AG News words are single tokens, so their numbers equal the one-mask ones of experiments/calibration_mini_mlm.sh)
#  2. multi-word verbalizers (several words per class; AG News 'finance' and 'internet' are 2 sub-tokens),
#     exact vs one-mask mean scoring, without and with support calibration
# Usage: bash experiments/answer_engineering_mini_mlm.sh  -> multirun/answer_engineering_mini_mlm/*/summary.{md,json}
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
OUT=multirun/answer_engineering_mini_mlm
rm -rf "$OUT"
python -m promptlearn.run -m +task=sst2,sst5,trec,agnews,subj calibrate=false,content_free,support \
  model.name_or_path="$MODEL" progress=false hydra.sweep.dir="$OUT/exact"
python -m promptlearn.report "$OUT/exact" --out "$OUT/exact/summary"
python -m promptlearn.run -m +task=sst2 calibrate=false,support \
  'verbalizer.label_words="negative: terrible, awful, horrible, bad, boring, dull; positive: great, wonderful, excellent, brilliant, good, fantastic"' \
  model.name_or_path="$MODEL" progress=false hydra.sweep.dir="$OUT/multi_word_sst2"
python -m promptlearn.report "$OUT/multi_word_sst2" --out "$OUT/multi_word_sst2/summary"
python -m promptlearn.run -m +task=agnews calibrate=false,support verbalizer.multi_token=exact,mean \
  'verbalizer.label_words="world: world, politics, government, international, war; sports: sports, football, game, team, baseball; business: business, economy, market, company, finance; tech: technology, science, computer, internet, software"' \
  model.name_or_path="$MODEL" progress=false hydra.sweep.dir="$OUT/multi_word_agnews"
python -m promptlearn.report "$OUT/multi_word_agnews" --out "$OUT/multi_word_agnews/summary"
