"""Hydra entry point: ``python -m promptlearn.run +task=sst2 [model.name_or_path=...] [strategy=...]``.

A run is the pipeline stages of :mod:`promptlearn.pipeline`, in order::

    task -> build (spec -> model) -> sample (few-shot split) -> refine (verbalizer, e.g. KPT)
         -> demonstrations (optional) -> train (strategy) -> calibrate
         -> score (eval split + score_splits) -> results.json, predictions.jsonl, scores/<split>.npz

Nothing here depends on which strategy or verbalizer runs: both come from registries
(:mod:`promptlearn.strategies`, :mod:`promptlearn.verbalizers`); ``plugins=[module]`` imports
modules that register more before the run starts.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from . import demonstrations, distributed, pipeline
from .calibration import calibrate as calibrate_model, requested as requested_calibration
from .errors import ConfigError, PromptlearnError, ReportedByMainProcess
from .metrics import ids_checksum
from .patterns import apply_pattern
from .task import load_task
from .validation import check_against_task, check_config

log = logging.getLogger("promptlearn")

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str | None) -> torch.device:
    """``device=auto|cpu|cuda|cuda:1``; under ``accelerate launch`` / ``torchrun`` the launcher's device for this
    process (:func:`promptlearn.distributed.init`)."""
    return distributed.init(name)


def _plain(cfg: Any) -> Any:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return cfg


def load_plugins(modules: Any) -> list[str]:
    """Import the modules named in ``plugins`` (they register strategies, verbalizers, ...)."""
    names = [modules] if isinstance(modules, str) else list(modules or [])
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"plugins=[{name}]: cannot import {name!r} ({exc}); fix: put the module on PYTHONPATH "
                              "or install the package that provides it") from exc
    return names


def _task(c: dict[str, Any]) -> Any:
    task_cfg = c.get("task")
    if not task_cfg:
        raise ConfigError("no task given; fix: add +task=NAME, e.g. `python -m promptlearn.run +task=sst2` "
                         f"(tasks: {', '.join(sorted(p.stem for p in (CONF_DIR / 'task').glob('*.yaml')))})")
    return apply_pattern(load_task(task_cfg, data_root=c.get("data_root")), c)  # pattern=: its template + words


def _checked(c: dict[str, Any]) -> tuple[Any, Any]:
    """Plugins, the whole config, the task, and the config against the task: (strategy, task)."""
    try:
        load_plugins(c.get("plugins"))
        strategy = check_config(c)  # every option, before anything is loaded
        distributed.init(c.get("device"))  # under a launcher: the process group, before the data is read
        with distributed.main_process_first():  # several processes: one fills the datasets cache
            task = _task(c)
        check_against_task(c, task, strategy, c.get("template") or task.template)  # before the model is loaded
    except Exception as exc:
        if distributed.is_main():
            raise
        # every process checks the same config against the same data: the main process reports it once
        raise ReportedByMainProcess(str(exc)) from exc
    return strategy, task


def build(cfg: Any, tokenizer: Any = None, mlm: Any = None) -> dict[str, Any]:
    """Task and model for a config (no training); ``tokenizer``/``mlm`` may reuse a loaded masked LM."""
    c = _plain(cfg)
    strategy, task = _checked(c)
    model = pipeline.build(c, task, strategy, tokenizer, mlm)
    return {"task": task, "strategy": strategy, "model": model, "template": model.template,
            "verbalizer": getattr(model, "verbalizer", None), "tokenizer": model.template.tokenizer}


def evaluate(model: Any, dataset: Any, batch_size: int, device: torch.device, main_metric: str,
             progress: bool = True, desc: str = "evaluating") -> tuple[dict[str, Any], np.ndarray]:
    """Score a labelled split through the pipeline's ``score`` stage; returns (metrics, scores)."""
    s = pipeline.score(model, dataset, desc, device, batch_size=batch_size, metric=main_metric, progress=progress)
    return s.metrics, s.logits


def limit_note(full: Any, limited: Any, labels: list[str], limit: int, split: str = "test") -> str | None:
    """A warning when ``limit=N`` (the first N examples) leaves out classes the whole split has: files that list
    one class after another (MR, MPQA, Subj) give a one-class subset, whose metric says little."""
    if "label" not in limited.column_names or len(limited) == len(full):
        return None
    have = {int(x) for x in limited["label"][:] if x is not None and int(x) >= 0}
    missing = sorted({int(x) for x in full["label"][:] if x is not None and int(x) >= 0} - have)
    if not missing:
        return None
    return (f"limit={limit}: the first {len(limited)} of {len(full)} {split} examples have no example of class(es) "
            f"{[labels[i] for i in missing]} (the split lists its classes in blocks), so their metric says little; "
            "fix: a larger limit, or no limit")


