"""Hydra entry point: ``python -m promptlearn.run +task=sst2 [model.name_or_path=...] [strategy=...]``.

The data path is: config -> task (load_task) -> few-shot split (sample_few_shot) -> Template ->
Verbalizer -> PromptModel -> strategy (zero-shot evaluation or a trainer) -> metrics -> results.json.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import encode_dataset, make_loader
from .metrics import compute_metrics, ids_checksum, predict_scores
from .prompt_model import ModelLoadError, PromptModel, load_backbone
from .sampler import sample_few_shot
from .task import load_task
from .template import Template, is_space_sensitive, iter_fields
from .verbalizer import Verbalizer

log = logging.getLogger("promptlearn")

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _plain(cfg: Any) -> Any:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return cfg


def build(cfg: Any, tokenizer: Any = None, mlm: Any = None) -> dict[str, Any]:
    """Task, tokenizer, model, template, verbalizer and model for a config (no training).

    ``tokenizer``/``mlm`` may be passed in to reuse an already loaded masked LM.
    """
    c = _plain(cfg)
    task_cfg = c.get("task")
    if not task_cfg:
        raise SystemExit("no task given; run e.g. `python -m promptlearn.run +task=sst2` "
                         f"(tasks: {', '.join(sorted(p.stem for p in (CONF_DIR / 'task').glob('*.yaml')))})")
    task = load_task(task_cfg, data_root=c.get("data_root"))
    strategy = c.get("strategy") or {"name": "tuning_free"}
    model_cfg = c.get("model", {})
    kwargs = {"revision": model_cfg["revision"]} if model_cfg.get("revision") else {}
    max_length = c.get("max_length") or task.max_length
    template_text = c.get("template") or task.template
    truncate = c.get("truncate", "tail")

    if strategy.get("name") == "finetune":  # classic head baseline: no template, no verbalizer
        from transformers import AutoTokenizer

        from .classifier import ClassifierModel, plain_template

        try:
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_cfg["name_or_path"], **kwargs)
        except Exception as exc:
            raise ModelLoadError(f"could not load tokenizer {model_cfg['name_or_path']!r}: {exc}; "
                                 "set model.name_or_path=/path/to/local/model") from exc
        template = Template(plain_template(iter_fields(template_text)), tokenizer, max_length=max_length,
                            name=f"{task.name}-plain", truncate=truncate, require_mask=False)
        model = ClassifierModel.from_pretrained(model_cfg["name_or_path"], template, task.labels, **kwargs)
        return {"task": task, "tokenizer": tokenizer, "mlm": model.mlm, "template": template, "verbalizer": None,
                "model": model}

    if tokenizer is None or mlm is None:
        tokenizer, mlm = load_backbone(model_cfg["name_or_path"], **kwargs)
    n_soft = int(strategy.get("soft_prefix", 0) or 0)
    if n_soft:
        template_text = f"{{soft*{n_soft}}} " + template_text  # P-tuning style pseudo-tokens before the prompt
    template = Template(template_text, tokenizer, max_length=max_length, name=task.name, truncate=truncate)
    vopts = dict(c.get("verbalizer_options") or {})
    if vopts.get("prefix_space", "auto") == "auto":  # follow the template: ' great' after "It was {mask}"
        vopts["prefix_space"] = template.mask_has_leading_space and is_space_sensitive(tokenizer)
    verbalizer = Verbalizer(c.get("verbalizer") or task.verbalizer, tokenizer, labels=task.labels,
                            name=task.name, **vopts)
    soft_prompt = None
    encoder = strategy.get("prompt_encoder")
    if encoder:
        from .soft_prompt import build_soft_prompt

        enc = dict(encoder)
        soft_prompt = build_soft_prompt(template.soft_spec, mlm, enc.pop("type", "embedding"), **enc)
        soft_prompt.build_config = dict(encoder)  # recorded by save_prompt_model
    model = PromptModel(mlm, template, verbalizer, soft_prompt=soft_prompt)
    return {"task": task, "tokenizer": tokenizer, "mlm": mlm, "template": template, "verbalizer": verbalizer,
            "model": model}


def evaluate(model: PromptModel, dataset: Any, batch_size: int, device: torch.device, main_metric: str,
             progress: bool = True, desc: str = "evaluating") -> tuple[dict[str, Any], np.ndarray]:
    """Encode (cached), score and compute metrics on a labelled split; returns (metrics, scores)."""
    encoded = encode_dataset(dataset, model.template)
    loader = make_loader(encoded, batch_size, model.template.tokenizer.pad_token_id, sort_by_length=True)
    scores = predict_scores(model, loader, device, progress=progress, desc=desc)
    preds = scores.argmax(-1)
    metrics = compute_metrics(encoded["label"][:], preds, main_metric)
    metrics["n_truncated"] = int(sum(1 for n in encoded["n_truncated"][:] if n > 0))
    return metrics, scores


def run_experiment(cfg: Any, output_dir: str | os.PathLike | None = None, tokenizer: Any = None,
                   mlm: Any = None) -> dict[str, Any]:
    """Run one configuration end to end and write ``results.json`` (+ ``predictions.jsonl``)."""
    t0 = time.perf_counter()
    c = _plain(cfg)
    seed = int(c.get("seed", 42))
    set_seed(seed)
    if c.get("threads"):
        torch.set_num_threads(int(c["threads"]))
    device = resolve_device(c.get("device"))
    parts = build(c, tokenizer, mlm)
    task, template, verbalizer, model = parts["task"], parts["template"], parts["verbalizer"], parts["model"]
    model.to(device)
    t_build = time.perf_counter() - t0
    log.info("task %s: %s", task.name, {k: len(v) for k, v in task.splits.items()})
    log.info("template: %s", template.text)
    if verbalizer is not None:
        log.info("%s", verbalizer.describe())
    log.info("LM head restricted to label-word rows: %s", model.restricted_head)

    strategy = c.get("strategy") or {"name": "tuning_free"}
    split_name = c.get("eval_split", "test")
    test = task.splits[split_name]
    if c.get("limit"):
        test = test.select(range(min(int(c["limit"]), len(test))))
    first = test[0]
    log.info("first %s example as the model sees it:\n  %s", split_name,
             template.tokenizer.decode(template.encode(first)["input_ids"]))

    k = int(strategy.get("k_shot", c.get("k_shot", 0)) or 0)
    checksums = {f"{split_name}_ids": ids_checksum(test["idx"][:])}
    few = None
    if k > 0:
        few = sample_few_shot(task.splits["train"], k=k, seed=seed)
        checksums["few_shot"] = few.checksum
        log.info("few-shot split K=%d seed=%d: train %d, dev %d, checksum %s", k, seed, len(few.train),
                 len(few.dev), few.checksum)

    t1 = time.perf_counter()
    train_info: dict[str, Any] = {}
    if strategy.get("name", "tuning_free") != "tuning_free":
        from .trainer import train  # noqa: PLC0415 - only needed when training

        train_info = train(model, few, strategy, c, device=device, output_dir=output_dir, main_metric=task.metric)
    t_train = time.perf_counter() - t1

    t2 = time.perf_counter()
    metrics, scores = evaluate(model, test, int(c.get("eval_batch_size", 32)), device, task.metric,
                               progress=c.get("progress", True), desc=f"{task.name} {split_name}")
    t_eval = time.perf_counter() - t2
    preds = scores.argmax(-1)
    results = {
        "task": task.name,
        "strategy": strategy.get("name", "tuning_free"),
        "model": c.get("model", {}).get("name_or_path"),
        "seed": seed,
        "k_shot": k,
        "split": split_name,
        "template": template.text,
        "verbalizer": verbalizer.label_words if verbalizer is not None else None,
        "label_word_splits": [[cls, w, p] for cls, w, p in verbalizer.splits] if verbalizer is not None else None,
        "restricted_head": model.restricted_head,
        "metrics": metrics,
        "checksums": checksums,
        "train": train_info,
        "timings": {"build_s": round(t_build, 3), "train_s": round(t_train, 3), "eval_s": round(t_eval, 3),
                    "total_s": round(time.perf_counter() - t0, 3)},
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": __import__("transformers").__version__, "device": str(device)},
        "config": c,
    }
    if output_dir is not None and c.get("save_model"):
        from .serialization import save_prompt_model

        saved = save_prompt_model(model, Path(output_dir) / "model", base_model=c.get("model", {}).get("name_or_path"),
                                  materialize=bool(c.get("materialize_prompt", False)))
        results["saved_model"] = {"path": str(saved), "bytes": sum(f.stat().st_size for f in saved.rglob("*") if f.is_file())}
        print(f"saved model to {saved} ({results['saved_model']['bytes'] / 1e6:.3f} MB)")
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        with open(out / "predictions.jsonl", "w") as f:
            for idx, label, pred, s in zip(test["idx"][:], test["label"][:], preds.tolist(), scores.tolist()):
                f.write(json.dumps({"idx": idx, "label": label, "pred": pred, "scores": s}) + "\n")
    print(f"\n{task.name} [{results['strategy']}] {split_name} n={metrics['n']}: "
          f"accuracy={metrics['accuracy'] * 100:.2f}  f1_macro={metrics['f1_macro'] * 100:.2f}  "
          f"(reported: {task.metric})  [{results['timings']['total_s']:.1f}s]")
    if output_dir is not None:
        print(f"results: {Path(output_dir) / 'results.json'}")
    return results


def safe_dirname(overrides: str, limit: int = 120) -> str:
    """A directory name for a set of overrides: no path separators; long ones shortened with a hash."""
    import hashlib

    name = (overrides or "defaults").replace("/", "_").replace("+", "")
    if len(name) > limit:
        name = name[: limit - 13] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return name


def main() -> None:
    """Console entry (``promptlearn`` / ``python -m promptlearn.run``), Hydra-driven."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    if not OmegaConf.has_resolver("pl_dirname"):
        OmegaConf.register_new_resolver("pl_dirname", safe_dirname)

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _main(cfg: DictConfig) -> float:
        try:
            res = run_experiment(cfg, output_dir=HydraConfig.get().runtime.output_dir)
        except ModelLoadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        return res["metrics"]["main"]

    _main()


if __name__ == "__main__":
    main()
