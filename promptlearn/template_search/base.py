"""The contract of a template-search method, and the one way found templates are scored.

A method is built from its checked options (``cls(options)``), checks them against the task with
:meth:`TemplateSearch.check` before any model loads, and :meth:`TemplateSearch.search` returns the
templates it found as dicts ``{"template": str, "source": str, "scores": {...}}``, best first.  The
command (:mod:`promptlearn.search`) then writes them in the shared pattern-list format.

:func:`score_templates` is how every method ranks: each template text is parsed with promptlearn's
:class:`~promptlearn.template.Template` (an invalid one is dropped, never ``eval``-ed), bound to the run's
masked LM and verbalizer, and scored on the few-shot train and dev sets through the pipeline's ``score``
stage -- the same path a run scores its test split with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..validation import Opt

__all__ = ["TemplateSearch", "SearchContext", "score_templates"]


@dataclass
class SearchContext:
    """What a search works with: the run's model (masked LM + verbalizer), task and few-shot split."""

    model: Any  # PromptModel built from the run's config (its template is the task's / the config's)
    task: Any
    few: Any  # FewShotSplit: .train / .dev (K per class each), never the test split
    device: torch.device
    seed: int = 42
    batch_size: int = 32
    metric: str = "accuracy"  # the task's reported metric: what chooses on dev

    @property
    def tokenizer(self) -> Any:
        return self.model.template.tokenizer

    @property
    def max_length(self) -> int:
        return self.model.template.max_length


class TemplateSearch:
    """A template-search method.  ``OPTIONS``: the ``search.*`` keys it reads (checked before any model loads)."""

    name: ClassVar[str] = ""
    OPTIONS: ClassVar[tuple[Opt, ...]] = ()

    def __init__(self, options: Mapping[str, Any]):
        self.options = dict(options)

    def check(self, task: Any) -> None:
        """Refuse options that cannot work for ``task`` (ConfigError, one line) -- no model is loaded yet."""

    def search(self, ctx: SearchContext) -> list[dict[str, Any]]:  # pragma: no cover - the contract
        raise NotImplementedError


def _losses(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of class log-scores ``[N, C]`` (what the strategies train with)."""
    t = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    return float(torch.nn.functional.cross_entropy(t, torch.from_numpy(np.asarray(labels, dtype=np.int64))))


def score_templates(ctx: SearchContext, texts: Sequence[str]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Score each template text zero-shot on the few-shot train and dev sets; invalid ones are dropped.

    Returns ``(scored, rejected)``: ``scored`` rows ``{"template", "scores": {"dev_<metric>", "dev_accuracy",
    "train_accuracy", "train_loss"}}`` in the order given, ``rejected`` rows ``{"template", "error"}`` for the
    texts promptlearn's Template refused (one {mask}, known placeholders, fits max_length) or that use a field
    the task does not have.
    """
    from .. import pipeline
    from ..prompt_model import PromptModel
    from ..template import Template, TemplateError

    fields = set(ctx.task.fields or ())
    scored, rejected = [], []
    for text in dict.fromkeys(texts):  # each distinct text once, first occurrence's order
        try:
            template = Template(text, ctx.tokenizer, max_length=ctx.max_length, name=ctx.task.name)
            missing = [f for f in template.fields if fields and f not in fields]
            if missing:
                raise TemplateError(f"field {{{missing[0]}}} is not a field of task {ctx.task.name!r}")
            if not template.has_mask:
                raise TemplateError("no {mask}")
            model = PromptModel(ctx.model.mlm, template, ctx.model.verbalizer)
        except TemplateError as exc:
            rejected.append({"template": text, "error": str(exc).splitlines()[0]})
            continue
        row: dict[str, Any] = {"template": text, "scores": {}}
        for split, data in (("train", ctx.few.train), ("dev", ctx.few.dev)):
            s = pipeline.score(model, data, f"few_{split}", ctx.device, batch_size=ctx.batch_size,
                               metric=ctx.metric, progress=False)
            row["scores"][f"{split}_accuracy"] = float(s.metrics["accuracy"])
            if split == "train":
                row["scores"]["train_loss"] = _losses(s.logits, s.labels)
            else:
                row["scores"][f"dev_{ctx.metric}"] = float(s.metrics["main"])
        scored.append(row)
    return scored, rejected


def rank_key(metric: str):
    """Sort key: the few-shot dev metric (higher first), then the few-shot train loss (lower first)."""
    return lambda r: (-r["scores"][f"dev_{metric}"], r["scores"]["train_loss"])
