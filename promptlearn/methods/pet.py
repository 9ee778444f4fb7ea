"""``pet``: Pattern-Exploiting Training (Schick & Schuetze, EACL 2021), as PET's own pipeline reads::

    train_pet        one prompt-based model per pattern x repetition on the K-shot set (an ordinary
                     run each: <out>/g0/p<pattern>-r<rep>/results.json, scores/{test,few_dev,unlabeled}.npz)
    merge_logits     their class log-scores on the unlabelled pool, averaged uniformly (``mean``) or
                     weighted by each model's accuracy on the few-shot train set *before* training
                     (``wmean``, PET's default) -> <out>/soft_labels.npz
    train_classifier one plain sequence classifier (``ClassifierModel``, the distillation strategy) trained on
                     the pool with soft targets softmax(merged / T), KL * T^2, selected on few-shot dev
                     -> <out>/final/ (results.json, model/ that from_pretrained loads)

The unlabelled pool is the task's pool minus the few-shot examples with its ``label`` column removed
(:func:`promptlearn.pipeline.resolve_split` ``"unlabeled"``), ``method.unlabeled_size`` of them drawn
with the run's seed.  Every step writes its artifacts, and a rerun of the same command skips pattern
models whose ``results.json`` is there with the same configuration (an interrupted one continues from
its checkpoint with ``resume=true``).  Repetition ``r`` of a pattern trains with seed ``seed + r`` on
the few-shot sample of ``seed`` (``data_seed``), so repetition 0 is exactly ``method=single pattern=<i>``.

Python: :func:`run_pet` (``cfg`` is the same dict/DictConfig the CLI composes, e.g.
``promptlearn.run.compose(...)``-style plain dicts; ``output_dir`` is required).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..validation import Opt
from .base import Method

log = logging.getLogger("promptlearn")

__all__ = ["Pet", "PatternRun", "run_pet", "train_pet", "merge_logits", "train_classifier", "pattern_run_config",
           "accuracy_before_training", "REDUCTIONS"]

REDUCTIONS = ("mean", "wmean")


class Pet(Method):
    OPTIONS = (
        Opt("patterns", list, "method.patterns=[0,1,2] (indices or names; null: every pattern of the task)",
            nullable=True),
        Opt("repetitions", int, "method.repetitions=3", min=1),
        Opt("pattern_steps", int, "method.pattern_steps=250 (or null: strategy.max_steps)", min=1, nullable=True),
        Opt("unlabeled_size", int, "method.unlabeled_size=2000 (or null: the whole pool)", min=1, nullable=True),
        Opt("reduction", str, "method.reduction=wmean", choices=REDUCTIONS),
        Opt("mlm_weight", float, "method.mlm_weight=1e-4 (the fraction of the loss that is MLM)", min=0, max=1),
        Opt("temperature", float, "method.temperature=2", min=1e-3),
        Opt("distill_steps", int, "method.distill_steps=1000", min=1),
        Opt("distill_lr", float, "method.distill_lr=1e-5", min=0),
        Opt("distill_batch_size", int, "method.distill_batch_size=16", min=1),
        Opt("distill_eval_every", int, "method.distill_eval_every=100", min=1),
        Opt("final_strategy", str, "method.final_strategy=<the distillation strategy of conf/method/pet.yaml>"),
    )

    def run(self, c: dict[str, Any], output_dir: str | Path | None = None) -> dict[str, Any]:
        return run_pet(c, output_dir)


@dataclass
class PatternRun:
    """One trained pattern model: its run directory and what it recorded."""

    dir: Path
    pattern: Any  # promptlearn.patterns.Pattern
    rep: int
    generation: int
    results: dict[str, Any]
    before_training: float  # accuracy on the few-shot train set before training (PET's wmean weight)
    resumed: bool = False

    @property
    def key(self) -> str:
        return f"p{self.pattern.index}-r{self.rep}"

    def scores(self, split: str) -> Any:
        from ..pipeline import SCORES_DIR, load_scores

        return load_scores(self.dir / SCORES_DIR / f"{split}.npz")

    def summary(self) -> dict[str, Any]:
        sc = self.results.get("scores", {})
        return {"dir": str(self.dir), "generation": self.generation, "pattern": self.pattern.index,
                "name": self.pattern.name, "rep": self.rep, "seed": self.results.get("seed"),
                "before_training_accuracy": self.before_training, "metrics": self.results.get("metrics"),
                "few_dev": (sc.get("few_dev") or {}).get("metrics"),
                "train_examples": (self.results.get("train") or {}).get("train_examples"),
                "train_s": (self.results.get("timings") or {}).get("train_s"), "resumed": self.resumed}


@dataclass
class Plan:
    """What a PET run needs, checked before anything loads."""

    task: Any
    patterns: list[Any]
    opts: dict[str, Any]
    seed: int
    k_shot: int
    few: Any
    out: Path
    prior: list[float] = field(default_factory=list)  # class shares of the few-shot train set


# ---------------------------------------------------------------------------------------------- set-up
def _opts(c: Mapping[str, Any], method: str = "pet") -> dict[str, Any]:
    from . import get_method

    m = c.get("method")
    m = {"name": method, **(m if isinstance(m, Mapping) else {})}
    return get_method({**m, "name": method}).cfg


def plan(c: Mapping[str, Any], output_dir: str | Path | None, method: str = "pet") -> Plan:
    """Check the whole PET configuration (options, task, every pattern against the task) before any training."""
    from .. import pipeline
    from ..patterns import task_patterns, select_pattern
    from ..run import _checked

    if output_dir is None:
        raise ConfigError(f"method={method} writes a run directory per pattern model; fix: give output_dir= "
                          "(the CLI uses Hydra's run directory)")
    opts = _opts(c, method)
    if c.get("pattern") is not None or c.get("template"):
        raise ConfigError(f"method={method} trains a model per pattern of method.patterns; pattern=/template= "
                          "choose one for method=single; fix: method.patterns=[...] (or drop pattern=/template=)")
    strategy, task = _checked(c)
    if not strategy.needs_training or strategy.k_shot < 1:
        raise ConfigError(f"method={method}: strategy {strategy.name!r} trains nothing on a few-shot set; fix: "
                          "strategy=fixed_prompt (PET's pattern models)")
    from ..spec import spec_from_config

    if spec_from_config(c, task, strategy).verbalizer is None:  # a classifier: no pattern
        raise ConfigError(f"method={method}: strategy {strategy.name!r} builds a classifier without a pattern; fix: "
                          "strategy=fixed_prompt")
    where = f"patterns_file {c['patterns_file']!r}" if c.get("patterns_file") else f"task {task.name!r}"
    available = task_patterns(task, c.get("patterns_file"))
    if not available:
        raise ConfigError(f"method={method}: {where} lists no patterns; fix: add a `patterns:` list to the task YAML "
                          "or give patterns_file=<file.yaml>")
    keys = opts.get("patterns")
    chosen = [select_pattern(available, k, where) for k in keys] if keys else list(available)
    if len({p.index for p in chosen}) != len(chosen):
        raise ConfigError(f"method.patterns={list(keys)} names a pattern twice; fix: list each once")
    for p in chosen:  # every pattern against the task (fields, label words) before anything trains
        _checked({**c, "pattern": p.index, "method": {"name": "single"}})
    seed = int(c.get("seed", 42))
    few = pipeline.sample(task, strategy.k_shot, seed)
    labels = np.asarray(few.train["label"][:])
    prior = [float((labels == i).mean()) for i in range(len(task.labels))]
    return Plan(task=task, patterns=chosen, opts=opts, seed=seed, k_shot=strategy.k_shot, few=few,
                out=Path(output_dir), prior=prior)


def pattern_run_config(c: Mapping[str, Any], p: Plan, pattern: Any, rep: int,
                       pseudo_labels: str | Path | None = None) -> dict[str, Any]:
    """The ``method=single`` config of one pattern model: pattern ``pattern``, seed ``seed + rep`` on the few-shot
    sample of ``seed``, PET's steps and MLM weight, scoring ``few_dev`` and the unlabelled pool."""
    strategy = dict(c.get("strategy") or {})
    if p.opts.get("pattern_steps"):
        strategy["max_steps"] = int(p.opts["pattern_steps"])
    strategy["mlm_weight"] = float(p.opts.get("mlm_weight") or 0.0)
    strategy["pseudo_labels"] = str(pseudo_labels) if pseudo_labels else None
    return {**c, "method": {"name": "single"}, "pattern": pattern.index, "template": None, "seed": p.seed + rep,
            "data_seed": p.seed, "strategy": strategy, "unlabeled_size": p.opts.get("unlabeled_size"),
            "score_splits": ["few_dev", "unlabeled"], "save_model": False}


