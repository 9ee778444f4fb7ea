"""Verbalizers: a registry of types, one module per type, the contract in :mod:`.base`.

``build_verbalizer({"type": "manual", "label_words": ..., ...}, tokenizer, labels, template)`` builds
any registered type from its config (the ``verbalizer`` Hydra group, or a saved spec).  A new type::

    from promptlearn.verbalizers import BaseVerbalizer, register_verbalizer

    @register_verbalizer("mine")
    class MyVerbalizer(BaseVerbalizer):
        ...

and ``verbalizer.type=mine`` (or a ``conf/verbalizer/mine.yaml``) selects it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ..registry import Registry
from .base import INPUTS, LABEL_LOGITS, MASK_HIDDEN, WORD_LOGPROBS, BaseVerbalizer, VerbalizerError

__all__ = ["BaseVerbalizer", "VerbalizerError", "VERBALIZERS", "register_verbalizer", "get_verbalizer_class",
           "build_verbalizer", "DEFAULT_TYPE", "ManualVerbalizer", "Verbalizer", "parse_label_words", "LABEL_LOGITS", "MASK_HIDDEN",
           "WORD_LOGPROBS", "SoftVerbalizer",
           "KnowledgeableVerbalizer"]

VERBALIZERS: Registry = Registry("verbalizer type", BaseVerbalizer, "type", error=VerbalizerError)
DEFAULT_TYPE = "manual"  # a verbalizer config without `type`


def register_verbalizer(name: str) -> Callable[[type[BaseVerbalizer]], type[BaseVerbalizer]]:
    """Class decorator: make a :class:`BaseVerbalizer` subclass available as ``type: name``."""

    def deco(cls: type[BaseVerbalizer]) -> type[BaseVerbalizer]:
        if getattr(cls, "input", None) not in INPUTS:
            raise TypeError(f"verbalizer {name!r}: input must be one of {INPUTS}, got {getattr(cls, 'input', None)!r}")
        return VERBALIZERS.register(name)(cls)

    return deco


def get_verbalizer_class(name: str | None) -> type[BaseVerbalizer]:
    return VERBALIZERS.get_class(name or DEFAULT_TYPE)


def build_verbalizer(cfg: Mapping[str, Any], tokenizer: Any, labels: Sequence[str] | None = None,
                     template: Any = None, name: str | None = None, mlm: Any = None) -> BaseVerbalizer:
    """Build the verbalizer ``cfg["type"]`` (default ``manual``) from its config (``mlm``: the masked LM)."""
    cfg = dict(cfg)
    cls = get_verbalizer_class(cfg.get("type"))
    return cls.from_config(cfg, tokenizer, labels=labels, template=template, name=name, mlm=mlm)


from .manual import ManualVerbalizer, parse_label_words  # noqa: E402 - registers itself below

register_verbalizer(DEFAULT_TYPE)(ManualVerbalizer)
Verbalizer = ManualVerbalizer  # the default type, under its familiar name

from .soft import SoftVerbalizer  # noqa: E402

register_verbalizer("soft")(SoftVerbalizer)

from .knowledgeable import KnowledgeableVerbalizer  # noqa: E402

register_verbalizer("kpt")(KnowledgeableVerbalizer)
