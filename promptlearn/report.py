"""Aggregate ``results.json`` files of a sweep into LM-BFF-style ``mean (std)`` tables and plots.

    python -m promptlearn.report multirun/2026-11-23_10-00-00 [more dirs...] [--out summary] [--select dev] [--pdf]

Writes ``OUT.md`` (markdown), ``OUT.tex`` (a LaTeX ``booktabs`` table), ``OUT.json`` (the rows) and PNG plots
next to them (``OUT_seeds.png``: per-seed spread per configuration; ``OUT_dev_test.png`` for a ``--select dev``
grid: dev against test of every run, the chosen ones ringed; ``OUT_k_curve.png``: the metric against K
when the runs have several K; ``OUT_templates.png``: the metric per template when they have several templates;
``--pdf`` adds a PDF of each).  ``--select dev`` is the LM-BFF grid protocol: runs that differ only in their
hyper-parameters form one group, and for each seed the configuration with the best few-shot dev score
(``train.best_dev``) is chosen -- test is never looked at; ties go to the configuration whose differing values
sort first (numbers by value, key names alphabetically) -- and the table reports the test metric at the chosen
configurations (see :func:`select_on_dev`).

Runs are grouped by (task, strategy variant, model, K); a strategy variant is the strategy name plus
its prompt encoder type when it has one (``fixed_lm/lstm``); configurations of one variant are told apart by
the options that differ between them (``fixed_prompt lr=1e-05,batch_size=4``).  Each cell is the mean (std) of the
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

__all__ = ["collect", "aggregate", "select_on_dev", "markdown_table", "latex_table", "strip_plot", "curve_plot",
           "k_curve_series", "dev_test_plot", "write_plots", "main"]


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


def config_signature(result: dict[str, Any], ignore_k: bool = False) -> str:
    """Short hash of everything in a run's config that can change its numbers, except the seed (and, with
    ``ignore_k``, the number of shots: the same configuration at another K has the same signature then)."""
    cfg = {k: v for k, v in (result.get("config") or {}).items() if k not in _NOT_CONFIG}
    if ignore_k and isinstance(cfg.get("strategy"), dict):
        cfg["strategy"] = {k: v for k, v in cfg["strategy"].items() if k != "k_shot"}
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
    names: dict[tuple, dict[str, str]] = {}  # (task, variant, model[, K]) -> signature -> its options, as a label
    for (task, var, model, k), sigs in per_label.items():
        if len(sigs) > 1:
            runs = [r for key, rs in groups.items() if key[:4] == (task, var, model, k) for r in rs]
            names[(task, var, model, k)] = _tell_apart(runs, config_signature)
    curve_sigs: dict[tuple, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for key, rs in groups.items():
        for r in rs:
            curve_sigs[key[:3]][config_signature(r, ignore_k=True)].append(r)
    for key3, by_sig in curve_sigs.items():  # learning curves: one series per configuration, across K
        if len(by_sig) > 1:
            names[key3] = _tell_apart([r for rs in by_sig.values() for r in rs],
                                      lambda r: config_signature(r, ignore_k=True), drop={"strategy.k_shot"})
    rows = []
    for (task, var, model, k, sig), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r.get("seed", 0))
        seeds = [r.get("seed") for r in rs]
        if len(set(seeds)) != len(seeds):
            dup = sorted({s for s in seeds if seeds.count(s) > 1})
            raise SystemExit(f"{task} {var}: seed(s) {dup} appear more than once with the same configuration: "
                             + ", ".join(r.get("_path", "?") for r in rs if r.get("seed") in dup)
                             + "\nreport one sweep at a time, or remove the duplicated runs")
        curve = var  # the learning-curve series this row is a point of (the same configuration at every K)
        if (task, var, model) in names:
            curve = f"{var} {names[(task, var, model)][config_signature(rs[0], ignore_k=True)]}"
        if len(per_label[(task, var, model, k)]) > 1:  # several configurations of one strategy: tell them apart
            var = f"{var} {names[(task, var, model, k)][sig]}"
        rows.append({**_row(task, var, model, k, rs), "curve": curve})
    return rows


def _tell_apart(runs: list[dict[str, Any]], signature: Any, drop: Iterable[str] = ()) -> dict[str, str]:
    """``{signature: "lr=1e-05,batch_size=4"}``: each configuration named by the options whose values differ
    between the runs' configurations (as a grid point is named); ``cfg=<signature>`` when two configurations
    show the same values (they differ only in what a run records beside its config)."""
    values: dict[str, dict[str, Any]] = {}
    for r in runs:
        values.setdefault(signature(r), {key: v for key, v in _config_values(r).items()
                                         if key != "seed" and key not in set(drop)})
    keys = sorted({key for v in values.values() for key in v})
    varying = [key for key in keys if len({json.dumps(v.get(key), default=str) for v in values.values()}) > 1]
    labels = {sig: point_label({key: v.get(key) for key in varying}) for sig, v in values.items()}
    if len(set(labels.values())) < len(labels):
        return {sig: f"cfg={sig}" for sig in labels}
    return labels


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


# ---------------------------------------------------------------- grid selection on few-shot dev (LM-BFF)

def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (lists and other leaves as JSON text, so they compare by value)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d if isinstance(d, (int, float, str, bool)) or d is None else json.dumps(d, sort_keys=True)}


def _config_values(result: dict[str, Any]) -> dict[str, Any]:
    cfg = {k: v for k, v in (result.get("config") or {}).items() if k not in _NOT_CONFIG}
    flat = _flat(cfg)
    flat["template"] = result.get("template")
    return flat


def _sort_value(v: Any) -> tuple:
    if isinstance(v, bool) or v is None:
        return (1, str(v))
    if isinstance(v, (int, float)):
        return (0, float(v))
    try:
        return (0, float(v))
    except (TypeError, ValueError):
        return (1, str(v))


def _short_key(key: str) -> str:
    return key.rsplit(".", 1)[-1] if key.startswith("strategy.") else key


def point_label(point: dict[str, Any]) -> str:
    """``lr=1e-05,batch_size=4`` for a grid point (``strategy.`` dropped from the keys)."""
    def show(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return ",".join(f"{_short_key(k)}={show(v)}" for k, v in point.items()) or "default"


def select_on_dev(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """LM-BFF's protocol over a grid: for each seed, the configuration with the best few-shot dev score.

    Runs are grouped by (task, strategy variant, model, K); inside a group the configurations are told apart
    by the options whose values differ between its runs (the grid: ``strategy.lr``, ``strategy.batch_size``,
    or a template, ...).  For each seed, the run with the highest ``train.best_dev`` (the task's metric on the
    few-shot dev set, at the best dev checkpoint) is chosen; ties go to the configuration whose differing values
    sort first (numbers by value, the keys in alphabetical order), so the choice never depends on file order.
    The test metric is read only for the chosen runs' row (and shown per grid point for information).
    Each returned row has the :func:`aggregate` fields, plus ``selected`` (per seed: the point, dev, test),
    ``grid`` (per point: dev and test mean (std) over seeds) and ``grid_keys``."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[(r["task"], variant(r), Path(str(r.get("model"))).name, r.get("k_shot", 0))].append(r)
    rows = []
    for (task, var, model, k), rs in sorted(groups.items()):
        values = [_config_values(r) for r in rs]
        keys = sorted({key for v in values for key in v} - {"seed"})
        varying = [key for key in keys if len({json.dumps(v.get(key), default=str) for v in values}) > 1]
        points = [{key: v.get(key) for key in varying} for v in values]
        for r, p in zip(rs, points):
            if "best_dev" not in (r.get("train") or {}) or r["train"]["best_dev"] is None:
                if len(varying) == 0:
                    break  # one configuration (e.g. zero-shot): nothing to select
                raise SystemExit(f"{r.get('_path', '?')}: no train.best_dev (a run without a dev set) in a group of "
                                 f"{task} {var} that varies {varying}; --select dev needs trained runs")
        by_seed: dict[Any, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
        for r, p in zip(rs, points):
            by_seed[r.get("seed")].append((r, p))
        chosen = []
        for seed in sorted(by_seed, key=_sort_value):
            cands = by_seed[seed]
            labels = [point_label(p) for _, p in cands]
            if len(set(labels)) != len(labels):
                dup = sorted({lab for lab in labels if labels.count(lab) > 1})
                raise SystemExit(f"{task} {var} seed {seed}: configuration {dup} appears more than once: "
                                 + ", ".join(r.get("_path", "?") for r, p in cands if point_label(p) in dup)
                                 + "\nreport one sweep at a time, or remove the duplicated runs")
            dev = lambda r: (r.get("train") or {}).get("best_dev")  # noqa: E731
            best_r, best_p = min(cands, key=lambda rp: (-(dev(rp[0]) if dev(rp[0]) is not None else float("-inf")),
                                                         [_sort_value(rp[1][key]) for key in varying]))
            chosen.append({"seed": seed, "point": point_label(best_p), "values": best_p, "dev": dev(best_r),
                           "test": best_r["metrics"]["main"], "n_candidates": len(cands), "_r": best_r})
        chosen_runs = [c.pop("_r") for c in chosen]
        row = _row(task, var, model, k, chosen_runs)  # chosen: one run per seed, in seed order
        n_points = len({point_label(p) for p in points})
        row["strategy"] = f"{var} (dev-selected of {n_points})" if n_points > 1 else var
        row["curve"] = f"{var} (dev-selected)" if n_points > 1 else var
        row["selected"] = [{**c, "dev": None if c["dev"] is None else round(float(c["dev"]) * 100, 2),
                            "test": round(float(c["test"]) * 100, 2)} for c in chosen]
        row["grid_keys"] = varying
        row["dev_mean"] = float(np.mean([c["dev"] for c in chosen if c["dev"] is not None] or [np.nan])) * 100
        grid = []
        for label in sorted({point_label(p) for p in points},
                            key=lambda lab: [_sort_value(v) for v in next(p for p in points if point_label(p) == lab).values()]):
            prs = sorted([r for r, p in zip(rs, points) if point_label(p) == label], key=lambda r: _sort_value(r.get("seed")))
            devs = np.array([(r.get("train") or {}).get("best_dev") or np.nan for r in prs], dtype=float) * 100
            tests = np.array([r["metrics"]["main"] for r in prs], dtype=float) * 100
            grid.append({"point": label, "n_seeds": len(prs), "seeds": [r.get("seed") for r in prs],
                         "dev_mean": float(np.nanmean(devs)) if np.isfinite(devs).any() else None,
                         "dev_std": float(np.nanstd(devs)) if np.isfinite(devs).any() else None,
                         "test_mean": float(tests.mean()), "test_std": float(tests.std()),
                         "per_seed": [round(float(x), 2) for x in tests],
                         "per_seed_dev": [None if not np.isfinite(x) else round(float(x), 2) for x in devs],
                         "times_chosen": sum(c["point"] == label for c in chosen)})
        row["grid"] = grid
        rows.append(row)
    return rows


def _row(task: str, var: str, model: str, k: int, rs: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary row over runs ``rs`` (one per seed, in seed order): mean (std) of the reported metric and of
    accuracy, per-seed values, split checksums, mean run time -- an :func:`aggregate` row, or the dev-chosen runs
    of :func:`select_on_dev` (which may differ in configuration)."""
    main = np.array([r["metrics"]["main"] for r in rs]) * 100
    acc = np.array([r["metrics"]["accuracy"] for r in rs]) * 100
    return {"task": task, "strategy": var, "model": model, "k_shot": k, "n_seeds": len(rs),
            "seeds": [r.get("seed") for r in rs], "metric": rs[0]["metrics"]["main_metric"],
            "mean": float(main.mean()), "std": float(main.std()), "acc_mean": float(acc.mean()),
            "acc_std": float(acc.std()), "per_seed": [round(float(x), 2) for x in main],
            "checksums": {str(r.get("seed")): r.get("checksums", {}).get("few_shot") for r in rs},
            "train_s_mean": float(np.mean([r.get("timings", {}).get("total_s", 0.0) for r in rs]))}


def selection_markdown(rows: list[dict[str, Any]]) -> str:
    """Per group: the configuration chosen for each seed, and every grid point's dev and test."""
    out = []
    for r in rows:
        if "selected" not in r:
            continue
        out.append(f"### {r['task']} {r['strategy']} ({r['model']}, K={r['k_shot']}): chosen on few-shot dev\n")
        out.append("| seed | chosen configuration | dev | test |")
        out.append("|---|---|---|---|")
        for c in r["selected"]:
            out.append(f"| {c['seed']} | {c['point']} | {c['dev']:.2f} | {c['test']:.2f} |" if c["dev"] is not None
                       else f"| {c['seed']} | {c['point']} | | {c['test']:.2f} |")
        out.append(f"| mean (std) | | {r['dev_mean']:.1f} | {r['mean']:.1f} ({r['std']:.1f}) |")
        if len(r["grid"]) > 1:
            out.append("")
            out.append("| grid point | seeds | dev mean (std) | test mean (std) | chosen for |")
            out.append("|---|---|---|---|---|")
            for g in r["grid"]:
                dev = "" if g["dev_mean"] is None else f"{g['dev_mean']:.1f} ({g['dev_std']:.1f})"
                out.append(f"| {g['point']} | {g['n_seeds']} | {dev} | {g['test_mean']:.1f} ({g['test_std']:.1f}) | "
                           f"{g['times_chosen']} seed(s) |")
        out.append("")
        out.append(f"metric: {r['metric']} in %; dev = the few-shot dev set (the selection criterion), test only "
                   "reported; ties on dev go to the configuration that sorts first")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- LaTeX

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def latex_table(rows: list[dict[str, Any]], caption: str | None = None, label: str = "tab:results") -> str:
    """The :func:`markdown_table` as a LaTeX ``booktabs`` table (``\\usepackage{booktabs}``): mean (std)."""
    tasks = sorted({r["task"] for r in rows})
    cell = {(r["strategy"] + (f" K={r['k_shot']}" if len({x['k_shot'] for x in rows}) > 1 else ""), r["task"]): r
            for r in rows}
    strategies = list(dict.fromkeys(s for s, _ in cell))
    seeds = sorted({r["n_seeds"] for r in rows})
    caption = caption or ("Test " + ", ".join(sorted({f"{tex_escape(r['task'])}: {tex_escape(r['metric'])}"
                                                       for r in rows}))
                          + f" in \\%, mean (std) over {'/'.join(map(str, seeds))} seed{'s' if seeds != [1] else ''}.")
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "c" * len(tasks) + "}", r"\toprule",
             "Strategy & " + " & ".join(tex_escape(t) for t in tasks) + r" \\", r"\midrule"]
    for s in strategies:
        vals = []
        for t in tasks:
            r = cell.get((s, t))
            vals.append("" if r is None else f"{r['mean']:.1f} ({r['std']:.1f})")
        lines.append(tex_escape(s) + " & " + " & ".join(vals) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"\\caption{{{caption}}}", f"\\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plots (matplotlib figures, files only)

def _figure(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A matplotlib ``Figure`` and its axes, made without pyplot: it is drawn into files only (savefig picks the
    renderer for the file type), never opens a window and leaves the caller's matplotlib backend alone (a
    notebook's inline plots keep working after a report)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _save(fig: Any, path: Path, pdf: bool) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    written = [path]
    if pdf:
        fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
        written.append(path.with_suffix(".pdf"))
    return written


def strip_plot(groups: dict[str, list[float]], path: str | Path, ylabel: str = "test metric (%)",
               title: str | None = None, highlight: Iterable[str] = (), horizontal: bool = False,
               chance: float | None = None, pdf: bool = False, point_name: str = "seed",
               highlight_name: str = "chosen on dev") -> list[Path]:
    """A box plot per group with every value drawn as a point (seeds, templates ...); returns the files written.

    ``groups`` maps a label to its values; ``highlight`` labels are drawn in another colour; ``horizontal``
    puts the labels on the y axis (long labels such as templates); ``chance`` draws a dashed line; the legend
    names a point ``one <point_name>`` (``(<highlight_name>)`` for the highlighted groups)."""
    labels = list(groups)
    marked = set(highlight)
    long = max((len(s) for s in labels), default=0)
    size = (7, 0.9 + 0.45 * len(labels)) if horizontal else (max(4.5, 1.0 + 0.9 * len(labels)), 4.2)
    fig, ax = _figure(size)
    data = [np.asarray(groups[k], dtype=float) for k in labels]
    pos = np.arange(1, len(labels) + 1)
    box = dict(positions=pos, widths=0.5, showfliers=False, medianprops={"color": "black"})
    try:  # matplotlib >= 3.10 names the direction `orientation` (`vert` is deprecated)
        ax.boxplot(data, orientation="horizontal" if horizontal else "vertical", **box)
    except TypeError:
        ax.boxplot(data, vert=not horizontal, **box)
    rng = np.random.default_rng(0)  # deterministic jitter
    legend: set[str] = set()

    def once(name: str) -> str:  # each kind of mark in the legend once
        if name in legend:
            return "_nolegend_"
        legend.add(name)
        return name

    for p, k, vals in zip(pos, labels, data):
        jitter = rng.uniform(-0.12, 0.12, len(vals))
        colour = "tab:red" if k in marked else "tab:blue"
        xy = (vals, p + jitter) if horizontal else (p + jitter, vals)
        ax.scatter(*xy, s=22, color=colour, zorder=3, alpha=0.85,
                   label=once(f"one {point_name}" + (f" ({highlight_name})" if k in marked else "")))
        if len(vals):
            m = float(vals.mean())
            ax.scatter(*((m, p) if horizontal else (p, m)), marker="D", s=36, color="black", zorder=4,
                       label=once("mean (box: quartiles, median)"))
    if chance is not None:
        (ax.axvline if horizontal else ax.axhline)(chance, ls="--", color="grey", lw=1, label="chance")
    ax.legend(loc="best", fontsize=7, framealpha=0.8)
    if horizontal:
        ax.set_yticks(pos, labels, fontsize=8)
        ax.set_xlabel(ylabel)
        ax.invert_yaxis()
    else:
        ax.set_xticks(pos, labels, rotation=30 if long > 12 else 0, ha="right" if long > 12 else "center", fontsize=8)
        ax.set_ylabel(ylabel)
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, Path(path), pdf)


def curve_plot(series: dict[str, dict[float, list[float]]], path: str | Path, xlabel: str = "K (examples per class)",
               ylabel: str = "test metric (%)", title: str | None = None, logx: bool = True,
               chance: float | None = None, pdf: bool = False) -> list[Path]:
    """One line per series: the mean over its values at each x, a band of one std, and the values as points."""
    fig, ax = _figure((6, 4.2))
    for name, pts in series.items():
        xs = sorted(pts)
        means = np.array([np.mean(pts[x]) for x in xs])
        stds = np.array([np.std(pts[x]) for x in xs])
        line, = ax.plot(xs, means, marker="o", label=name)
        ax.fill_between(xs, means - stds, means + stds, color=line.get_color(), alpha=0.15)
        for x in xs:
            ax.scatter([x] * len(pts[x]), pts[x], s=10, color=line.get_color(), alpha=0.5)
    if logx:
        ax.set_xscale("log", base=2)
        allx = sorted({x for pts in series.values() for x in pts})
        ax.set_xticks(allx, [f"{x:g}" for x in allx])
    if chance is not None:
        ax.axhline(chance, ls="--", color="grey", lw=1, label="chance")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, Path(path), pdf)


def dev_test_plot(row: dict[str, Any], path: str | Path, pdf: bool = False) -> list[Path]:
    """A dev-selected grid: few-shot dev against test for every run (one colour per grid point), the runs chosen
    on dev ringed -- how well the dev score the choice is made on predicts test."""
    fig, ax = _figure((6, 4.6))
    chosen = {(c["seed"], c["point"]) for c in row["selected"]}
    ringed = False
    for g in row["grid"]:
        pts = [(d, t, s) for d, t, s in zip(g["per_seed_dev"], g["per_seed"], g["seeds"]) if d is not None]
        if not pts:
            continue
        dots = ax.scatter([d for d, _, _ in pts], [t for _, t, _ in pts], s=26, alpha=0.8, label=g["point"], zorder=3)
        picked = [(d, t) for d, t, s in pts if (s, g["point"]) in chosen]
        if picked:
            ax.scatter([d for d, _ in picked], [t for _, t in picked], s=110, facecolors="none", zorder=4,
                       edgecolors=dots.get_facecolor()[0], linewidths=1.5, label="_nolegend_")
            ringed = True
    if ringed:  # the legend's ring in black, after the grid points
        ax.scatter([], [], s=110, facecolors="none", edgecolors="black", linewidths=1.5, label="chosen on dev (per seed)")
    ax.set_xlabel(f"few-shot dev {row['metric']} (%) at the best checkpoint")
    ax.set_ylabel(f"test {row['metric']} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    ax.set_title(f"dev vs test per run: {row['task']} {row['strategy']} ({row['model']}, K={row['k_shot']})",
                 fontsize=9)
    return _save(fig, Path(path), pdf)


def k_curve_series(rows: list[dict[str, Any]]) -> dict[str, dict[float, list[float]]]:
    """The learning curves a table supports: per series (task, strategy variant, configuration apart from K;
    a dev-selected grid is one series), K -> the per-seed values; only series with two K or more."""
    tasks = {r["task"] for r in rows}
    models = {r["model"] for r in rows}
    curves: dict[str, dict[float, list[float]]] = defaultdict(dict)
    for r in rows:
        if not r["k_shot"]:
            continue  # zero-shot: no K
        name = r.get("curve") or r["strategy"]
        if len(models) > 1:
            name = f"{r['model']} {name}"
        if len(tasks) > 1:
            name = f"{r['task']} {name}"
        if r["k_shot"] in curves[name]:
            raise SystemExit(f"learning curve {name!r}: two rows at K={r['k_shot']}; report one sweep at a time")
        curves[name][r["k_shot"]] = r["per_seed"]
    return {name: dict(sorted(pts.items())) for name, pts in curves.items() if len(pts) > 1}


def write_plots(results: list[dict[str, Any]], rows: list[dict[str, Any]], out: Path, pdf: bool = False) -> list[Path]:
    """The plots a set of runs supports, next to ``out``: per-seed spread (always), metric vs K (several K),
    metric per template (several templates in one group)."""
    written: list[Path] = []
    metric = ", ".join(sorted({r["metric"] for r in rows}))
    tasks = {r["task"] for r in rows}
    # per-seed spread: every configuration (every grid point, and the dev-selected result)
    spread: dict[str, list[float]] = {}
    marked = []
    for r in rows:
        prefix = f"{r['task']} " if len(tasks) > 1 else ""
        if r.get("grid") and len(r["grid"]) > 1:
            for g in r["grid"]:
                spread[f"{prefix}{g['point']}"] = g["per_seed"]
            label = f"{prefix}{r['strategy'].split(' (')[0]}: chosen on dev"
            marked.append(label)
        else:
            label = f"{prefix}{r['strategy']}" + (f" K={r['k_shot']}" if len({x['k_shot'] for x in rows}) > 1 else "")
        spread[label] = r["per_seed"]
    if spread:
        title = f"per-seed test {metric} ({', '.join(sorted(tasks))}; {rows[0]['model']})"
        written += strip_plot(spread, out.with_name(out.name + "_seeds.png"), ylabel=f"test {metric} (%)",
                              title=title, highlight=marked, pdf=pdf)
    # dev against test per run of a dev-selected grid (one plot per grid; suffixed when there are several)
    grids = [r for r in rows if r.get("grid") and len(r["grid"]) > 1]
    for i, r in enumerate(grids):
        name = out.name + "_dev_test" + (f"_{i + 1}" if len(grids) > 1 else "") + ".png"
        written += dev_test_plot(r, out.with_name(name), pdf=pdf)
    # metric against K
    curves = k_curve_series(rows)
    if curves:
        written += curve_plot(curves, out.with_name(out.name + "_k_curve.png"), ylabel=f"test {metric} (%)",
                              title=f"learning curve ({rows[0]['model']})", pdf=pdf)
    # metric per template
    by: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by[(r["task"], variant(r), r.get("k_shot", 0))][r.get("template") or "?"].append(r["metrics"]["main"] * 100)
    multi = {k: v for k, v in by.items() if len(v) > 1}
    if multi:
        groups = {}
        for (task, var, k), temps in sorted(multi.items()):
            for t, vals in temps.items():
                shown = t if len(t) <= 60 else t[:57] + "..."
                key = f"{shown}" if len(multi) == 1 else f"{task} {var}: {shown}"
                groups[key] = vals
        written += strip_plot(groups, out.with_name(out.name + "_templates.png"), ylabel=f"test {metric} (%)",
                              title="template sensitivity", horizontal=True, pdf=pdf)
    return written


def main(argv: list[str] | None = None) -> None:
    from .distributed import single_process_entry

    single_process_entry("promptlearn.report")
    ap = argparse.ArgumentParser(prog="python -m promptlearn.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", help="sweep / run directories to search for results.json")
    ap.add_argument("--out", default=None, help="write OUT.md, OUT.tex, OUT.json and OUT_*.png "
                                                "(default: <first dir>/summary)")
    ap.add_argument("--select", choices=["dev"], default=None,
                    help="dev: per seed, the configuration with the best few-shot dev score (LM-BFF grid protocol)")
    ap.add_argument("--pdf", action="store_true", help="also write each plot as PDF")
    ap.add_argument("--no-plots", action="store_true", help="tables only")
    args = ap.parse_args(argv)
    results = collect(args.dirs)
    if not results:
        raise SystemExit(f"no results.json found under {args.dirs}")
    rows = select_on_dev(results) if args.select == "dev" else aggregate(results)
    table = markdown_table(rows)
    chosen = selection_markdown(rows) if args.select == "dev" else ""
    print(table)
    print()
    if chosen:
        print(chosen)
    for r in rows:
        print(f"{r['task']:>8} {r['strategy']:<20} {r['metric']}: {r['mean']:.1f} ({r['std']:.1f}) "
              f"seeds={r['seeds']} per-seed={r['per_seed']}")
        for seed, cs in r["checksums"].items():
            if cs is not None:  # zero-shot runs sample no few-shot split
                print(f"{'':>10}seed {seed}: split checksum {cs}")
    out = Path(args.out) if args.out else Path(args.dirs[0]) / "summary"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table + "\n" + ("\n" + chosen if chosen else ""))
    out.with_suffix(".tex").write_text(latex_table(rows))
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2, default=str))
    written = [out.with_suffix(s) for s in (".md", ".tex", ".json")]
    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401  (the plots are optional: pip install -e ".[plots]")
        except ImportError:
            print('no plots: matplotlib is not installed (pip install -e ".[plots]"); --no-plots silences this')
        else:
            written += write_plots(results, rows, out, pdf=args.pdf)
    print("\nwrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