def accuracy_before_training(c: Mapping[str, Any], p: Plan, pattern: Any) -> float:
    """The pattern model's accuracy on the few-shot train set before training (PET's ``train_set_before_training``,
    the ``wmean`` weight); cached in ``<out>/before_training.json`` (the same for every repetition and generation:
    the untrained model does not depend on the training seed)."""
    from .. import pipeline
    from ..run import build, resolve_device, set_seed

    path = p.out / "before_training.json"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    if pattern.name in cache:
        return float(cache[pattern.name]["accuracy"])
    pc = pattern_run_config(c, p, pattern, 0)
    set_seed(p.seed)
    model = build(pc)["model"].to(resolve_device(c.get("device")))
    s = pipeline.score(model, p.few.train, "few_train", resolve_device(c.get("device")),
                       batch_size=int(c.get("eval_batch_size", 32)), metric=p.task.metric)
    del model
    cache[pattern.name] = {"accuracy": s.metrics["accuracy"], "n": s.metrics["n"], "index": pattern.index}
    p.out.mkdir(parents=True, exist_ok=True)
    pipeline.write_json_atomic(path, cache)
    log.info("pattern %s (%s): few-shot train accuracy before training %.4f", pattern.index, pattern.name,
             s.metrics["accuracy"])
    return float(s.metrics["accuracy"])


