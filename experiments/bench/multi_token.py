"""Exact multi-token label words: promptlearn's batched n-mask scoring vs PET's one forward per token.

    python experiments/bench/multi_token.py --model ../shared/models/mini-mlm --data ../shared/data/SST-2 \
        [--n-examples 256] [--batch-size 32] [--device cpu|cuda] [--out results.json]

One verbalizer with words of 1, 2 and 3 sub-tokens for each class (picked deterministically from a
fixed candidate list for the model's tokenizer), the same SST-2 dev sentences, the same template and
model, measured side by side in one process:

* ``pet_per_token``        -- PET's multi-mask evaluation (``MultiMaskTaskHelper``): batch size 1, and for
  every example and every candidate word of n sub-tokens, n forward passes of the masked LM (each
  reads one sub-token's full-vocabulary log-probability, the word's earlier sub-tokens filled in).
  PET fills the most confident position first; this reference fills left to right, which costs the
  same number of forwards and lets the scores be checked against promptlearn's ``left_to_right``;
* ``exact_parallel``       -- promptlearn, ``multi_token=exact`` (default), other positions masked: one
  forward per batch of B examples x (number of distinct word lengths) rows;
* ``exact_left_to_right``  -- promptlearn, ``multi_token_fill=left_to_right``: one forward per batch of
  B x (distinct filled prefixes) rows;
* ``one_mask_mean``        -- the one-mask approximation (OpenPrompt's ``multi_token_handler``): every
  sub-token read at the single mask; not exact, shown for cost;
* ``single_token``         -- a verbalizer of single-token words (the label-row fast path), for the
  cost of exactness.

Reported: examples/s (median over ``--reps`` timed passes after one warm-up pass), the ratios, and
the largest difference between ``pet_per_token`` and ``exact_left_to_right`` scores (they compute the
same quantity and must agree; the predictions must be identical).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from promptlearn_side import read_tsv  # noqa: E402 - the same SST-2 rows as the other benchmarks

TEMPLATE = "{text_a|shortenable} It was {mask}."
CANDIDATES = {  # per class, in order of preference; the first word of each sub-token length is taken
    "negative": ["terrible", "bad", "okay", "subpar", "unbearable", "unwatchable", "abysmal", "underwhelming",
                 "horrendous", "mediocre", "lousy"],
    "positive": ["great", "good", "awesome", "masterful", "unforgettable", "breathtaking", "wonderful",
                 "superb", "phenomenal", "riveting"],
}
SINGLE = {"negative": ["terrible"], "positive": ["great"]}


def pick_words(tok) -> dict[str, list[str]]:
    """For each class one word of 1, 2 and 3 sub-tokens (as many of those lengths as the candidates offer)."""
    out = {}
    for cls, cands in CANDIDATES.items():
        by_len: dict[int, str] = {}
        for w in cands:
            by_len.setdefault(len(tok(w, add_special_tokens=False)["input_ids"]), w)
        out[cls] = [by_len[n] for n in sorted(by_len) if n <= 3]
        if max(n for n in by_len if n <= 3) < 2:
            raise SystemExit(f"no multi-token candidates for class {cls!r} with this tokenizer")
    return out


@torch.no_grad()
def pet_per_token(model, encoded, device) -> torch.Tensor:
    """[N, W] word log-probabilities, batch size 1, one forward per sub-token per word (PET's cost)."""
    mlm, verbalizer = model.mlm, model.verbalizer
    mask = model.template.tokenizer.mask_token_id
    rows = []
    for ex in encoded:
        ids, p = list(ex["input_ids"]), ex["mask_pos"]
        types = list(ex["token_type_ids"]) if "token_type_ids" in ex else None
        scores = []
        for word in verbalizer.words_ids:
            n, total = len(word), 0.0
            for k in range(n):
                x = ids[:p] + list(word[:k]) + [mask] * (n - k) + ids[p + 1:]
                kw = {"input_ids": torch.tensor([x], device=device)}
                if types is not None:
                    kw["token_type_ids"] = torch.tensor([types[:p] + [types[p]] * n + types[p + 1:]], device=device)
                logp = torch.log_softmax(mlm(**kw).logits[0, p + k].float(), -1)
                total += float(logp[word[k]])
            scores.append(total)
        rows.append(scores)
    return torch.tensor(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="SST-2 directory (dev.tsv)")
    ap.add_argument("--n-examples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out")
    args = ap.parse_args(argv)

    from datasets import Dataset

    from promptlearn import PromptModel, Template, Verbalizer, load_backbone
    from promptlearn.data import encode_dataset, make_loader
    from promptlearn.inference import infer

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    tok, mlm = load_backbone(args.model)
    mlm.to(dev).eval()
    words = pick_words(tok)
    rows = read_tsv(Path(args.data) / "dev.tsv", args.n_examples)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    def model_for(w, **opts):
        return PromptModel(mlm, Template(TEMPLATE, tok, max_length=64), Verbalizer(w, tok, **opts)).to(dev).eval()

    def timed(fn):
        fn()  # warm-up (and the datasets cache)
        times = []
        for _ in range(args.reps):
            sync()
            t = time.perf_counter()
            out = fn()
            sync()
            times.append(time.perf_counter() - t)
        return out, statistics.median(times)

    results, scores = {}, {}
    variants = {"exact_parallel": (words, {}), "exact_left_to_right": (words, {"multi_token_fill": "left_to_right"}),
                "one_mask_mean": (words, {"multi_token": "mean"}), "single_token": (SINGLE, {})}
    for name, (w, opts) in variants.items():
        model = model_for(w, **opts)
        enc = encode_dataset(Dataset.from_list(rows), model.template)

        def run(model=model, enc=enc):
            loader = make_loader(enc, args.batch_size, tok.pad_token_id, sort_by_length=True)
            out = "word_logprobs" if model.verbalizer.input == "word_logprobs" else "token_logits"
            return infer(model, loader, dev, ("logits", out))

        out, sec = timed(run)
        scores[name] = out
        plan = model.verbalizer.mask_plan
        results[name] = {"seconds": sec, "examples_per_s": len(rows) / sec, "batch_size": args.batch_size,
                         "variants_per_example": plan.num_variants if plan else 1,
                         "forwards": -(-len(rows) // args.batch_size)}
    model = model_for(words, multi_token_fill="left_to_right")
    enc = encode_dataset(Dataset.from_list(rows), model.template).with_format(None)
    pet_rows = [enc[i] for i in range(len(enc))]
    pet, sec = timed(lambda: pet_per_token(model, pet_rows, dev))
    n_forwards = len(rows) * sum(len(wi) for wi in model.verbalizer.words_ids)
    results["pet_per_token"] = {"seconds": sec, "examples_per_s": len(rows) / sec, "batch_size": 1,
                                "forwards": n_forwards}
    ref = torch.from_numpy(scores["exact_left_to_right"]["word_logprobs"])
    pet_logits = model.verbalizer(pet)
    check = {"max_abs_diff_word_logprobs": float((pet - ref).abs().max()),
             "same_predictions": bool((pet_logits.argmax(-1).numpy()
                                       == scores["exact_left_to_right"]["logits"].argmax(-1)).all())}
    ratios = {
        "exact_parallel_vs_pet_per_token": results["exact_parallel"]["examples_per_s"] / results["pet_per_token"]["examples_per_s"],
        "exact_left_to_right_vs_pet_per_token": results["exact_left_to_right"]["examples_per_s"] / results["pet_per_token"]["examples_per_s"],
        "exact_parallel_vs_one_mask_mean": results["exact_parallel"]["examples_per_s"] / results["one_mask_mean"]["examples_per_s"],
        "exact_parallel_vs_single_token": results["exact_parallel"]["examples_per_s"] / results["single_token"]["examples_per_s"],
    }
    report = {"model": args.model, "device": str(dev), "threads": args.threads, "n_examples": len(rows),
              "label_words": words, "splits": {w: tok.tokenize(w) for ws in words.values() for w in ws},
              "results": results, "ratios": ratios, "check": check}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    if check["max_abs_diff_word_logprobs"] > 1e-3 or not check["same_predictions"]:
        raise SystemExit(f"promptlearn left_to_right and the per-token reference disagree: {check}")


if __name__ == "__main__":
    main()
