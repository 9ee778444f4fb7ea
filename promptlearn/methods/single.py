"""``single``: one run -- train one model with the strategy and score it (:func:`promptlearn.run.run_experiment`).
The default method: ``python -m promptlearn.run +task=sst2 ...`` runs exactly this."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Method


class Single(Method):
    def run(self, c: dict[str, Any], output_dir: str | Path | None = None) -> dict[str, Any]:
        from ..run import run_experiment

        return run_experiment(c, output_dir=output_dir)