# ---------------------------------------------------------------------------------------------- the steps
def train_pet(c: Mapping[str, Any], p: Plan, gen_dir: Path, generation: int = 0,
              pseudo_labels: Mapping[str, Path] | None = None) -> list[PatternRun]:
    """Train (or find finished) one model per pattern x repetition under ``gen_dir/p<i>-r<rep>/``."""
    from ..run import finished, run_experiment

    runs = []
    for pattern in p.patterns:
        before = accuracy_before_training(c, p, pattern)
        for rep in range(int(p.opts.get("repetitions", 3))):
            key = f"p{pattern.index}-r{rep}"
            pc = pattern_run_config(c, p, pattern, rep, (pseudo_labels or {}).get(key))
            d = gen_dir / key
            done = None if c.get("rerun") else finished(d, pc)
            if done is not None:
                print(f"pattern model {d}: finished earlier, not retrained")
                runs.append(PatternRun(d, pattern, rep, generation, done, before, resumed=True))
                continue
            print(f"\n=== generation {generation}, pattern {pattern.index} ({pattern.name}), repetition {rep}: {d}")
            res = run_experiment(pc, output_dir=d)
            runs.append(PatternRun(d, pattern, rep, generation, res, before))
    return runs


def merge_logits(logits: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """PET's ``merge_logits``: the mean of the models' ``[N, C]`` logits, uniform (``weights=None``, ``mean``) or
    weighted (``wmean``: ``sum_i w_i * logits_i / sum_i w_i``)."""
    arr = np.stack([np.asarray(x, dtype=np.float64) for x in logits])  # [M, N, C]
    if weights is None:
        return arr.mean(0)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (arr.shape[0],) or (w < 0).any():
        raise ValueError(f"need one non-negative weight per model, got {list(weights)} for {arr.shape[0]} models")
    if w.sum() == 0:  # every model at 0 accuracy before training: fall back to the uniform mean
        return arr.mean(0)
    return np.tensordot(w, arr, axes=1) / w.sum()


def _weights(runs: Sequence[PatternRun], reduction: str) -> list[float] | None:
    return [r.before_training for r in runs] if reduction == "wmean" else None


def merged_scores(runs: Sequence[PatternRun], split: str, reduction: str) -> tuple[np.ndarray, np.ndarray, Any]:
    """(idx, merged logits, labels or None) of ``split`` over ``runs``; every model must have scored the same rows."""
    scored = [r.scores(split) for r in runs]
    idx = scored[0].idx
    for r, s in zip(runs, scored):
        if not np.array_equal(s.idx, idx):
            raise ConfigError(f"{r.dir}/scores/{split}.npz scored other examples than {runs[0].dir}; fix: rerun "
                              "the PET command with rerun=true (its pattern models came from different settings)")
    return idx, merge_logits([s.logits for s in scored], _weights(runs, reduction)), scored[0].labels


def write_soft_labels(path: Path, idx: np.ndarray, merged: np.ndarray, runs: Sequence[PatternRun],
                      reduction: str) -> Path:
    from .. import pipeline  # noqa: F401  (atomic write as pipeline.score does)
    import os

    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, idx=idx, logits=merged.astype(np.float32),
             models=np.asarray([str(r.dir) for r in runs]),
             weights=np.asarray(_weights(runs, reduction) or [1.0] * len(runs), dtype=np.float64))
    os.replace(tmp, path)
    return path


