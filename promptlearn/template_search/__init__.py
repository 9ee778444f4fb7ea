"""Automatic template search: a registry of methods, one module each, the contract in :mod:`.base`.

==========  ==============================================================================================
method      what it is
==========  ==============================================================================================
autoprompt  AutoPrompt (Shin et al. 2020): gradient-guided discrete trigger tokens ``{text_a} [T] [T] [T] {mask}.``
t5          LM-BFF (Gao et al. 2021): T5 fills ``<X> {label word} <Y>`` spans around the examples (beam search)
==========  ==============================================================================================

``python -m promptlearn.search`` (:mod:`promptlearn.search`) runs one and writes the templates it found in the
shared pattern-list format.  A new method is a module with a :class:`TemplateSearch` subclass and a
``@register_search_method("name")`` line.
"""

from __future__ import annotations

from ..registry import Registry
from .base import SearchContext, TemplateSearch, score_templates

__all__ = ["TemplateSearch", "SearchContext", "SEARCH_METHODS", "register_search_method", "get_search_method",
           "score_templates"]

SEARCH_METHODS: Registry = Registry("template-search method", TemplateSearch, "name")
register_search_method = SEARCH_METHODS.register


def get_search_method(name: str) -> type[TemplateSearch]:
    """The class registered under ``name`` (a ConfigError listing the registered methods otherwise)."""
    _builtin()
    return SEARCH_METHODS.get_class(name)


def _builtin() -> None:
    from .autoprompt import AutoPrompt
    from .t5 import T5Generation

    for cls in (AutoPrompt, T5Generation):
        SEARCH_METHODS.setdefault(cls.name, cls)
