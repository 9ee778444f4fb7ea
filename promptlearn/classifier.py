"""The classic baseline: a classification head on [CLS]/<s>, no template, no verbalizer."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .backbone import ModelLoadError, load_tokenizer
from .model_base import BaseModel
from .prompt_model import PromptOutput
from .template import Template

__all__ = ["ClassifierModel", "plain_template"]


def plain_template(fields: Sequence[str]) -> str:
    """``{a|shortenable}`` or ``{a|shortenable}{sep}{b|shortenable}``: the task's text, no prompt."""
    slots = [f"{{{f}|shortenable}}" for f in fields]
    if len(slots) <= 1:
        return "".join(slots)
    return slots[0] + "{sep}" + " ".join(slots[1:])


class ClassifierModel(BaseModel):
    """``AutoModelForSequenceClassification`` behind the PromptModel interface.

    ``template`` is a mask-free template (see :func:`plain_template`) so the same data path
    (tokenisation, padding, evaluation, training) serves both.
    """

    kind = "classifier"

    def __init__(self, classifier: nn.Module, template: Template, labels: Sequence[str], *,
                 base_model: str | None = None, revision: str | None = None, strategy: str | None = None,
                 trained: Sequence[str] = ()):
        # named `mlm` like PromptModel's backbone, so strategies group parameters alike
        super().__init__(classifier, base_model=base_model, revision=revision, strategy=strategy, trained=trained)
        self.template = template
        self.labels = list(labels)
        self.restricted_head = False
        self.soft_prompt = None
        self.verbalizer = None

    @property
    def spec(self) -> Any:
        from .spec import ModelSpec

        return ModelSpec(kind=self.kind, base_model=self.base_model_name(), revision=self.revision,
                         template=self.template.config(), verbalizer=None, labels=self.labels,
                         strategy=self.strategy, trained=list(self.trained))

    def lm_needs_saving(self) -> bool:
        return True  # the classification head is new: the model cannot be rebuilt from the base model alone

    @classmethod
    def from_pretrained(cls, name_or_path: str, template: Template, labels: Sequence[str], *,
                        base_model: str | None = None, revision: str | None = None, strategy: str | None = None,
                        trained: Sequence[str] = (), **kwargs: Any) -> "ClassifierModel":
        """A fresh (or saved) sequence classifier from ``name_or_path``; ``kwargs`` go to transformers."""
        from transformers import AutoModelForSequenceClassification

        from .backbone import check_model_source

        check_model_source(name_or_path)
        if revision and "revision" not in kwargs and base_model is None:
            kwargs["revision"] = revision
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                name_or_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={n: i for i, n in enumerate(labels)}, **kwargs)
        except Exception as exc:
            raise ModelLoadError(f"could not load {name_or_path!r} as a sequence classifier: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:300]}; set model.name_or_path=/path/to/local/model") from exc
        return cls(model, template, labels, base_model=base_model or name_or_path, revision=revision,
                   strategy=strategy, trained=trained)

    @classmethod
    def from_spec(cls, spec: Any, tokenizer: Any = None, mlm: nn.Module | None = None,
                  lm_source: str | None = None, **load_kwargs: Any) -> "ClassifierModel":
        """Build from a spec (``mlm`` is not used: a sequence classifier is its own model)."""
        if spec.adapter:
            from .errors import ConfigError

            raise ConfigError(f"strategy.adapter={dict(spec.adapter)}: adapters tune the masked LM of a prompt model; "
                              f"strategy {spec.strategy!r} builds a [CLS]-head classifier; fix: a prompt-based "
                              "strategy (lora, bitfit, or fixed_prompt with strategy.adapter.type=lora)")
        source = lm_source or spec.base_model
        tokenizer = tokenizer or load_tokenizer(source, None if lm_source else spec.revision)
        template = Template(tokenizer=tokenizer, **{**spec.template, "require_mask": False})
        if not lm_source and spec.revision:
            load_kwargs.setdefault("revision", spec.revision)
        return cls.from_pretrained(source, template, spec.labels, base_model=spec.base_model, revision=spec.revision,
                                   strategy=spec.strategy, trained=spec.trained, **load_kwargs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                **_: Any) -> PromptOutput:
        kw = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        logits = self.mlm(**kw).logits
        return PromptOutput(logits=torch.log_softmax(logits.float(), -1), head_logits=logits)
