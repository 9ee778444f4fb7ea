#!/usr/bin/env bash
# Four tasks' prompts over one frozen mini-mlm: single-task vs multi-task fixed_lm prompt tuning (+ continued alone),
# K=16 per class, then the four multi-task prompts served mixed from one JSONL file.
# Same step budget as experiments/few_shot_mini_mlm.sh: 300 steps of batch 8 per task alone (dev every 50 steps);
# the joint run 4 x 300 = 1200 steps over the union (each task sees as many examples as alone), selected on the
# union of the dev sets; continued: 100 more steps per task alone.  fixed_lm defaults: 4 soft tokens before the
# task's template, embedding encoder, prompt lr 1e-2, manual verbalizer (the task's label words), read at the one mask
# (verbalizer.multi_token=mean, in both settings): subj's 'subjective' and trec's 'Entity' are two WordPiece tokens
# for mini-mlm, and exact n-mask scoring (the default) is not served in mixed batches.
# Usage: bash experiments/multitask_mini_mlm.sh [seeds]   (default 13 21 42 87 100)
#   -> multirun/multitask_mini_mlm/seed*/multitask.json, summary.md, mixed_predictions.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${PROMPTLEARN_MODEL:-../shared/models/mini-mlm}
SWEEP=multirun/multitask_mini_mlm
TASKS=sst2,mr,subj,trec
SEEDS=${*:-13 21 42 87 100}
START=$(date +%s)
for SEED in $SEEDS; do
  python -m promptlearn.multitask_train --tasks $TASKS --out $SWEEP/seed$SEED --continue-steps 100 \
      model.name_or_path="$MODEL" strategy=fixed_lm strategy.max_steps=300 strategy.eval_every=50 seed=$SEED \
      verbalizer.multi_token=mean \
      progress=false threads=${THREADS:-1}
done
python -m promptlearn.multitask_train --report $SWEEP | tee $SWEEP/summary.md
# serving: the first seed's four multi-task prompts, one JSONL file with rows of all four tasks (5 test rows each)
FIRST=$(echo $SEEDS | cut -d' ' -f1)
python - "$SWEEP/mixed_rows.jsonl" <<'PY'
import json, sys
from promptlearn.multitask_train import compose_config
from promptlearn.run import _checked
rows = []
for name in ("sst2", "mr", "subj", "trec"):
    task = _checked(compose_config(name, ["model.name_or_path=../shared/models/mini-mlm"]))[1]
    test = task.splits["test"].select(range(5))
    rows += [{"id": f"{name}-{i}", "task": name, "text_a": t} for i, t in zip(test["idx"], test["text_a"])]
rows = [rows[i] for i in sorted(range(len(rows)), key=lambda i: (i % 5, i))]  # interleave the tasks
open(sys.argv[1], "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
python -m promptlearn.predict --no-progress --input $SWEEP/mixed_rows.jsonl --output $SWEEP/mixed_predictions.jsonl \
    $(for t in ${TASKS//,/ }; do echo --model $t=$SWEEP/seed$FIRST/multi/$t/model; done)
echo "sweep wall time: $(( $(date +%s) - START )) s"
