"""Aggregate ``results.json`` files of a sweep into LM-BFF-style ``mean (std)`` tables.

    python -m promptlearn.report multirun/2026-11-23_10-00-00 [more dirs...] [--out summary]

Runs are grouped by (task, strategy variant, model, K); a strategy variant is the strategy name plus
its prompt encoder type when it has one (``fixed_lm/lstm``).  Each cell is the mean (std) of the
task's reported metric over the seeds, in percent; std is the population std (``numpy.std``, as
LM-BFF's ``tools/gather_result.py``).  The few-shot split checksum of every seed is listed so a table
can be matched to the exact data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .verbalizers import DEFAULT_TYPE

__all__ = ["collect", "aggregate", "markdown_table", "main"]


def variant(result: dict[str, Any]) -> str:
    """The row label of a run: strategy, prompt encoder, verbalizer type (if not manual), calibration."""
    strategy = result.get("strategy", "?")
    cfg = result.get("config") or {}
    enc = (cfg.get("strategy") or {}).get("prompt_encoder")
    name = f"{strategy}/{enc['type']}" if isinstance(enc, dict) and enc.get("type") else strategy
    vtype = (cfg.get("verbalizer") or {}).get("type") if isinstance(cfg.get("verbalizer"), dict) else None
    if vtype and vtype != DEFAULT_TYPE:
        name += f" verbalizer={vtype}"
    if (result.get("calibration") or {}).get("mode"):
        name += f" +calibrate={result['calibration']['mode']}"
    return name


def collect(dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every ``results.json`` below the given directories."""
    out = []
    for d in dirs:
        for path in sorted(Path(d).rglob("results.json")):
            r = json.loads(path.read_text())
            r["_path"] = str(path)
            out.append(r)
    return out


# options that do not change a run's numbers (or are already part of the group key)
_NOT_CONFIG = {"seed", "progress", "device", "threads", "resume", "save_model", "keep_checkpoint",
               "materialize_prompt", "data_root", "eval_batch_size", "task", "model", "score_splits", "plugins",
               "rerun", "debug"}


def config_signature(result: dict[str, Any]) -> str:
    """Short hash of everything in a run's config that can change its numbers, except the seed."""
    cfg = {k: v for k, v in (result.get("config") or {}).items() if k not in _NOT_CONFIG}
    cfg["_template"], cfg["_verbalizer"] = result.get("template"), result.get("verbalizer")
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:8]


def aggregate(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, strategy variant, model, K, config signature); seeds must not repeat in a row."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        key = (r["task"], variant(r), Path(str(r.get("model"))).name, r.get("k_shot", 0), config_signature(r))
        groups[key].append(r)
    per_label = defaultdict(set)
    for task, var, model, k, sig in groups:
        per_label[(task, var, model, k)].add(sig)
    rows = []
    for (task, var, model, k, sig), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r.get("seed", 0))
        seeds = [r.get("seed") for r in rs]
        if len(set(seeds)) != len(seeds):
            dup = sorted({s for s in seeds if seeds.count(s) > 1})
            raise SystemExit(f"{task} {var}: seed(s) {dup} appear more than once with the same configuration: "
                             + ", ".join(r.get("_path", "?") for r in rs if r.get("seed") in dup)
                             + "\nreport one sweep at a time, or remove the duplicated runs")
        if len(per_label[(task, var, model, k)]) > 1:  # several configurations of one strategy: tell them apart
            var = f"{var} cfg={sig}"
        main = np.array([r["metrics"]["main"] for r in rs]) * 100
        acc = np.array([r["metrics"]["accuracy"] for r in rs]) * 100
        rows.append({
            "task": task, "strategy": var, "model": model, "k_shot": k, "n_seeds": len(rs),
            "seeds": [r.get("seed") for r in rs], "metric": rs[0]["metrics"]["main_metric"],
            "mean": float(main.mean()), "std": float(main.std()), "acc_mean": float(acc.mean()),
            "acc_std": float(acc.std()), "per_seed": [round(float(x), 2) for x in main],
            "checksums": {str(r.get("seed")): r.get("checksums", {}).get("few_shot") for r in rs},
            "train_s_mean": float(np.mean([r.get("timings", {}).get("total_s", 0.0) for r in rs])),
        })
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Strategies as rows, tasks as columns: ``mean (std)`` of the reported metric."""
    tasks = sorted({r["task"] for r in rows})
    models = {r["model"] for r in rows}
    shots = {r["k_shot"] for r in rows if r["k_shot"]}

    def label(r: dict[str, Any]) -> str:  # row label: the strategy, plus model / K when a table mixes them
        parts = [r["strategy"]]
        if len(models) > 1:
            parts.append(r["model"])
        if len(shots) > 1 and r["k_shot"]:
            parts.append(f"K={r['k_shot']}")
        return " ".join(parts)

    strategies = list(dict.fromkeys(label(r) for r in rows))
    cell = {(label(r), r["task"]): r for r in rows}
    head = "| strategy | " + " | ".join(tasks) + " |"
    lines = [head, "|---|" + "---|" * len(tasks)]
    for s in strategies:
        vals = []
        for t in tasks:
            r = cell.get((s, t))
            vals.append("" if r is None else f"{r['mean']:.1f} ({r['std']:.1f}) n={r['n_seeds']}")
        lines.append(f"| {s} | " + " | ".join(vals) + " |")
    metric_note = ", ".join(sorted({f"{r['task']}: {r['metric']}" for r in rows}))
    lines.append("")
    lines.append(f"mean (std) over seeds, in %; metric per task: {metric_note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", help="sweep / run directories to search for results.json")
    ap.add_argument("--out", default=None, help="write OUT.md and OUT.json (default: <first dir>/summary)")
    args = ap.parse_args(argv)
    results = collect(args.dirs)
    if not results:
        raise SystemExit(f"no results.json found under {args.dirs}")
    rows = aggregate(results)
    table = markdown_table(rows)
    print(table)
    print()
    for r in rows:
        print(f"{r['task']:>8} {r['strategy']:<20} {r['metric']}: {r['mean']:.1f} ({r['std']:.1f}) "
              f"seeds={r['seeds']} per-seed={r['per_seed']}")
        for seed, cs in r["checksums"].items():
            if cs is not None:  # zero-shot runs sample no few-shot split
                print(f"{'':>10}seed {seed}: split checksum {cs}")
    out = Path(args.out) if args.out else Path(args.dirs[0]) / "summary"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    print(f"\nwrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
