#!/usr/bin/env bash
# The LM-BFF protocol on SST-2 with mini-mlm, in one command: fixed_prompt, learning rate {1e-5, 5e-5, 1e-4} x
# batch size {4, 8} for each of the seeds 13/21/42/87/100 (30 jobs), 300 optimizer steps, dev evaluation every
# 50 steps (the few-shot table's budget); for each seed the grid point with the best few-shot dev accuracy is
# chosen (never test) and the table reports test at it.  Local processes through the joblib launcher (2 jobs,
# 1 thread each).  Running it again skips finished jobs (resume).
# Usage: bash experiments/grid_sst2_mini_mlm.sh   -> multirun/grid_sst2_mini_mlm/summary.{md,tex,json} + *.png
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
N_JOBS=${N_JOBS:-2}
START=$(date +%s)
python -m promptlearn.grid +task=sst2 model.name_or_path="$MODEL" strategy=fixed_prompt \
    grid.lr=[1e-5,5e-5,1e-4] grid.batch_size=[4,8] seeds=[13,21,42,87,100] \
    strategy.max_steps=300 strategy.eval_every=50 progress=false threads=1 \
    hydra/launcher=joblib hydra.launcher.n_jobs="$N_JOBS" grid.dir=multirun/grid_sst2_mini_mlm "$@"
echo "script wall time: $(( $(date +%s) - START )) s"
