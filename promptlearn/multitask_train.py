"""Multi-task prompt training over one frozen LM (P-tuning v2's multi-task setting), next to single-task training.

    python -m promptlearn.multitask_train --tasks sst2,mr,subj,trec --out outputs/multitask/seed13 \\
        model.name_or_path=../shared/models/mini-mlm strategy=fixed_lm seed=13 strategy.max_steps=300

The trailing arguments are ordinary ``promptlearn.run`` overrides, applied to every task's config (composed with
``+task=<task>`` by Hydra's compose API, checked like a CLI run).  For one seed it runs, on one loaded LM:

1. **single-task** (``--single``, default on): each task alone, exactly ``python -m promptlearn.run +task=<task>
   <overrides>`` (:func:`promptlearn.run.run_experiment`) -> ``<out>/single/<task>/results.json``;
2. **multi-task**: every task's prompt model built from its config as in (1) (the same seeded initialisation),
   joined in one :class:`~promptlearn.multitask.MultiTaskModel`, trained by the one trainer on the union of the
   tasks' K-shot train sets (the same samples as (1)) with batches that mix tasks: each task's own soft prompt /
   deep prefixes and verbalizer, one frozen LM.  ``--multi-steps`` optimizer steps (default: the tasks' number
   x ``strategy.max_steps``, so every task sees as many examples as alone); the best state by accuracy on the
   union of the K-shot dev sets.  Each task's test split is then scored with its own prompt model, and saved to
   ``<out>/multi/<task>/model`` (load them together with ``python -m promptlearn.predict``);
3. **continued** (``--continue-steps N``): each task's multi-task prompt trained N more steps alone
   (its own dev set selects), scored and saved to ``<out>/continued/<task>/model``.

``<out>/multitask.json`` holds every task's test metrics for the three settings, the few-shot checksums and
wall times.  ``python -m promptlearn.multitask_train --report DIR`` tabulates ``DIR/*/multitask.json``
(``mean (std)`` over seeds, population std as ``promptlearn.report``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError, PromptlearnError

__all__ = ["main", "compose_config", "train_multitask", "report"]


def compose_config(task: str, overrides: Sequence[str]) -> dict[str, Any]:
    """The plain config ``python -m promptlearn.run +task=<task> <overrides>`` would run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .run import CONF_DIR, _plain

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"+task={task}", *overrides])
    return _plain(cfg)


class _Few:
    """The union of the tasks' few-shot sets as rows with a ``task`` column (what MultiTaskModel.encode_split reads)."""

    def __init__(self, train: list[dict[str, Any]], dev: list[dict[str, Any]]):
        self.train, self.dev = train, dev


def _rows(name: str, dataset: Any, fields: Sequence[str]) -> list[dict[str, Any]]:
    cols = {f: dataset[f][:] for f in fields}
    labels = dataset["label"][:]
    return [{"task": name, "label": int(labels[i]), **{f: cols[f][i] for f in fields}} for i in range(len(labels))]


def train_multitask(tasks: Sequence[str], overrides: Sequence[str], out: Path, single: bool = True,
                    multi_steps: int | None = None, continue_steps: int = 0) -> dict[str, Any]:
    import torch

    from . import pipeline
    from .backbone import load_backbone
    from .multitask import MultiTaskModel
    from .run import _checked, eval_split, resolve_device, run_experiment, set_seed
    from .serialization import load_prompt_model
    from .strategies import get_strategy
    from .trainer import train

    t_start = time.perf_counter()
    configs = {t: compose_config(t, overrides) for t in tasks}
    checked = {t: _checked(c) for t, c in configs.items()}  # (strategy, task data), every option checked
    c0 = configs[tasks[0]]
    strategy0 = checked[tasks[0]][0]
    if not strategy0.needs_training or "lm" in strategy0.trains:
        raise ConfigError(f"strategy {strategy0.name!r} trains {list(strategy0.trains)}: multi-task prompt training "
                          "keeps one frozen LM; fix: strategy=fixed_lm or strategy=p_tuning_v2")
    seed = int(c0.get("seed", 42))
    if c0.get("threads"):
        torch.set_num_threads(int(c0["threads"]))
    device = resolve_device(c0.get("device"))
    tokenizer, mlm = load_backbone(c0["model"]["name_or_path"], c0["model"].get("revision") or None)
    mlm.to(device).eval()
    batch_size = int(c0.get("eval_batch_size", 32))
    result: dict[str, Any] = {"tasks": list(tasks), "seed": seed, "overrides": list(overrides),
                              "strategy": strategy0.name, "single": {}, "multi": {}, "continued": {}, "checksums": {},
                              "wall_s": {}}

    def test_metrics(model: Any, name: str) -> dict[str, Any]:
        """The eval split as run_experiment scores it (``eval_split``, ``limit``)."""
        task = checked[name][1]
        test, _ = eval_split(task, configs[name])  # the split run_experiment scores (eval_split, limit)
        return pipeline.score(model, test, "test", device, batch_size=batch_size, metric=task.metric).metrics

    # 1. single-task: exactly the CLI's run on the shared LM
    if single:
        t0 = time.perf_counter()
        for name in tasks:
            res = run_experiment(configs[name], out / "single" / name, tokenizer=tokenizer, mlm=mlm)
            result["single"][name] = res["metrics"]
        result["wall_s"]["single"] = round(time.perf_counter() - t0, 1)

    # 2. multi-task: the same models (same seeded initialisation) and few-shot samples, trained jointly
    t0 = time.perf_counter()
    models, train_rows, dev_rows = {}, [], []
    for name in tasks:
        strategy, task = checked[name]
        set_seed(seed)  # as run_experiment does before building: the same initial prompt as single-task
        models[name] = pipeline.build(configs[name], task, strategy, tokenizer, mlm).to(device)
        few = pipeline.sample(task, strategy.k_shot, seed)
        result["checksums"][name] = few.checksum
        fields = models[name].template.fields
        train_rows += _rows(name, few.train, fields)
        dev_rows += _rows(name, few.dev, fields)
    multi = MultiTaskModel(models)
    steps = int(multi_steps or len(tasks) * int(strategy0.cfg["max_steps"]))
    strategy = get_strategy({**strategy0.cfg, "max_steps": steps})
    set_seed(seed)
    info = train(multi, _Few(train_rows, dev_rows), strategy, c0, device, output_dir=out / "multi",
                 main_metric="accuracy")
    result["multi_train"] = {k: v for k, v in info.items() if k != "log"}
    for name in tasks:
        result["multi"][name] = test_metrics(models[name], name)
        models[name].save_pretrained(str(out / "multi" / name / "model"))
    result["wall_s"]["multi"] = round(time.perf_counter() - t0, 1)

    # 3. continued per task, from the multi-task prompt
    if continue_steps > 0:
        t0 = time.perf_counter()
        for name in tasks:
            strategy_t, task = checked[name]
            model = load_prompt_model(out / "multi" / name / "model", tokenizer=tokenizer, mlm=mlm).to(device)
            few = pipeline.sample(task, strategy_t.k_shot, seed)
            set_seed(seed)
            train(model, few, get_strategy({**strategy_t.cfg, "max_steps": int(continue_steps)}), configs[name],
                  device, output_dir=out / "continued" / name, main_metric=task.metric)
            result["continued"][name] = test_metrics(model, name)
            model.save_pretrained(str(out / "continued" / name / "model"))
        result["wall_s"]["continued"] = round(time.perf_counter() - t0, 1)
    result["wall_s"]["total"] = round(time.perf_counter() - t_start, 1)
    out.mkdir(parents=True, exist_ok=True)
    pipeline.write_json_atomic(out / "multitask.json", result)
    return result


