"""``ipet``: iterative PET -- generations of pattern models, then PET's distillation::

    for generation g = 0 .. G-1:
        train_pet                       every pattern x repetition, on the K-shot set plus (g > 0) the examples
                                        written for it by generation g-1  -> <out>/g<g>/p<i>-r<rep>/
        generate_ipet_train_sets        (g < G-1) for each model: a random ``logits_percentage`` of the *other*
                                        models of this generation (at least one) label the unlabelled pool by the
                                        argmax of their merged logits; per class, as many examples as the few-shot
                                        train set's class share of the new total asks for (PET's prior), drawn
                                        without replacement with probability proportional to the merged
                                        confidence (a class predicted for fewer examples than needed is repeated,
                                        as PET upsamples; a class never predicted gets none, recorded)
                                        -> <out>/g<g>/next-gen/p<i>-r<rep>.npz (idx, label)
    merge_logits + train_classifier     on the last generation (as in :mod:`.pet`)

Generation g's models train on ``n * scale_factor ** g`` examples (n = the few-shot train set): the new
examples number ``int(n * scale_factor ** (g + 1) - n)`` for generation g + 1 (PET: factor 5, 3
generations).  Pool labels are never read: the pool has no ``label`` column, the pseudo labels are the
models' own.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..validation import Opt
from .pet import (Pet, PatternRun, Plan, finish, merge_logits, merged_scores, plan, train_classifier, train_pet,
                  write_soft_labels, _weights, ensemble_report)

log = logging.getLogger("promptlearn")

__all__ = ["IPet", "run_ipet", "new_examples_per_label", "generate_ipet_train_set", "generate_ipet_train_sets"]


class IPet(Pet):
    OPTIONS = Pet.OPTIONS + (
        Opt("generations", int, "method.generations=3", min=1),
        Opt("scale_factor", float, "method.scale_factor=5", min=1),
        Opt("logits_percentage", float, "method.logits_percentage=0.25 (share of the other models that label)",
            min=0, max=1),
    )

    def run(self, c: dict[str, Any], output_dir: str | Path | None = None) -> dict[str, Any]:
        return run_ipet(c, output_dir)


def new_examples_per_label(train_counts: Sequence[int], scale_factor: float, generation: int) -> list[int]:
    """PET's growth rule: generation ``generation + 1`` gets ``int(n * f ** (g + 1) - n)`` new examples (n = the
    few-shot train size), split by the few-shot train set's class counts (``int(count_c * new / n)``)."""
    n = int(sum(train_counts))
    new = int(n * scale_factor ** (generation + 1) - n)
    return [int(cnt * new / n) for cnt in train_counts]


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def generate_ipet_train_set(others: Sequence[np.ndarray], weights: Sequence[float] | None, idx: np.ndarray,
                            per_label: Sequence[int], logits_percentage: float, rng: random.Random,
                            rng_np: np.random.RandomState) -> dict[str, Any]:
    """One model's next-generation examples from the other models' pool logits (see the module doc)."""
    k = max(1, round(len(others) * logits_percentage))
    chosen = sorted(rng.sample(range(len(others)), k=k))
    w = None if weights is None else [weights[i] for i in chosen]
    probs = _softmax(merge_logits([others[i] for i in chosen], w))
    pred = probs.argmax(-1)
    out_idx, out_lab, short = [], [], []
    for c, need in enumerate(per_label):
        cand = np.flatnonzero(pred == c)
        if need <= 0:
            continue
        if len(cand) == 0:
            short.append(c)
            continue
        if len(cand) < need:  # PET upsamples a class with too few examples
            cand = np.tile(cand, math.ceil(need / len(cand)))
        p = probs[cand, c]
        pick = rng_np.choice(len(cand), size=need, replace=False, p=p / p.sum())
        out_idx.extend(idx[cand[pick]].tolist())
        out_lab.extend([c] * need)
    return {"idx": np.asarray(out_idx, dtype=np.int64), "label": np.asarray(out_lab, dtype=np.int64),
            "labellers": chosen, "classes_never_predicted": short}


def generate_ipet_train_sets(runs: Sequence[PatternRun], p: Plan, generation: int, out_dir: Path) -> dict[str, Any]:
    """For every model of ``runs``: its next-generation examples, written to ``out_dir/<p<i>-r<rep>>.npz``."""
    import os

    reduction = p.opts.get("reduction", "wmean")
    scored = [r.scores("unlabeled") for r in runs]
    idx = scored[0].idx
    weights = _weights(runs, reduction)
    counts = [int(round(x * len(p.few.train))) for x in p.prior]
    per_label = new_examples_per_label(counts, float(p.opts.get("scale_factor", 5)), generation)
    rng, rng_np = random.Random(p.seed + generation), np.random.RandomState(p.seed + generation)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, report = {}, {}
    for i, r in enumerate(runs):
        others = [j for j in range(len(runs)) if j != i] or [i]  # one model alone labels for itself
        s = generate_ipet_train_set([scored[j].logits for j in others],
                                    None if weights is None else [weights[j] for j in others], idx, per_label,
                                    float(p.opts.get("logits_percentage", 0.25)), rng, rng_np)
        path = out_dir / f"{r.key}.npz"
        tmp = out_dir / f"{r.key}.tmp.npz"
        np.savez(tmp, idx=s["idx"], label=s["label"])
        os.replace(tmp, path)
        paths[r.key] = path
        report[r.key] = {"n": int(len(s["idx"])), "per_label": np.bincount(s["label"], minlength=len(p.prior)).tolist(),
                         "labelled_by": [runs[others[j]].key for j in s["labellers"]],
                         "classes_never_predicted": s["classes_never_predicted"]}
    log.info("iPET generation %d -> %d: %s new examples per model (per class %s)", generation, generation + 1,
             sum(per_label), per_label)
    return {"paths": paths, "per_label": per_label, "models": report}


def run_ipet(cfg: Any, output_dir: str | Path | None = None) -> dict[str, Any]:
    """iPET end to end (see the module doc); writes ``<output_dir>/results.json``."""
    from ..run import _plain

    t0 = time.perf_counter()
    c = _plain(cfg)
    p = plan(c, output_dir, "ipet")
    reduction = p.opts.get("reduction", "wmean")
    pseudo, all_runs, gens = None, [], []
    runs: list[PatternRun] = []
    for g in range(int(p.opts.get("generations", 3))):
        runs = train_pet(c, p, p.out / f"g{g}", g, pseudo)
        all_runs += runs
        info: dict[str, Any] = {"generation": g, "train_examples": sorted({r.summary()["train_examples"] for r in runs}),
                                "ensemble": ensemble_report(runs, p, c.get("eval_split", "test"))}
        if g < int(p.opts.get("generations", 3)) - 1:
            sets = generate_ipet_train_sets(runs, p, g, p.out / f"g{g}" / "next-gen")
            pseudo = sets["paths"]
            info["next_generation"] = {"per_label": sets["per_label"], "models": sets["models"]}
        gens.append(info)
    idx, merged, _ = merged_scores(runs, "unlabeled", reduction)
    soft = write_soft_labels(p.out / "soft_labels.npz", idx, merged, runs, reduction)
    final = train_classifier(c, p, soft, p.out / "final")
    return finish(c, p, "ipet", runs, all_runs, final, soft, t0, extra={"generations": gens})