def eval_split(task: Any, c: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The split a run scores (``eval_split``, default test), cut to its first ``limit`` examples, and the
    :func:`limit_note` warning of the cut (None without one)."""
    name = c.get("eval_split", "test")
    split = task.splits[name]
    if not c.get("limit"):
        return split, None
    limited = split.select(range(min(int(c["limit"]), len(split))))
    return limited, limit_note(split, limited, task.labels, int(c["limit"]), name)


def run_experiment(cfg: Any, output_dir: str | os.PathLike | None = None, tokenizer: Any = None,
                   mlm: Any = None) -> dict[str, Any]:
    """Run one configuration end to end and write ``results.json`` (+ ``predictions.jsonl``, ``scores/``).

    ``tokenizer``/``mlm`` reuse a loaded masked LM instead of loading ``model.name_or_path``; the ``mlm`` is
    used as it is, so a strategy that tunes the LM (``fixed_prompt``, ``finetune``, an adapter ...) changes it
    in place: give each run its own copy (``copy.deepcopy(mlm)``, as the notebooks do)."""
    t0 = time.perf_counter()
    c = _plain(cfg)
    strategy, task = _checked(c)  # plugins, every option, the task's data, the options against the task
    main = distributed.is_main()  # with several processes, the one that writes files and prints
    seed = int(c.get("seed", 42))
    set_seed(seed)  # before the model is built (its random initialisation); reading the task draws nothing
    if c.get("threads"):
        torch.set_num_threads(int(c["threads"]))
    device = resolve_device(c.get("device"))
    out = Path(output_dir) if output_dir is not None else None

    # --- build: the model from its spec (with demonstrations, the template gets their slots)
    demo_cfg = c.get("demonstrations") or {}
    query_template = c.get("template") or task.template
    if demonstrations.enabled(demo_cfg):
        n_demos = len(task.labels) * int(demo_cfg.get("per_class", 1))
        c = {**c, "template": demonstrations.demo_template_text(query_template, n_demos)}
    model = pipeline.build(c, task, strategy, tokenizer, mlm)
    model.to(device)
    template, verbalizer = model.template, getattr(model, "verbalizer", None)
    t_build = time.perf_counter() - t0
    log.info("task %s: %s", task.name, {k: len(v) for k, v in task.splits.items()})
    log.info("template: %s", template.text)
    if verbalizer is not None:
        log.info("%s", verbalizer.describe())
    log.info("LM head restricted to label-word rows: %s", model.restricted_head)

    split_name = c.get("eval_split", "test")
    test, note = eval_split(task, c)
    if note and main:
        log.warning("%s", note)

    # --- sample
    checksums = {f"{split_name}_ids": ids_checksum(test["idx"][:])}
    k_shot = strategy.k_shot or (int(demo_cfg.get("k_shot", 16)) if demonstrations.enabled(demo_cfg) else 0)
    data_seed = int(c["data_seed"]) if c.get("data_seed") is not None else seed  # PET's repetitions: same data
    few = pipeline.sample(task, k_shot, data_seed)
    if few is not None:
        checksums["few_shot"] = few.checksum
        log.info("few-shot split K=%d seed=%d: train %d, dev %d, checksum %s", k_shot, seed, len(few.train),
                 len(few.dev), few.checksum)

    # --- refine: a verbalizer that adapts to unlabelled support examples before training (KPT)
    refinement = pipeline.refine(model, task, few, c, device)
    if refinement is not None:
        log.info("verbalizer refined on %d support examples:\n%s", refinement["n"], model.verbalizer.describe())

    # --- demonstrations (LM-BFF): drawn from the few-shot train set
    demos = demonstrations.from_config(demo_cfg, query_template, model, few.train if few else None, seed)
    if demos is not None:
        model.use_demonstrations(demos)  # recorded in the spec: a saved model predicts with them
        log.info("demonstrations: %d per input (%d per class, filter %s), %d sets averaged at test time; e.g. %r",
                 demos.n_demos, demos.per_class, demos.filter, demos.num_sets, demos.support_demo[0])
    first = demos.apply(test.select([0]), demonstrations.FIRST_SET_EVAL) if demos is not None else test
    log.info("first %s example as the model sees it:\n  %s", split_name,
             template.tokenizer.decode(template.encode(first[0])["input_ids"]))
    transform = demos.eval_sets if demos is not None else None

    # --- train
    t1 = time.perf_counter()
    train_info = pipeline.train(model, few, strategy, c, device, out, task.metric, augment=demos, task=task)
    t_train = time.perf_counter() - t1

    # --- calibrate (on the final model)
    calibration = None
    mode = requested_calibration(c.get("calibrate"))
    if mode:
        used = (few.train_ids + few.dev_ids) if few is not None else []
        calibration = calibrate_model(model, mode, device, pool=task.splits.get("train"),
                                      size=int(c.get("calibrate_size", 200)), seed=seed, exclude=used,
                                      batch_size=int(c.get("eval_batch_size", 32)))
        log.info("calibrated (%s, n=%d): prior %s", mode, calibration["n"], calibration["prior"])

    # --- score: the eval split, then any others asked for
    t2 = time.perf_counter()
    batch_size = int(c.get("eval_batch_size", 32))
    scored = pipeline.score(model, test, split_name, device, batch_size=batch_size, metric=task.metric,
                            output_dir=out, progress=c.get("progress", True), transform=transform)
    t_eval = time.perf_counter() - t2
    metrics = scored.metrics
    other_scores = {}
    for name in c.get("score_splits") or []:
        data = pipeline.resolve_split(task, name, few, size=c.get("unlabeled_size"), seed=data_seed)
        t_split = time.perf_counter()
        s = pipeline.score(model, data, name, device, batch_size=batch_size,
                           metric=task.metric, output_dir=out, progress=c.get("progress", True), transform=transform)
        t_split = time.perf_counter() - t_split
        other_scores[name] = {"n": len(s.idx), "path": str(s.path) if s.path else None, "metrics": s.metrics,
                              "seconds": round(t_split, 3), "examples_per_s": round(len(s.idx) / max(t_split, 1e-9), 1)}
        log.info("scored %s: %d examples in %.2fs (%.1f examples/s)", name, len(s.idx), t_split,
                 other_scores[name]["examples_per_s"])

    # --- report
    results = {
        "task": task.name,
        "strategy": strategy.name,
        "model": c.get("model", {}).get("name_or_path"),
        "seed": seed,
        "k_shot": k_shot,
        "split": split_name,
        "template": template.text,
        "verbalizer": getattr(verbalizer, "label_words", None) if verbalizer is not None else None,
        "verbalizer_config": verbalizer.config() if verbalizer is not None else None,
        "label_word_splits": [[cls, w, p] for cls, w, p in getattr(verbalizer, "splits", [])] or None,
        "restricted_head": model.restricted_head,
        "calibration": calibration,
        "refinement": refinement,
        "demonstrations": {**demo_cfg, "n_demos": demos.n_demos} if demos is not None else None,
        "metrics": metrics,
        "checksums": checksums,
        "train": train_info,
        "scores": {split_name: {"n": len(scored.idx), "path": str(scored.path) if scored.path else None},
                   **other_scores},
        "spec": model.spec.to_dict(),
        "timings": {"build_s": round(t_build, 3), "train_s": round(t_train, 3), "eval_s": round(t_eval, 3),
                    "total_s": round(time.perf_counter() - t0, 3)},
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": __import__("transformers").__version__, "device": str(device),
                        "processes": distributed.world_size()},
        "config": c,
    }
    save_error = None
    if out is not None and c.get("save_model") and main:
        try:
            saved = model.save_pretrained(str(out / "model"), **({"materialize": True} if c.get("materialize_prompt")
                                                                   else {}))
            results["saved_model"] = {"path": str(saved),
                                      "bytes": sum(f.stat().st_size for f in saved.rglob("*") if f.is_file())}
            print(f"saved model to {saved} ({results['saved_model']['bytes'] / 1e6:.3f} MB)")
        except PromptlearnError as exc:  # the results are still written; the error follows
            save_error = exc
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        pipeline.write_json_atomic(out / "results.json", results)
        tmp = out / "predictions.jsonl.tmp"
        with open(tmp, "w") as f:
            for idx, label, pred, s in zip(scored.idx.tolist(), scored.labels.tolist(), scored.preds.tolist(),
                                           scored.logits.tolist()):
                f.write(json.dumps({"idx": idx, "label": label, "pred": pred, "scores": s}) + "\n")
        os.replace(tmp, out / "predictions.jsonl")
    distributed.barrier()  # the results are written (a method reading them goes on in every process)
    if out is not None and not c.get("keep_checkpoint"):
        from .trainer import CHECKPOINT, remove_checkpoints

        remove_checkpoints(out / CHECKPOINT)  # the results are safe now
    if save_error is not None:
        raise save_error
    if not main:
        return results
    cal = f" calibrated={calibration['mode']}" if calibration else ""
    print(f"\n{task.name} [{results['strategy']}{cal}] {split_name} n={metrics['n']}: "
          f"accuracy={metrics['accuracy'] * 100:.2f}  f1_macro={metrics['f1_macro'] * 100:.2f}  "
          f"(reported: {task.metric})  [{results['timings']['total_s']:.1f}s]")
    if out is not None:
        print(f"results: {out / 'results.json'}")
    return results


def safe_dirname(overrides: str, limit: int = 120) -> str:
    """A directory name for a set of overrides: no path separators; long ones shortened with a hash."""
    import hashlib

    name = (overrides or "defaults").replace("/", "_").replace("+", "")
    if len(name) > limit:
        name = name[: limit - 13] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return name


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, SLURM pre-emption, a scheduler): handled like Ctrl-C -- checkpoint, then exit."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


# options that never change a run's numbers: a finished job is the same job whatever they were
_VOLATILE = {"progress", "device", "threads", "resume", "keep_checkpoint", "rerun", "debug", "tensorboard"}


def finished(output_dir: Path, c: dict[str, Any]) -> dict[str, Any] | None:
    """The results of an earlier run of the same configuration in ``output_dir``, if it finished."""
    path = output_dir / "results.json"
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except ValueError:  # a results file is written atomically, so this is someone else's file
        return None
    strip = lambda d: {k: v for k, v in (d or {}).items() if k not in _VOLATILE}  # noqa: E731
    return old if strip(old.get("config")) == strip(json.loads(json.dumps(c, default=str))) else None


_START = time.time()  # a plain run's start; under a launcher, the main process's (register_resolvers)


def register_resolvers() -> None:
    """The config's own interpolations: ``${pl_dirname:...}`` (a run directory from overrides) and
    ``${pl_now:FORMAT}`` (the run's start time: under ``accelerate launch`` / ``torchrun`` the main process's,
    sent to the others, so every process of a multirun writes into the same timestamped sweep folder)."""
    from omegaconf import OmegaConf

    global _START
    if distributed.launched_processes() > 1:
        # the process group comes up before Hydra reads the config: a device= override is read from the command
        # line here (device=cpu under torchrun on a GPU machine: gloo, not NCCL)
        device = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("device=")), "auto")
        try:
            distributed.init(device)
        except PromptlearnError as exc:
            if distributed.is_main():
                print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        _START = distributed.broadcast(_START)
    if not OmegaConf.has_resolver("pl_dirname"):
        OmegaConf.register_new_resolver("pl_dirname", safe_dirname)
    if not OmegaConf.has_resolver("pl_now"):
        OmegaConf.register_new_resolver("pl_now", lambda fmt: time.strftime(fmt, time.localtime(_START)))


def run_method(cfg: Any, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run the method the config names (``method=single`` -- :func:`run_experiment` -- by default; ``pet``, ``ipet``)."""
    from .methods import run_method as run

    return run(cfg, output_dir)


def main() -> None:
    """Console entry (``promptlearn`` / ``python -m promptlearn.run``), Hydra-driven.

    promptlearn's own errors (:class:`~promptlearn.errors.PromptlearnError`) print one message and exit
    with code 2; ``debug=true`` or ``HYDRA_FULL_ERROR=1`` shows the traceback.  SIGTERM is handled like
    Ctrl-C (a training run writes its checkpoint first).  A rerun multirun skips jobs that finished.
    """
    import signal

    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig

    register_resolvers()
    signal.signal(signal.SIGTERM, _on_sigterm)

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _main(cfg: DictConfig) -> float:
        hc = HydraConfig.get()
        out = Path(hc.runtime.output_dir)
        c = _plain(cfg)
        if not distributed.is_main():  # several processes: the main one logs and prints
            logging.getLogger("promptlearn").setLevel(logging.WARNING)
        if hc.mode == RunMode.MULTIRUN and not c.get("rerun"):
            done = distributed.broadcast(finished(out, c))  # every process skips the same jobs
            if done is not None:
                if distributed.is_main():
                    print(f"skipping job {hc.job.num}: finished earlier ({out / 'results.json'}); "
                          "rerun=true runs it again")
                return done["metrics"]["main"]
        try:
            res = run_method(cfg, output_dir=out)  # method=single (run_experiment) | pet | ipet
        except PromptlearnError as exc:
            if c.get("debug") or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            if distributed.is_main():
                print(f"error: {exc}", file=sys.stderr)
            elif not isinstance(exc, ReportedByMainProcess):  # an error of this process alone
                print(f"error (process {distributed.rank()} of {distributed.launched_processes()}): {exc}",
                      file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt as exc:
            what = "SIGTERM" if isinstance(exc, Terminated) else "interrupted"
            if distributed.is_main():
                print(f"{what}: stopped; rerun the same command with resume=true to continue a training run",
                      file=sys.stderr)
            raise SystemExit(143 if isinstance(exc, Terminated) else 130) from None
        return res["metrics"]["main"]

    _main()


if __name__ == "__main__":
    main()
