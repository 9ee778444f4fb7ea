"""The pipeline stages of a run: sample -> build -> (refine) -> train -> (calibrate) -> score(split) -> report.

Each stage is one function with explicit inputs and outputs, and ``score`` writes an artifact that
later stages (and later methods: PET scores the unlabelled pool, ensembles merge logits) read:
``<run dir>/scores/<split>.npz`` with ``idx``, ``logits`` ``[N, C]``, ``labels`` (``-1`` where the
split is unlabelled) and ``label_names``.  ``score`` works on any split -- a task split, the
few-shot ``few_train`` / ``few_dev`` sets, or ``unlabeled`` (the pool minus the few-shot examples,
its labels dropped before scoring) -- and takes an optional ``transform`` (a function
``Dataset -> Dataset``) where a method rewrites examples before they are encoded (demonstrations).
:func:`promptlearn.run.run_experiment` runs the stages in order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from . import distributed
from .errors import ConfigError
from .inference import score_dataset
from .metrics import compute_metrics
from .sampler import FewShotSplit, sample_few_shot

__all__ = ["sample", "build", "refine", "train", "score", "Scores", "load_scores", "resolve_split", "write_json_atomic",
           "SCORES_DIR", "DERIVED_SPLITS"]

SCORES_DIR = "scores"
DERIVED_SPLITS = ("few_train", "few_dev", "unlabeled")


@dataclass
class Scores:
    """The output of the ``score`` stage for one split."""

    split: str
    idx: np.ndarray  # [N] example ids
    logits: np.ndarray  # [N, C] class log-scores
    labels: np.ndarray | None  # [N] gold labels, None when the split is unlabelled
    label_names: list[str]
    metrics: dict[str, Any] | None  # None when unlabelled
    n_truncated: int
    path: Path | None = None

    @property
    def preds(self) -> np.ndarray:
        return self.logits.argmax(-1)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- stages
def sample(task: Any, k: int, seed: int) -> FewShotSplit | None:
    """K examples per class for train and for dev from the task's pool (LM-BFF); None when K = 0."""
    return sample_few_shot(task.splits["train"], k=k, seed=seed) if k > 0 else None


def build(cfg: Mapping[str, Any], task: Any, strategy: Any, tokenizer: Any = None, mlm: Any = None) -> torch.nn.Module:
    """The model the config and strategy describe (through the one spec builder)."""
    from .spec import build_model, spec_from_config

    return build_model(spec_from_config(cfg, task, strategy), tokenizer=tokenizer, mlm=mlm)


def refine(model: torch.nn.Module, task: Any, few: FewShotSplit | None, cfg: Mapping[str, Any],
           device: torch.device) -> dict[str, Any] | None:
    """Let a verbalizer that asks for it (``needs_support``, e.g. KPT's frequency refinement) adapt to a support
    set: ``calibrate_size`` unlabelled pool examples drawn with the run's seed, the few-shot examples excluded
    (the set ``calibrate=support`` uses); labels are never read.  Returns the verbalizer's report, or None."""
    from .calibration import support_set

    verbalizer = getattr(model, "verbalizer", None)
    if verbalizer is None or not verbalizer.needs_support:
        return None
    used = (few.train_ids + few.dev_ids) if few is not None else []
    data = support_set(task.splits["train"], int(cfg.get("calibrate_size", 200)), int(cfg.get("seed", 42)), used)
    batch_size = int(cfg.get("eval_batch_size", 32))
    inputs = score_dataset(model, data, batch_size, device, outputs=("verbalizer_input",))["verbalizer_input"]
    from .inference import vocab_logprobs

    vocab = vocab_logprobs(model, data, device, batch_size).mean(0)  # [V]: the support set's prior over the vocabulary
    report = verbalizer.refine(torch.from_numpy(inputs).to(verbalizer.calibration.device), torch.from_numpy(vocab))
    return {"n": len(data), **report}


def train(model: torch.nn.Module, few: FewShotSplit | None, strategy: Any, cfg: Mapping[str, Any],
          device: torch.device, output_dir: str | Path | None, metric: str, augment: Any = None,
          task: Any = None) -> dict[str, Any]:
    """Train with the strategy (nothing for strategies that train nothing); ``augment``: see the trainer.

    The strategy chooses what it trains and selects on (:meth:`~promptlearn.strategies.Strategy.training_data`:
    the few-shot split by default, or e.g. the soft-labelled unlabelled pool of ``task``)."""
    if not strategy.needs_training:
        return {}
    from .trainer import train as run_trainer

    few = strategy.training_data(few, task, cfg)
    return run_trainer(model, few, strategy, cfg, device=device, output_dir=output_dir, main_metric=metric,
                       remove_checkpoint=False,  # run_experiment removes it once results.json is written
                       augment=augment)


