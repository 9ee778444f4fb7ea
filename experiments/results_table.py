"""Print one markdown row per run under a directory: the chosen config keys and the test metrics.

    python experiments/results_table.py multirun/answer_engineering_mini_mlm --keys task.name calibrate \
        verbalizer.multi_token

Reads every ``results.json`` below the directory (sorted by path); a key is a dotted path into the run's
config (``task.name``, ``verbalizer.type``, ...) or a top-level results field (``calibration.mode``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def lookup(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root")
    ap.add_argument("--keys", nargs="+", default=["task.name", "strategy.name", "calibrate"])
    ap.add_argument("--mean", action="store_true",
                    help="also print accuracy mean (std) over all the runs listed (population std, as report), "
                         "e.g. one run per seed whose configs differ (a searched template per seed)")
    args = ap.parse_args(argv)
    accs = []
    print("| " + " | ".join(args.keys + ["accuracy", "macro-F1", "n", "total s"]) + " |")
    print("|" + "---|" * (len(args.keys) + 4))
    def order(path):  # multirun job folders "<num>_..." in job order
        head = path.parent.name.split("_")[0]
        return (str(path.parent.parent), int(head) if head.isdigit() else -1, str(path))

    for path in sorted(Path(args.root).rglob("results.json"), key=order):
        r = json.loads(path.read_text())
        cells = [lookup(r["config"], k) if lookup(r["config"], k) is not None else lookup(r, k) for k in args.keys]
        m = r["metrics"]
        accs.append(100 * m["accuracy"])
        print("| " + " | ".join(str(c) for c in cells) + f" | {100 * m['accuracy']:.2f} | {100 * m['f1_macro']:.2f} | "
              f"{m['n']} | {r['timings']['total_s']:.0f} |")
    if args.mean and accs:
        print(f"\naccuracy over {len(accs)} runs: {statistics.fmean(accs):.1f} ({statistics.pstdev(accs):.1f})")


if __name__ == "__main__":
    main()
