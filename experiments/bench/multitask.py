"""Serving N tasks on one frozen LM: mixed-task batches vs scoring each task separately vs N model copies.

    python experiments/bench/multitask.py --model ../shared/models/mini-mlm --data ../shared/data/SST-2 \\
        --tasks 2,4,8 --n-examples 512 --batch-size 32 --reps 3 --threads 2 --out multitask.json

The workload is a request stream: ``--n-examples`` SST-2 dev sentences, each assigned to one of N tasks
(round robin, then shuffled with seed 0), arriving in chunks of ``--batch-size``.  The N tasks are prompt
models over the same LM with different prompts: even tasks ``{soft*k}`` input soft tokens (k = 2, 3, ...),
odd tasks P-tuning v2 deep prefixes (4, 8, ... per layer), all with a manual verbalizer (seeded, untrained:
speed does not depend on the values).

* ``mixed``    -- one :class:`promptlearn.multitask.MultiTaskModel`: one forward per chunk, every example with
  its own task's prompt (deep prefixes padded to the longest, masked);
* ``per_task`` -- the same N prompt models on the one shared LM, each chunk split by task: up to N forwards
  per chunk, one per task present;
* ``copies``   -- N separate prompt models each on its own copy of the LM (N LMs loaded), split as ``per_task``.

``padded_tokens_per_pass`` counts the input positions the LM runs over (batch x longest input, summed): on a CPU
the compute follows it, and a chunk split by task pads each part only to its own longest input.
Every (workload, N) runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own; the batches are
built before the clock starts and only forwards are timed (median of ``--reps`` passes after ``--warmup``).
The ``mixed`` run also scores the chunks per task and reports the largest difference (it must be ~1e-6).
Ratios are computed from numbers measured in this run only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from promptlearn_side import read_tsv  # noqa: E402 - the same SST-2 rows as the other benchmarks

WORKLOADS = ("mixed", "per_task", "copies")
WORDS = {"negative": "terrible", "positive": "great"}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _task_model(t: int, tok, mlm, max_length: int):
    from promptlearn import PromptModel, Template, Verbalizer
    from promptlearn.soft_prompt import build_soft_prompt

    if t % 2 == 0:
        template = Template(f"{{soft*{2 + t // 2}}} {{text_a|shortenable}} It was {{mask}}.", tok, max_length=max_length)
        prompt = build_soft_prompt(template.soft_spec, mlm, "embedding", seed=t)
    else:
        template = Template("{text_a|shortenable} It was {mask}.", tok, max_length=max_length)
        prompt = build_soft_prompt(template.soft_spec, mlm, "deep", seed=t, num_prefix=4 * (t // 2 + 1))
    return PromptModel(mlm, template, Verbalizer(WORDS, tok), soft_prompt=prompt).eval()


def run_workload(args) -> dict:
    import datasets  # noqa: F401 - imported before the RSS baseline in every workload (mixed encoding uses it)
    import numpy as np
    import torch

    from promptlearn import load_backbone
    from promptlearn.data import PromptCollator
    from promptlearn.multitask import MultiTaskModel

    if args.threads:
        torch.set_num_threads(args.threads)
    n, w = args.n_tasks, args.workload
    rss_start = _rss_mb()
    tok, mlm = load_backbone(args.model)
    mlms = [mlm] + ([load_backbone(args.model)[1] for _ in range(n - 1)] if w == "copies" else [mlm] * (n - 1))
    models = {f"task{t}": _task_model(t, tok, mlms[t], args.max_length) for t in range(n)}
    multi = MultiTaskModel(models).eval() if w != "copies" else None
    rss_loaded = _rss_mb()
    texts = [r["text_a"] for r in read_tsv(Path(args.data) / "dev.tsv", args.n_examples)]
    order = np.random.default_rng(0).permutation(len(texts))
    rows = [{"task": f"task{i % n}", "text_a": texts[j]} for i, j in enumerate(order)]
    collate = PromptCollator(tok.pad_token_id)
    chunks = [rows[s: s + args.batch_size] for s in range(0, len(rows), args.batch_size)]
    if w == "mixed":
        batches = []
        for chunk in chunks:
            enc, kept, bad = multi.encode(chunk)
            assert not bad
            batches.append(collate([enc[i] for i in range(len(enc))]))
        steps = [(multi, b) for b in batches]
    else:
        steps = []
        for chunk in chunks:
            for name, m in models.items():
                mine = [r for r in chunk if r["task"] == name]
                if mine:
                    steps.append((m, collate([m.template.encode(r) for r in mine])))
    forwards = len(steps)
    padded = sum(int(b["input_ids"].numel()) for _, b in steps)  # CPU compute goes with the padded tokens
    real = sum(int(b["attention_mask"].sum()) for _, b in steps)

    def one_pass():
        with torch.no_grad():
            return [m(**b).logits for m, b in steps]

    for _ in range(args.warmup):
        one_pass()
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    out = {"workload": w, "n_tasks": n, "examples": len(rows), "forwards_per_pass": forwards, "padded_tokens_per_pass": padded,
           "real_tokens_per_pass": real, "median_s": med,
           "times_s": times, "examples_per_s": len(rows) / med, "rss_start_mb": rss_start,
           "rss_after_loading_mb": rss_loaded, "peak_rss_mb": _rss_mb(), "models_rss_mb": rss_loaded - rss_start,
           "lms_loaded": len({id(x) for x in mlms})}
    if w == "mixed":  # exactness: each example's mixed-batch scores vs its own task model's, chunk by chunk
        worst = 0.0
        mixed = one_pass()
        for chunk, logits in zip(chunks, mixed):
            enc, kept, _ = multi.encode(chunk)
            for name, m in models.items():
                idx = [j for j, i in enumerate(kept) if chunk[i]["task"] == name]
                if idx:
                    with torch.no_grad():
                        own = m(**collate([m.template.encode(chunk[kept[j]]) for j in idx])).logits
                    worst = max(worst, float((logits[idx, :own.shape[1]] - own).abs().max()))
        out["max_abs_diff_vs_per_task"] = worst
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT.parent / "shared" / "models" / "mini-mlm"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "SST-2"))
    ap.add_argument("--tasks", default="2,4,8", help="the values of N")
    ap.add_argument("--n-examples", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="which of mixed,per_task,copies to run")
    ap.add_argument("--workload", choices=WORKLOADS, default=None, help="run one workload (internal)")
    ap.add_argument("--n-tasks", type=int, default=None, help="N for --workload (internal)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.workload:
        print(json.dumps(run_workload(args)))
        return
    results: dict[str, dict] = {}
    ratios: dict[str, float] = {}
    for n in [int(x) for x in args.tasks.split(",")]:
        for w in [x for x in WORKLOADS if x in args.workloads.split(",")]:
            cmd = [sys.executable, __file__, "--workload", w, f"--n-tasks={n}"] + [
                f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                if k not in ("workload", "n_tasks", "out", "tasks", "workloads") and v is not None]
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            if proc.returncode != 0:
                raise SystemExit(f"workload {w} N={n} failed:\n{proc.stderr[-3000:]}")
            r = results[f"{w}/N={n}"] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"N={n} {w:>8}: {r['examples_per_s']:8.1f} ex/s  {r['forwards_per_pass']:4d} forwards/pass  "
                  f"peak RSS {r['peak_rss_mb']:7.1f} MB (models {r['models_rss_mb']:6.1f} MB)"
                  + (f"  max |mixed - per-task| {r['max_abs_diff_vs_per_task']:.1e}" if w == "mixed" else ""),
                  flush=True)
        m, p, c = (results.get(f"{w}/N={n}") for w in WORKLOADS)
        for other, label in ((p, "per_task"), (c, "copies")):
            if m is None or other is None:
                continue
            ratios[f"N={n} mixed/{label} examples_per_s"] = m["examples_per_s"] / other["examples_per_s"]
            ratios[f"N={n} mixed/{label} peak_rss"] = m["peak_rss_mb"] / other["peak_rss_mb"]
            ratios[f"N={n} mixed/{label} models_rss"] = m["models_rss_mb"] / other["models_rss_mb"]
            ratios[f"N={n} mixed/{label} padded_tokens"] = m["padded_tokens_per_pass"] / other["padded_tokens_per_pass"]
    print("\nratios (same run):")
    for k, v in ratios.items():
        print(f"  {k:>40}: {v:.3f}")
    if args.out:
        summary = {"args": {k: v for k, v in vars(args).items() if k not in ("workload", "n_tasks")},
                   "results": results, "ratios": ratios}
        Path(args.out).write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