def report(root: Path) -> str:
    """A markdown table of ``root/*/multitask.json``: per task, test metric mean (std) over seeds per setting."""
    import numpy as np

    runs = [json.loads(p.read_text()) for p in sorted(root.glob("*/multitask.json"))]
    if not runs:
        raise ConfigError(f"--report {root}: no */multitask.json below it; fix: point it at the --out folders' parent")
    settings = [s for s in ("single", "multi", "continued") if any(r[s] for r in runs)]
    names = {"single": "single-task", "multi": "multi-task", "continued": "multi-task + continued alone"}
    lines = [f"| task (metric) | {' | '.join(names[s] for s in settings)} |", "|---" * (len(settings) + 1) + "|"]
    for task in runs[0]["tasks"]:
        cells = []
        metric = None
        for s in settings:
            vals = [100 * r[s][task]["main"] for r in runs if task in r[s]]
            metric = metric or next((r[s][task]["main_metric"] for r in runs if task in r[s]), None)
            cells.append(f"{np.mean(vals):.1f} ({np.std(vals):.1f})" if vals else "-")
        lines.append(f"| {task} ({metric}) | {' | '.join(cells)} |")
    seeds = sorted(r["seed"] for r in runs)
    walls = {s: sum(r["wall_s"].get(s, 0) for r in runs) for s in settings}
    lines.append("")
    lines.append(f"seeds {seeds}; strategy {runs[0]['strategy']}; overrides {' '.join(o for o in runs[0]['overrides'] if not o.startswith('seed='))}; "
                 f"wall time over all seeds: " + ", ".join(f"{names[s]} {walls[s]:.0f} s" for s in settings))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from .distributed import single_process_entry

    single_process_entry("promptlearn.multitask_train")
    ap = argparse.ArgumentParser(prog="python -m promptlearn.multitask_train", description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", help="comma-separated task names (conf/task/<name>.yaml)")
    ap.add_argument("--out", help="output folder for one seed")
    ap.add_argument("--no-single", action="store_true", help="skip the single-task runs")
    ap.add_argument("--multi-steps", type=int, default=None,
                    help="optimizer steps of the joint run (default: number of tasks x strategy.max_steps)")
    ap.add_argument("--continue-steps", type=int, default=0, help="then train each task alone this many steps")
    ap.add_argument("--report", metavar="DIR", help="tabulate DIR/*/multitask.json instead of training")
    ap.add_argument("overrides", nargs="*", help="promptlearn.run overrides for every task (model.name_or_path=...)")
    args = ap.parse_args(argv)
    try:
        if args.report:
            print(report(Path(args.report)))
            return 0
        if not args.tasks or not args.out:
            raise ConfigError("--tasks and --out are needed; fix: --tasks sst2,mr --out outputs/multitask/seed13")
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        if len(set(tasks)) != len(tasks) or len(tasks) < 2:
            raise ConfigError(f"--tasks {args.tasks}: give at least two distinct tasks; fix: --tasks sst2,mr")
        res = train_multitask(tasks, args.overrides, Path(args.out), single=not args.no_single,
                              multi_steps=args.multi_steps, continue_steps=args.continue_steps)
    except PromptlearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for s in ("single", "multi", "continued"):
        if res[s]:
            print(f"{s:>10}: " + "  ".join(f"{t} {100 * m['main']:.1f}" for t, m in res[s].items()))
    print(f"wrote {Path(args.out) / 'multitask.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
