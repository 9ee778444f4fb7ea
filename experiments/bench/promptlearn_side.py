"""promptlearn side of the promptlearn-vs-OpenPrompt benchmark (same CLI and JSON keys as openprompt_side.py).

Same model directory, data, template (``{text_a|shortenable} It was {mask}.``), label words
(terrible/great), batch size, thread count and max length (64) as the OpenPrompt side.  The
differences are promptlearn's own design, and are what is being measured:

* dynamic padding (each batch padded to its longest input) and, for scoring, length-sorted batches;
* the LM head applied only at the mask position and only for the label-word rows;
* tokenisation through ``datasets.map`` (timed apart as ``loader_build_s``, like OpenPrompt's loader build).

Training: one step = forward, cross-entropy over the verbalizer's class scores, backward, and the
optimizer promptlearn's trainer builds (AdamW, lr 1e-5, weight decay 0.01 as on the OpenPrompt side,
none on biases/norms/embeddings), dropout on, a new batch of the first rows of train.tsv per step.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from openprompt_side import maxrss_mb, rss_mb  # noqa: E402 - stdlib-only helpers, the same RSS probes on both sides

TEMPLATE = "{text_a|shortenable} It was {mask}."
WORDS = {"negative": "terrible", "positive": "great"}


def read_tsv(path, n=None):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = rows[:n] if n else rows
    return [{"text_a": r["sentence"].strip(), "label": int(r["label"]), "idx": i} for i, r in enumerate(rows)]


def setup(args):
    import datasets  # noqa: F401 - imported before the RSS baseline, like OpenPrompt's own imports
    import torch

    from promptlearn import PromptModel, Template, Verbalizer, load_backbone

    torch.manual_seed(42)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    t = time.perf_counter()
    tok, mlm = load_backbone(args.model)
    mlm.to(dev)
    load_s = time.perf_counter() - t
    template = Template(TEMPLATE, tok, max_length=args.max_seq_length)
    model = PromptModel(mlm, template, Verbalizer(WORDS, tok, labels=list(WORDS))).to(dev)
    return torch, dev, model, load_s


def batches(model, rows, batch_size, sort):
    from datasets import Dataset

    from promptlearn.data import encode_dataset, make_loader

    t = time.perf_counter()
    enc = encode_dataset(Dataset.from_list(rows), model.template)
    loader = make_loader(enc, batch_size, model.template.tokenizer.pad_token_id, sort_by_length=sort)
    return loader, time.perf_counter() - t


def run_zeroshot(args):
    torch, dev, model, load_s = setup(args)
    rows = read_tsv(Path(args.data) / "dev.tsv", args.n_examples)
    rss_before = rss_mb()
    loader, build_s = batches(model, rows, args.batch_size, sort=True)
    from promptlearn.inference import predict_scores

    def score():  # scores in dataset order (the loader is length-sorted); .cpu() waits for the device
        return predict_scores(model, loader, dev, progress=False)

    for _ in range(args.warmup):
        score()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        s = score()
        times.append(time.perf_counter() - t)
    preds = s.argmax(-1).tolist()
    n = len(rows)
    n_correct = sum(int(p == r["label"]) for p, r in zip(preds, rows))
    med = statistics.median(times)
    return {"workload": "zeroshot", "n_examples": n, "model_load_s": load_s, "loader_build_s": build_s,
            "score_s_median": med, "score_s_min": min(times), "score_s_all": times,
            "examples_per_s": n / med, "examples_per_s_best": n / min(times),
            "accuracy": n_correct / n, "n_correct": n_correct, "frac_pred_positive": sum(preds) / n,
            "predictions": preds, "score_diff_pos_minus_neg": [round(float(d), 5) for d in s[:, 1] - s[:, 0]],
            "restricted_head": model.restricted_head, "rss_before_workload_mb": rss_before, "peak_rss_mb": maxrss_mb(),
            "cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
            "settings": settings(args)}


def run_train(args):
    torch, dev, model, load_s = setup(args)
    n_steps = args.warmup + args.train_steps
    rows = read_tsv(Path(args.data) / "train.tsv", n_steps * args.batch_size)
    rss_before = rss_mb()
    loader, build_s = batches(model, rows, args.batch_size, sort=False)
    from promptlearn.strategies import get_strategy
    from promptlearn.trainer import build_optimizer, enable_activation_checkpointing

    model.train()
    strategy = get_strategy({"name": "fixed_prompt", "lr": args.lr})
    groups = strategy.configure(model)
    if args.gradient_checkpointing:
        enable_activation_checkpointing(model.mlm)
    params = groups["lm"]
    opt = build_optimizer(model, groups, strategy.learning_rates(), weight_decay=0.01)  # what the trainer builds
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times, losses = [], []
    for i, b in enumerate(loader):
        if i == args.warmup and dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        b = {k: v.to(dev) for k, v in b.items()}
        opt.zero_grad(set_to_none=True)
        loss = strategy.compute_loss(model, b)
        loss.backward()
        opt.step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
        losses.append(round(loss.item(), 5))
    med = statistics.median(times)
    return {"workload": "train", "trainable_params": sum(p.numel() for p in params), "batch_size": args.batch_size,
            "model_load_s": load_s, "loader_build_s": build_s, "step_s_median": med, "step_s_min": min(times),
            "step_s_all": times, "examples_per_s": args.batch_size / med,
            "examples_per_s_best": args.batch_size / min(times), "losses": losses, "rss_before_workload_mb": rss_before, "peak_rss_mb": maxrss_mb(),
            "cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
            "settings": settings(args)}


def settings(args):
    return {"template": TEMPLATE, "label_words": WORDS, "max_length": args.max_seq_length,
            "gradient_checkpointing": args.gradient_checkpointing,
            "padding": "dynamic (longest in batch); scoring batches sorted by length",
            "truncation": "only the shortenable text_a slot is cut, from its end (tail)",
            "head": "LM head at the mask position only, label-word rows only",
            "batch_size": args.batch_size, "threads": args.threads, "device": args.device}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--n-examples", type=int, default=872)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--workload", default="all", choices=["all", "zeroshot", "train"])
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="training workload: strategy.gradient_checkpointing=true (less memory, more compute)")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.workload != "all":
        res = run_zeroshot(args) if args.workload == "zeroshot" else run_train(args)
        if args.out:
            Path(args.out).write_text(json.dumps(res))
        print(json.dumps(res))
        return
    out = {}
    for w in ("zeroshot", "train"):
        argv2 = [a for a in (argv or sys.argv[1:]) if not a.startswith("--workload") and not a.startswith("--out")]
        proc = subprocess.run([sys.executable, __file__, *argv2, "--workload", w], capture_output=True, text=True,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        out[w] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{w}: {out[w]['examples_per_s']:.1f} ex/s, peak RSS {out[w]['peak_rss_mb']:.0f} MB")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
