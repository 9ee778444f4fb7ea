#!/usr/bin/env bash
# PET / iPET on mini-mlm: SST-2 and AG News, K=16, seeds 13/21/42/87/100 (NOT RUN YET -- no numbers recorded).
# Budget for a 2-core CPU: 3 patterns x 1 repetition, PET's 250 steps per pattern model (lr 1e-4 as in
# few_shot_mini_mlm.sh), unlabelled pool 1000, 500 distillation steps; iPET 3 generations x5 (PET).
# Single-pattern rows = the PET runs' own pattern models (repetition 0 == method=single pattern=<i>).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
OUT=multirun/pet_mini_mlm
COMMON=(model.name_or_path="$MODEL" progress=false threads=1 strategy.lr=1e-4 method.repetitions=1
        method.unlabeled_size=1000 method.distill_steps=500 method.distill_lr=1e-4 method.distill_eval_every=100)
for task in sst2 agnews; do
  pats="[0,1,2]"; [ "$task" = sst2 ] && pats="[lmbff-0,pet-yelp-0,pet-yelp-1]"
  for seed in 13 21 42 87 100; do
    for m in pet ipet; do
      START=$(date +%s)
      OMP_NUM_THREADS=1 python -m promptlearn.run +task=$task method=$m "method.patterns=$pats" seed=$seed \
        "${COMMON[@]}" hydra.run.dir=$OUT/$task/$m/seed$seed
      echo "$task $m seed $seed: $(( $(date +%s) - START )) s" | tee -a $OUT/wall_times.txt
    done
  done
done