def train_classifier(c: Mapping[str, Any], p: Plan, soft_labels: Path, final_dir: Path) -> dict[str, Any]:
    """Distil into one sequence classifier (``method.final_strategy``) on the soft-labelled pool; a run dir of its own."""
    from ..run import finished, run_experiment
    from ..strategies import strategy_defaults

    o = p.opts
    name = str(o.get("final_strategy"))  # conf/method/pet.yaml: the distillation strategy
    strategy = {**strategy_defaults(name), "name": name, "soft_labels": str(soft_labels),
                "temperature": float(o.get("temperature", 2.0)), "max_steps": int(o.get("distill_steps", 1000)),
                "lr": float(o.get("distill_lr", 1e-5)), "batch_size": int(o.get("distill_batch_size", 16)),
                "eval_every": int(o.get("distill_eval_every", 100)), "k_shot": p.k_shot}
    fc = {**c, "method": {"name": "single"}, "pattern": None, "template": None, "seed": p.seed, "data_seed": None,
          "strategy": strategy, "score_splits": [], "save_model": True, "calibrate": False}
    done = None if c.get("rerun") else finished(final_dir, fc)
    if done is not None and (final_dir / "model").is_dir():
        print(f"distilled classifier {final_dir}: finished earlier, not retrained")
        return done
    print(f"\n=== distilling into a sequence classifier: {final_dir}")
    return run_experiment(fc, output_dir=final_dir)


