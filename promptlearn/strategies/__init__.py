"""Training strategies: a registry, one module per strategy, the contract in :mod:`.base`.

==============  ==========================================  =============================================
strategy        trains                                      what it is
==============  ==========================================  =============================================
tuning_free     nothing                                     zero-shot scoring
fixed_lm        prompt, verbalizer, adapter (LM frozen)     prompt tuning: soft tokens / encoder / prefixes
fixed_prompt    lm, verbalizer, adapter                     PET / LM-BFF prompt-based fine-tuning
prompt_lm       lm, prompt, verbalizer, adapter             P-tuning: prompt and LM, own learning rates
finetune        lm (incl. the fresh head)                   classic [CLS] head fine-tuning, no template
==============  ==========================================  =============================================

``get_strategy(cfg)`` builds the strategy ``cfg["name"]`` with its config.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .base import GROUPS, Strategy, parameter_groups

__all__ = ["Strategy", "STRATEGIES", "register_strategy", "get_strategy", "GROUPS", "parameter_groups"]

STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: make a :class:`Strategy` subclass available as ``strategy.name: name``."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise TypeError(f"@register_strategy({name!r}) needs a Strategy subclass, got {cls!r}")
        if name in STRATEGIES and STRATEGIES[name] is not cls:
            raise ValueError(f"a strategy {name!r} is already registered ({STRATEGIES[name].__module__})")
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return deco


def get_strategy(cfg: Mapping[str, Any] | Strategy | str | None) -> Strategy:
    """A :class:`Strategy` from its config mapping (``name`` + options), a name, or a Strategy (returned as is)."""
    if isinstance(cfg, Strategy):
        return cfg
    if cfg is None:
        cfg = {"name": "tuning_free"}
    elif isinstance(cfg, str):
        cfg = {"name": cfg}
    name = str(cfg.get("name") or "tuning_free")
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; registered: {sorted(STRATEGIES)} "
                         "(a plugin module that registers it can be loaded with plugins=[module])")
    return STRATEGIES[name](cfg)


from .finetune import Finetune  # noqa: E402
from .fixed_lm import FixedLM  # noqa: E402
from .fixed_prompt import FixedPrompt  # noqa: E402
from .prompt_lm import PromptLM  # noqa: E402
from .tuning_free import TuningFree  # noqa: E402

for _name, _cls in (("tuning_free", TuningFree), ("fixed_lm", FixedLM), ("fixed_prompt", FixedPrompt),
                    ("prompt_lm", PromptLM), ("finetune", Finetune)):
    register_strategy(_name)(_cls)
