"""The classic baseline: a classification head on [CLS]/<s>, no template, no verbalizer."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .backbone import ModelLoadError, load_tokenizer, unwrap
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

    kind = "classifier"

    def __init__(self, classifier: nn.Module, template: Template, labels: Sequence[str], *,
                 base_model: str | None = None, revision: str | None = None, strategy: str = "finetune"):
        super().__init__()
        self.mlm = classifier  # named like PromptModel's backbone so strategies group parameters alike
        self.template = template
        self.labels = list(labels)
        self.restricted_head = False
        self.soft_prompt = None
        self.verbalizer = None
        self.base_model = base_model
        self.revision = revision
        self.strategy = strategy

    @property
    def backbone(self) -> nn.Module:
        return unwrap(self.mlm)

    @property
    def spec(self) -> Any:
        from .spec import ModelSpec

        cfg = getattr(self.backbone, "config", None)
        return ModelSpec(kind=self.kind, base_model=self.base_model or getattr(cfg, "_name_or_path", None),
                         revision=self.revision, template=self.template.config(), verbalizer=None,
                         labels=self.labels, strategy=self.strategy)

    @classmethod
    def from_pretrained(cls, name_or_path: str, template: Template, labels: Sequence[str], **kwargs: Any):
        from transformers import AutoModelForSequenceClassification

        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                name_or_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={n: i for i, n in enumerate(labels)}, **kwargs)
        except Exception as exc:
            raise ModelLoadError(f"could not load {name_or_path!r} as a sequence classifier: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:300]}; set model.name_or_path=/path/to/local/model") from exc
        return cls(model, template, labels, base_model=name_or_path, revision=kwargs.get("revision"))

    @classmethod
    def from_spec(cls, spec: Any, tokenizer: Any = None, mlm: nn.Module | None = None,
                  lm_source: str | None = None) -> "ClassifierModel":
        source = lm_source or spec.base_model
        revision = None if lm_source else spec.revision
        tokenizer = tokenizer or load_tokenizer(source, revision)
        template = Template(tokenizer=tokenizer, **{**spec.template, "require_mask": False})
        model = cls.from_pretrained(source, template, spec.labels, **({"revision": revision} if revision else {}))
        model.base_model, model.revision, model.strategy = spec.base_model, spec.revision, spec.strategy
        return model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                **_: Any) -> PromptOutput:
        kw = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        logits = self.mlm(**kw).logits
        return PromptOutput(logits=torch.log_softmax(logits.float(), -1), head_logits=logits)

    def predict(self, inputs: Any, batch_size: int = 32) -> Any:
        from .serialization import predict

        return predict(self, inputs, batch_size=batch_size)

    def save_pretrained(self, directory: str) -> Any:
        from .serialization import save_prompt_model

        return save_prompt_model(self, directory)
