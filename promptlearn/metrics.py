"""Inference over a loader and the metrics reported for a task (scikit-learn)."""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from tqdm.auto import tqdm

__all__ = ["predict_scores", "compute_metrics", "ids_checksum", "METRICS"]

METRICS = {
    "accuracy": lambda y, p: accuracy_score(y, p),
    "f1_macro": lambda y, p: f1_score(y, p, average="macro"),
    "f1": lambda y, p: f1_score(y, p, average="binary"),
    "mcc": lambda y, p: matthews_corrcoef(y, p),
}


@torch.no_grad()
def predict_scores(model: torch.nn.Module, loader: Iterable[dict[str, torch.Tensor]], device: torch.device | str,
                   progress: bool = True, desc: str = "evaluating") -> np.ndarray:
    """Class scores ``[N, C]`` for every example of ``loader``, returned in dataset order.

    Loaders built with ``sort_by_length=True`` are put back in dataset order.
    """
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            chunks.append(model(**batch).logits.float().cpu())
    finally:
        model.train(was_training)
    scores = torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), dtype=np.float32)
    order = getattr(getattr(loader, "sampler", None), "order", None)
    if order is not None:
        out = np.empty_like(scores)
        out[np.asarray(order)] = scores
        scores = out
    return scores


def compute_metrics(labels: Sequence[int], preds: Sequence[int], main: str = "accuracy") -> dict[str, Any]:
    """Accuracy and macro-F1 always, plus the task's main metric (``main`` / ``main_metric`` keys)."""
    y, p = np.asarray(labels), np.asarray(preds)
    if main not in METRICS:
        raise ValueError(f"unknown metric {main!r}; known: {sorted(METRICS)}")
    out = {"accuracy": float(METRICS["accuracy"](y, p)), "f1_macro": float(METRICS["f1_macro"](y, p))}
    out[main] = float(METRICS[main](y, p))
    out["main_metric"] = main
    out["main"] = out[main]
    out["n"] = int(len(y))
    return out


def ids_checksum(ids: Iterable[Any]) -> str:
    """sha256 over the sorted example ids (identifies a split independently of order)."""
    h = hashlib.sha256()
    for i in sorted(ids):
        h.update(f"{i}\n".encode())
    return h.hexdigest()