# ---------------------------------------------------------------------------------------------- reporting
def _mean_std(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


def ensemble_report(runs: Sequence[PatternRun], p: Plan, split: str) -> dict[str, Any]:
    """Test metrics of the merged ensemble and of each pattern model (mean, std) on ``split``."""
    from ..metrics import compute_metrics

    reduction = p.opts.get("reduction", "wmean")
    _, merged, labels = merged_scores(runs, split, reduction)
    ens = compute_metrics(labels, merged.argmax(-1), p.task.metric)
    per = [r.results["metrics"] for r in runs]
    return {"reduction": reduction, "metrics": ens,
            "pattern_models": {k: _mean_std([m[k] for m in per]) for k in ("accuracy", "f1_macro", "main")},
            "per_pattern": {str(pt.index): {"name": pt.name, **{k: _mean_std([r.results["metrics"][k] for r in runs
                                                                              if r.pattern.index == pt.index])
                                                                 for k in ("accuracy", "main")}}
                            for pt in p.patterns}}


def scoring_throughput(runs: Sequence[PatternRun]) -> dict[str, Any]:
    """Examples/s of scoring the unlabelled pool, over the pattern models trained in this run."""
    fresh = [r for r in runs if not r.resumed] or list(runs)
    entries = [(r.results.get("scores") or {}).get("unlabeled") or {} for r in fresh]
    n = sum(int(e.get("n", 0)) for e in entries)
    secs = sum(float(e.get("seconds", 0.0)) for e in entries)
    return {"models": len(entries), "examples": n, "seconds": round(secs, 3),
            "examples_per_s": round(n / secs, 1) if secs > 0 else None}


def finish(c: Mapping[str, Any], p: Plan, method: str, last: Sequence[PatternRun], all_runs: Sequence[PatternRun],
           final: Mapping[str, Any], soft_path: Path, t0: float, extra: Mapping[str, Any] | None = None) -> dict:
    from .. import pipeline

    split = c.get("eval_split", "test")
    ens = ensemble_report(last, p, split)
    thr = scoring_throughput(all_runs)
    log.info("scored the unlabelled pool with %d pattern models: %d examples in %.2fs (%s examples/s)",
             thr["models"], thr["examples"], thr["seconds"], thr["examples_per_s"])
    results = {
        "task": p.task.name, "method": method, "model": (c.get("model") or {}).get("name_or_path"), "seed": p.seed,
        "k_shot": p.k_shot, "split": split,
        "metrics": final["metrics"],  # the distilled classifier: what the method delivers
        "distilled": {"dir": str(p.out / "final"), "model": (final.get("saved_model") or {}).get("path"),
                      "metrics": final["metrics"], "best_dev": (final.get("train") or {}).get("best_dev"),
                      "train_examples": (final.get("train") or {}).get("train_examples")},
        "ensemble": ens,
        "pattern_models": [r.summary() for r in all_runs],
        "patterns": [pt.to_dict() for pt in p.patterns],
        "soft_labels": str(soft_path),
        "unlabeled": {"n": int(len(np.load(soft_path)["idx"])), "scoring": thr},
        "resumed": [str(r.dir) for r in all_runs if r.resumed],
        **(extra or {}),
        "timings": {"pattern_models_s": round(sum((r.results.get("timings") or {}).get("total_s", 0.0)
                                                  for r in all_runs if not r.resumed), 3),
                    "distill_s": (final.get("timings") or {}).get("total_s"),
                    "total_s": round(time.perf_counter() - t0, 3)},
        "config": c,
    }
    p.out.mkdir(parents=True, exist_ok=True)
    pipeline.write_json_atomic(p.out / "results.json", results)
    m, pm = ens["metrics"], ens["pattern_models"]["main"]
    print(f"\n{p.task.name} [{method}] {split}: distilled {final['metrics']['main'] * 100:.2f}  ensemble "
          f"({ens['reduction']}) {m['main'] * 100:.2f}  pattern models {pm['mean'] * 100:.2f} ({pm['std'] * 100:.2f}) "
          f"[{results['timings']['total_s']:.1f}s]  (reported: {p.task.metric})\nresults: {p.out / 'results.json'}")
    return results


# ---------------------------------------------------------------------------------------------- entry point
def run_pet(cfg: Any, output_dir: str | Path | None = None) -> dict[str, Any]:
    """PET end to end: ``train_pet -> merge_logits -> train_classifier``; writes ``<output_dir>/results.json``.

    ``cfg`` is a run config (dict or DictConfig) whose ``method`` holds the PET options
    (``conf/method/pet.yaml``; ``strategy`` is the pattern models' strategy, ``fixed_prompt`` by default)."""
    from ..run import _plain

    t0 = time.perf_counter()
    c = _plain(cfg)
    p = plan(c, output_dir, "pet")
    runs = train_pet(c, p, p.out / "g0")
    idx, merged, _ = merged_scores(runs, "unlabeled", p.opts.get("reduction", "wmean"))
    soft = write_soft_labels(p.out / "soft_labels.npz", idx, merged, runs, p.opts.get("reduction", "wmean"))
    final = train_classifier(c, p, soft, p.out / "final")
    return finish(c, p, "pet", runs, runs, final, soft, t0)
