"""``finetune``: the classic baseline -- ``AutoModelForSequenceClassification`` (a fresh head on
[CLS]/<s>), no template, no verbalizer; the same K-shot data, steps and model selection as the
prompt-based strategies (LM-BFF Table 3)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..classifier import plain_template
from ..template import iter_fields
from .base import Strategy


class Finetune(Strategy):
    trains = ("lm",)

    def adapt_spec(self, spec: Any, task: Any) -> Any:
        fields = iter_fields(spec.template["text"])
        return spec.replace(kind="classifier", verbalizer=None, soft_prompt=None, calibration=None,
                            adapter=self.cfg.get("adapter") or None,  # refused by the classifier, by name
                            template={**spec.template, "text": plain_template(fields), "name": f"{task.name}-plain"})

    def compute_loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy over the head's raw logits."""
        return F.cross_entropy(model(**batch).head_logits.float(), batch["labels"])
