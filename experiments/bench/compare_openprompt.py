"""promptlearn vs OpenPrompt 1.0.1: same model, data, template, label words, batch size and threads.

    bash experiments/bench/setup_openprompt_env.sh            # once: OpenPrompt's own venv, outside the repo
    python experiments/bench/compare_openprompt.py --model ../shared/models/mini-mlm --data ../shared/data/SST-2

Each workload of each side runs in its own subprocess, interleaved (OpenPrompt zero-shot, promptlearn
zero-shot, OpenPrompt train, promptlearn train) and repeated ``--rounds`` times; the ratios use the
median over rounds of each side's median pass time, all measured in this one run.  Both sides cap
inputs at ``--max-seq-length`` (64, mini-mlm's limit): OpenPrompt pads every input to it (its design),
promptlearn pads each batch to its longest input.  Memory is reported as peak RSS and as the
workload's own increment (peak RSS minus RSS after imports and model load), plus CUDA max allocated
on GPU.  Zero-shot accuracies must agree within 0.5 point; per-example agreement is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = Path(os.environ.get("OPENPROMPT_VENV", Path.home() / ".cache" / "promptlearn" / "openprompt-venv"))


def run_side(python: str, script: Path, workload: str, args: argparse.Namespace) -> dict:
    cmd = [python, str(script), "--model", args.model, "--data", args.data, "--n-examples", str(args.n_examples),
           "--batch-size", str(args.batch_size), "--max-seq-length", str(args.max_seq_length), "--reps",
           str(args.reps), "--warmup", str(args.warmup), "--train-steps", str(args.train_steps), "--threads",
           str(args.threads), "--device", args.device, "--workload", workload]
    if workload == "train" and args.gradient_checkpointing and "promptlearn" in script.name:
        cmd.append("--gradient-checkpointing")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        proc = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if proc.returncode != 0 or not out.exists():
            raise SystemExit(f"{script.name} --workload {workload} failed:\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--openprompt-python", default=str(DEFAULT_VENV / "bin" / "python"))
    ap.add_argument("--n-examples", type=int, default=872)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-seq-length", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gradient-checkpointing", action="store_true",
                    help="promptlearn's training workload with strategy.gradient_checkpointing=true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    args.model, args.data = str(Path(args.model).resolve()), str(Path(args.data).resolve())
    if not Path(args.openprompt_python).exists():
        raise SystemExit(f"no OpenPrompt venv at {args.openprompt_python}; run experiments/bench/setup_openprompt_env.sh")

    sides = {"openprompt": (args.openprompt_python, HERE / "openprompt_side.py"),
             "promptlearn": (sys.executable, HERE / "promptlearn_side.py")}
    runs: dict[str, dict[str, list[dict]]] = {s: {"zeroshot": [], "train": []} for s in sides}
    for r in range(args.rounds):
        for workload in ("zeroshot", "train"):
            for side, (py, script) in sides.items():
                res = run_side(py, script, workload, args)
                runs[side][workload].append(res)
                print(f"round {r + 1} {side:>11} {workload:>8}: {res['examples_per_s']:8.1f} ex/s  "
                      f"peak RSS {res['peak_rss_mb']:6.0f} MB (workload +{res['peak_rss_mb'] - res['rss_before_workload_mb']:.0f} MB)",
                      flush=True)

    def med(side, workload, key):
        vals = [x[key] for x in runs[side][workload] if x.get(key) is not None]
        return statistics.median(vals) if vals else None

    table = {}
    for w in ("zeroshot", "train"):
        row = {}
        for side in sides:
            row[side] = {
                "examples_per_s": med(side, w, "examples_per_s"),
                "peak_rss_mb": med(side, w, "peak_rss_mb"),
                "workload_rss_mb": statistics.median(x["peak_rss_mb"] - x["rss_before_workload_mb"] for x in runs[side][w]),
                "cuda_max_allocated_mb": med(side, w, "cuda_max_allocated_mb"),
            }
        pl, op = row["promptlearn"], row["openprompt"]
        row["ratios"] = {
            "throughput": pl["examples_per_s"] / op["examples_per_s"],
            "peak_rss": pl["peak_rss_mb"] / op["peak_rss_mb"],
            "workload_rss": pl["workload_rss_mb"] / op["workload_rss_mb"],
        }
        if pl["cuda_max_allocated_mb"] and op["cuda_max_allocated_mb"]:
            row["ratios"]["cuda_max_allocated"] = pl["cuda_max_allocated_mb"] / op["cuda_max_allocated_mb"]
        table[w] = row

    zp, zo = runs["promptlearn"]["zeroshot"][0], runs["openprompt"]["zeroshot"][0]
    agree = sum(a == b for a, b in zip(zp["predictions"], zo["predictions"]))
    max_diff = max(abs(a - b) for a, b in zip(zp["score_diff_pos_minus_neg"], zo["score_diff_pos_minus_neg"]))
    acc = {"promptlearn": zp["accuracy"], "openprompt": zo["accuracy"],
           "difference_points": 100 * (zp["accuracy"] - zo["accuracy"]),
           "prediction_agreement": f"{agree}/{len(zp['predictions'])}",
           "max_abs_diff_of_logit_gap": max_diff}

    print("\n| workload | promptlearn ex/s | OpenPrompt ex/s | throughput ratio | peak RSS ratio | workload RSS ratio |")
    print("|---|---|---|---|---|---|")
    for w, row in table.items():
        r = row["ratios"]
        print(f"| {w} | {row['promptlearn']['examples_per_s']:.1f} | {row['openprompt']['examples_per_s']:.1f} | "
              f"{r['throughput']:.2f}x | {r['peak_rss']:.2f} | {r['workload_rss']:.2f} |")
    print(f"\nzero-shot accuracy: promptlearn {100 * acc['promptlearn']:.2f}  OpenPrompt {100 * acc['openprompt']:.2f}  "
          f"(difference {acc['difference_points']:+.2f} points; predictions agree {acc['prediction_agreement']}; "
          f"max |logit-gap difference| {max_diff:.2e})")
    ok_acc = abs(acc["difference_points"]) <= 0.5
    targets = {
        "zero-shot throughput >= 3x OpenPrompt": table["zeroshot"]["ratios"]["throughput"] >= 3,
        "training step >= 2x OpenPrompt": table["train"]["ratios"]["throughput"] >= 2,
        "zero-shot workload memory <= 0.5x OpenPrompt": table["zeroshot"]["ratios"]["workload_rss"] <= 0.5,
        "training workload memory <= 0.5x OpenPrompt": table["train"]["ratios"]["workload_rss"] <= 0.5,
        "zero-shot accuracies agree within 0.5 point": ok_acc,
    }
    for k, v in targets.items():
        print(f"  [{'met' if v else 'MISSED'}] {k}")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "table": table, "accuracy": acc,
                                              "targets": targets, "runs": runs}, indent=2))
        print(f"wrote {args.out}")
    return 0 if ok_acc else 1


if __name__ == "__main__":
    raise SystemExit(main())