def resolve_split(task: Any, name: str, few: FewShotSplit | None, size: int | None = None, seed: int = 0) -> Any:
    """A task split by name, or a derived one (``few_train``, ``few_dev``, ``unlabeled``).

    ``unlabeled``: the pool minus the few-shot examples, its ``label`` column removed; with ``size``, that many
    of them drawn with ``seed`` (the same rows for every run with the same seed, kept in pool order)."""
    if name in task.splits:
        return task.splits[name]
    if name in ("few_train", "few_dev"):
        if few is None:
            raise ConfigError(f"split {name!r} exists only for strategies that sample a few-shot set (k_shot > 0)")
        return few.train if name == "few_train" else few.dev
    if name == "unlabeled":
        used = set(few.train_ids + few.dev_ids) if few is not None else set()
        pool = task.splits["train"]
        keep = [i for i, x in enumerate(pool["idx"][:]) if int(x) not in used]
        if size is not None and int(size) < len(keep):
            keep = sorted(np.random.default_rng(int(seed)).choice(keep, size=int(size), replace=False).tolist())
        pool = pool.select(keep)
        return pool.remove_columns("label")  # labels are never read from the unlabelled pool
    raise ConfigError(f"unknown split {name!r}; the task has {sorted(task.splits)}, and derived splits are "
                     f"{list(DERIVED_SPLITS)}")


def score(model: torch.nn.Module, dataset: Any, split: str, device: torch.device, batch_size: int = 32,
          metric: str = "accuracy", output_dir: str | Path | None = None, progress: bool = False,
          transform: Callable[[Any], Any] | None = None) -> Scores:
    """Class scores for every example of ``dataset`` (labelled or not); writes ``scores/<split>.npz``.

    ``transform(dataset)`` may return one dataset or a list of them (demonstration sets): then each is
    scored and the class log-scores are averaged; an example counts as truncated if it was in any set."""
    sets = transform(dataset) if transform is not None else dataset
    sets = sets if isinstance(sets, list) else [sets]
    outs = [score_dataset(model, d, batch_size, device, progress=progress, desc=f"scoring {split}") for d in sets]
    logits = outs[0]["logits"] if len(outs) == 1 else sum(o["logits"] for o in outs) / len(outs)
    out = {"n_truncated": np.max([o["n_truncated"] for o in outs], axis=0)}
    dataset = sets[0]
    labelled = "label" in dataset.column_names
    labels = np.asarray(dataset["label"][:], dtype=np.int64) if labelled else None
    idx = np.asarray(dataset["idx"][:]) if "idx" in dataset.column_names else np.arange(len(dataset))
    metrics, n_truncated = None, int((out["n_truncated"] > 0).sum())
    if labels is not None:
        metrics = compute_metrics(labels, logits.argmax(-1), metric)
        metrics["n_truncated"] = n_truncated
    label_names = list(getattr(model, "labels", None) or [])
    path = None
    if output_dir is not None:
        d = Path(output_dir) / SCORES_DIR
        path = d / f"{split}.npz"
        if distributed.is_main():  # several processes hold the same scores: one writes them
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f"{split}.tmp.npz"
            np.savez(tmp, idx=idx, logits=logits, labels=labels if labels is not None else np.full(len(idx), -1),
                     label_names=np.asarray(label_names))
            os.replace(tmp, path)
        distributed.barrier()  # a later stage (PET's merge) may read the file in any process
    return Scores(split=split, idx=idx, logits=logits, labels=labels, label_names=label_names, metrics=metrics,
                  n_truncated=n_truncated, path=path)


def load_scores(path: str | Path) -> Scores:
    """Read a ``scores/<split>.npz`` written by :func:`score`."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        labels = z["labels"]
        return Scores(split=path.stem, idx=z["idx"], logits=z["logits"],
                      labels=None if (labels < 0).all() else labels, label_names=[str(x) for x in z["label_names"]],
                      metrics=None, n_truncated=0, path=path)
