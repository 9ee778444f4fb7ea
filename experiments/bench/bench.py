"""promptlearn speed/memory benchmark against the bare masked LM, measured side by side in one run.

    python experiments/bench/bench.py --model ../shared/models/mini-mlm [--device cuda] [--out results.json]

Every workload runs in its own subprocess (so peak RSS is that workload's own) on the same model,
the same SST-2 dev sentences, the same token batches (built once by promptlearn's template and
collator: dynamic padding, length-sorted) and the same batch size:

* ``raw_forward``   -- ``model.base_model(...)`` encoder forward, no head: the floor;
* ``zeroshot``      -- PromptModel scoring (mask gather + label-row head + verbalizer);
* ``zeroshot_multi``-- the same with a multi-token verbalizer (every class word 2+ sub-tokens), read at the
  one mask (``multi_token=mean``; exact n-mask scoring is benchmarked by ``multi_token.py``);
* ``raw_train``     -- encoder forward + backward of a scalar on the mask hidden state + AdamW step;
* ``train_fixed_prompt`` / ``train_fixed_lm`` -- one promptlearn training step (forward, CE loss,
  backward, AdamW step) with the LM trainable / frozen behind 4 soft tokens.

Medians over ``--reps`` timed passes after ``--warmup`` passes; ratios are computed from numbers
measured in this run only.
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
from promptlearn_side import batches as make_batches, read_tsv  # noqa: E402 - the same rows and batches as there

WORKLOADS = ("raw_forward", "zeroshot", "zeroshot_multi", "raw_train", "train_fixed_prompt", "train_fixed_lm")
SINGLE = {"negative": "terrible", "positive": "great"}


def _multi_token_words(tokenizer) -> dict[str, list[str]]:
    """Label words of 2+ sub-tokens for this tokenizer (searched in a fixed list, deterministic)."""
    cands = ["okay", "subjective", "entity", "unpleasant", "delightful", "mediocre", "wonderful", "disappointing",
             "outstanding", "unwatchable", "masterpiece", "abysmal"]
    multi = [w for w in cands if len(tokenizer(w, add_special_tokens=False)["input_ids"]) > 1]
    if len(multi) < 2:
        raise SystemExit(f"no multi-token candidate words for this tokenizer: {cands}")
    return {"negative": [multi[0]], "positive": [multi[1]]}


def _time(fn, batches, reps, warmup, sync):
    for _ in range(warmup):
        for b in batches:
            fn(b)
    sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        for b in batches:
            fn(b)
        sync()
        times.append(time.perf_counter() - t)
    return times


def run_workload(args) -> dict:
    import torch

    from promptlearn import PromptModel, Template, Verbalizer, load_backbone

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    tok, mlm = load_backbone(args.model)
    mlm.to(dev)
    rows = read_tsv(Path(args.data) / "dev.tsv", args.n_examples)
    w = args.workload
    soft = w == "train_fixed_lm"
    text = ("{soft*4} " if soft else "") + "{text_a|shortenable} It was {mask}."
    template = Template(text, tok, max_length=args.max_length)
    words = _multi_token_words(tok) if w == "zeroshot_multi" else SINGLE
    # zeroshot_multi measures the one-mask approximation (its recorded numbers); exact n-mask scoring: multi_token.py
    model = PromptModel(mlm, template, Verbalizer(words, tok, multi_token="mean")).to(dev)
    batches = [{k: v.to(dev) for k, v in b.items()} for b in make_batches(model, rows, args.batch_size, sort=True)[0]]
    n_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    enc_keys = ("input_ids", "attention_mask", "token_type_ids")
    if w in ("raw_forward", "zeroshot", "zeroshot_multi"):
        model.eval()

        @torch.no_grad()
        def step(b):
            if w == "raw_forward":
                mlm.base_model(**{k: b[k] for k in enc_keys if k in b})
            else:
                model(**b)
    else:
        from promptlearn.strategies import get_strategy

        strategy = get_strategy("fixed_lm" if w == "train_fixed_lm" else "fixed_prompt")
        params = [p for ps in strategy.configure(model).values() for p in ps]  # what the strategy trains
        model.train()
        if w == "train_fixed_lm":
            mlm.eval()  # a frozen LM stays in eval mode, as the trainer keeps it
        opt = torch.optim.AdamW(params, lr=1e-5)

        def step(b):
            opt.zero_grad(set_to_none=True)
            if w == "raw_train":
                h = mlm.base_model(**{k: b[k] for k in enc_keys if k in b}).last_hidden_state
                loss = h[torch.arange(h.shape[0], device=dev), b["mask_pos"]].float().pow(2).mean()
            else:
                loss = strategy.compute_loss(model, b)
            loss.backward()
            opt.step()

    times = _time(step, batches, args.reps, args.warmup, sync)
    med = statistics.median(times)
    out = {"workload": w, "examples": len(rows), "batches": len(batches), "tokens": n_tokens,
           "median_s": med, "times_s": times, "examples_per_s": len(rows) / med,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "restricted_head": model.restricted_head, "label_words": words}
    if dev.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT.parent / "shared" / "models" / "mini-mlm"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "SST-2"))
    ap.add_argument("--n-examples", type=int, default=872)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workload", choices=WORKLOADS, default=None, help="run one workload (internal)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.workload:
        print(json.dumps(run_workload(args)))
        return
    results = {}
    for w in args.workloads.split(","):
        cmd = [sys.executable, __file__, "--workload", w] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k not in ("workload", "workloads", "out") and v is not None]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if proc.returncode != 0:
            raise SystemExit(f"workload {w} failed:\n{proc.stderr[-3000:]}")
        results[w] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[w]
        print(f"{w:>20}: {r['examples_per_s']:9.1f} ex/s  median {r['median_s'] * 1000:8.1f} ms/pass  "
              f"peak RSS {r['peak_rss_mb']:7.1f} MB" + (f"  CUDA {r['cuda_max_allocated_mb']:.1f} MB"
                                                        if "cuda_max_allocated_mb" in r else ""))
    ratios = {}

    def ratio(a, b, key="examples_per_s"):
        if a in results and b in results:
            ratios[f"{a}/{b}"] = results[a][key] / results[b][key]

    ratio("zeroshot", "raw_forward")
    ratio("train_fixed_prompt", "raw_train")
    ratio("train_fixed_lm", "raw_train")
    ratio("zeroshot_multi", "zeroshot")
    print("\nratios (throughput, same run):")
    for k, v in ratios.items():
        print(f"  {k:>36}: {v:.3f}")
    summary = {"args": {k: v for k, v in vars(args).items() if k not in ("workload",)}, "results": results,
               "ratios": ratios}
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
