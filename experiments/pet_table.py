"""The PET / iPET table from experiments/pet_mini_mlm.sh's run folders: per task, the single-pattern models (PET's
own pattern models, generation 0, repetition 0 -- each is exactly ``method=single pattern=<i>`` at the same seed),
PET's merged ensemble and distilled classifier, each iPET generation's ensemble and iPET's distilled
classifier;
test metric (%) per seed and mean (std) over seeds (population std, as promptlearn.report).

    python experiments/pet_table.py multirun/pet_mini_mlm
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def main(root: str) -> None:
    rows: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    metric_of: dict[str, str] = {}
    for path in sorted(Path(root).glob("*/*/seed*/results.json")):
        r = json.loads(path.read_text())
        task, method, seed = r["task"], r["method"], int(r["seed"])
        metric = r["metrics"]["main_metric"]
        metric_of[task] = metric
        seconds[(task, method)].append(r["timings"]["total_s"])
        if method == "pet":
            for pm in r["pattern_models"]:
                if pm["generation"] == 0 and pm["rep"] == 0:
                    rows[task][f"single pattern `{pm['name']}` (fixed_prompt)"][seed] = pm["metrics"][metric]
        if method == "pet":
            rows[task][f"PET ensemble ({r['ensemble']['reduction']})"][seed] = r["ensemble"]["metrics"][metric]
        for g in r.get("generations") or []:  # iPET: each generation's ensemble (its models' training-set size)
            n = "/".join(str(x) for x in sorted(set(g["train_examples"])))
            rows[task][f"iPET generation {g['generation']} ensemble ({g['ensemble']['reduction']}; {n} training "
                       "examples per model)"][seed] = g["ensemble"]["metrics"][metric]
        rows[task][f"{'PET' if method == 'pet' else 'iPET'} distilled (final classifier)"][seed] = \
            r["distilled"]["metrics"][metric]
    for task, table in rows.items():
        seeds = sorted({s for cells in table.values() for s in cells})
        print(f"\n{task} ({metric_of[task]}), K=16")
        print(f"| model | {metric_of[task]} mean (std) | per seed ({' / '.join(map(str, seeds))}) |")
        print("|---|---|---|")
        order = lambda name: (0 if name.startswith("single") else 1 if name.startswith("PET") else 2, name)
        for name in sorted(table, key=order):
            cells = table[name]
            vals = np.array([100 * cells[s] for s in seeds if s in cells])
            per = " / ".join(f"{100 * cells[s]:.2f}" if s in cells else "-" for s in seeds)
            print(f"| {name} | {vals.mean():.1f} ({vals.std():.1f}) n={len(vals)} | {per} |")
        for (t, m), secs in sorted(seconds.items()):
            if t == task:
                print(f"{m}: {len(secs)} runs, {sum(secs):.0f} s in all ({np.mean(secs):.0f} s per seed)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "multirun/pet_mini_mlm")
