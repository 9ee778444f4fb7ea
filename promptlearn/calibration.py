"""Calibration of a verbalizer's prior (``calibrate=content_free|support|false``).

``content_free``  Zhao et al. (2021), contextual calibration: every template field is filled with a
                  content-free string -- ``"N/A"``, ``""`` and the tokenizer's mask token -- and the
                  model's mean probability over the verbalizer's units on these inputs is the prior.
``support``       KPT (Hu et al. 2022): the prior is the mean probability over a *support set* of
                  unlabelled examples from the task's pool (``calibrate_size``, default 200, drawn
                  with the run's seed, the few-shot examples excluded; labels are never read).

Scoring then divides each unit's probability by its prior and renormalises (in log space; see
:meth:`promptlearn.verbalizers.BaseVerbalizer.calibrate`), so the calibration inputs' average
prediction becomes uniform.  Training does not see the prior: it is measured on the final model.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from .errors import ConfigError

__all__ = ["calibrate", "content_free_inputs", "support_set", "requested", "MODES", "OFF"]

MODES = ("content_free", "support")
OFF = (None, False, "false", "none")  # the spellings of calibrate=false


def requested(value: Any) -> str | None:
    """The calibration mode a ``calibrate=`` value asks for, or None when it asks for none."""
    return None if value in OFF else str(value)


def content_free_inputs(template: Any) -> Any:
    """One example per content-free string (``N/A``, empty, the mask token) with every field set to it."""
    from datasets import Dataset

    strings = ["N/A", "", template.tokenizer.mask_token or "[MASK]"]
    fields = template.fields or ["text_a"]
    return Dataset.from_dict({f: strings for f in fields})


def support_set(pool: Any, size: int, seed: int, exclude: Iterable[int] = ()) -> Any:
    """``size`` unlabelled examples of ``pool`` (seeded; ``exclude``: ``idx`` values to leave out)."""
    excluded = set(int(i) for i in exclude)
    ids = pool["idx"][:] if "idx" in pool.column_names else list(range(len(pool)))
    rows = [r for r, i in enumerate(ids) if int(i) not in excluded]
    if not rows:
        raise ConfigError("calibrate=support: the pool has no examples left to calibrate on")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(rows), size=min(int(size), len(rows)), replace=False).tolist())
    subset = pool.select([rows[j] for j in chosen])
    return subset.remove_columns([c for c in ("label",) if c in subset.column_names])


def calibrate(model: torch.nn.Module, mode: str, device: torch.device | str, pool: Any = None, size: int = 200,
              seed: int = 0, exclude: Iterable[int] = (), batch_size: int = 32) -> dict[str, Any]:
    """Measure the prior on the calibration inputs of ``mode`` and set it on ``model.verbalizer``."""
    from .inference import score_dataset

    if mode not in MODES:
        raise ConfigError(f"calibrate must be one of {list(MODES)} or false, got {mode!r}")
    verbalizer = getattr(model, "verbalizer", None)
    if verbalizer is None:
        raise ConfigError(f"calibrate={mode}: a {type(model).__name__} has no verbalizer to calibrate")
    if mode == "content_free":
        data = content_free_inputs(model.template)
    else:
        if pool is None:
            raise ConfigError("calibrate=support needs the task's pool (its train split)")
        data = support_set(pool, size, seed, exclude)
    verbalizer.reset_calibration()
    inputs = score_dataset(model, data, batch_size, device, outputs=("verbalizer_input",))["verbalizer_input"]
    verbalizer.calibrate(torch.from_numpy(inputs).to(verbalizer.calibration.device), mode=mode)
    prior = torch.softmax(verbalizer.calibration.float(), -1).cpu()
    return {"mode": mode, "n": len(data), "prior": [round(float(x), 6) for x in prior]}
