"""The metrics reported for a task (scikit-learn): one registry, ``METRICS``, used by tasks and runs."""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["compute_metrics", "ids_checksum", "METRICS"]


def _sklearn() -> Any:
    # imported when a metric is computed, not with promptlearn: scikit-learn (with scipy and pandas) is a third of
    # the CLI's start-up, and a run stopped by a wrong option never needs it
    import sklearn.metrics

    return sklearn.metrics


METRICS = {
    "accuracy": lambda y, p: _sklearn().accuracy_score(y, p),
    "f1_macro": lambda y, p: _sklearn().f1_score(y, p, average="macro"),
    "f1": lambda y, p: _sklearn().f1_score(y, p, average="binary"),
    "mcc": lambda y, p: _sklearn().matthews_corrcoef(y, p),
}


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
