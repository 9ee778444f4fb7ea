"""The classic baseline: a classification head on [CLS]/<s>, no template, no verbalizer."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .prompt_model import PromptOutput
from .template import Template

__all__ = ["ClassifierModel", "plain_template"]


def plain_template(fields: Sequence[str]) -> str:
    """``{a|shortenable}`` or ``{a|shortenable}{sep}{b|shortenable}``: the task's text, no prompt."""
    slots = [f"{{{f}|shortenable}}" for f in fields]
    if len(slots) <= 1:
        return "".join(slots)
    return slots[0] + "{sep}" + " ".join(slots[1:])


class ClassifierModel(nn.Module):
    """``AutoModelForSequenceClassification`` behind the PromptModel interface.

    ``template`` is a mask-free template (see :func:`plain_template`) so the same data path
    (tokenisation, padding, evaluation, training) serves both.
    """

    def __init__(self, classifier: nn.Module, template: Template, labels: Sequence[str]):
        super().__init__()
        self.mlm = classifier  # named like PromptModel's backbone so strategies freeze/unfreeze alike
        self.template = template
        self.labels = list(labels)
        self.restricted_head = False

    @classmethod
    def from_pretrained(cls, name_or_path: str, template: Template, labels: Sequence[str], **kwargs: Any):
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)}, **kwargs)
        return cls(model, template, labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **_: Any) -> PromptOutput:
        kw = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        logits = self.mlm(**kw).logits
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return PromptOutput(logits=torch.log_softmax(logits.float(), -1), token_logits=logits, loss=loss)

    def predict(self, inputs: Any, batch_size: int = 32) -> Any:
        from .serialization import predict

        return predict(self, inputs, batch_size=batch_size)

    def save_pretrained(self, directory: str) -> Any:
        from .serialization import save_prompt_model

        return save_prompt_model(self, directory)

