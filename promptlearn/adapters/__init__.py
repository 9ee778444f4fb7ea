"""Adapters: parameter-efficient LM tuning in the LM's place -- a registry, one module per type, the contract
in :mod:`.base`.

=======  ============================================================  ==========================
type     what trains                                                   saved as
=======  ============================================================  ==========================
lora     low-rank updates of chosen linear layers (PEFT ``LoraConfig``)  ``adapter/`` (PEFT's format)
bitfit   the LM's bias terms (Ben Zaken et al. 2022), nothing else      ``adapter.safetensors``
=======  ============================================================  ==========================

``build_adapter({"type": "lora", "r": 8, ...})`` builds one from its config (``strategy.adapter`` on the command
line, ``spec.adapter`` in a saved model).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..registry import Registry
from .base import Adapter

__all__ = ["Adapter", "ADAPTERS", "register_adapter", "get_adapter_class", "build_adapter"]

ADAPTERS: Registry = Registry("adapter type", Adapter, "type")
register_adapter: Callable[[str], Callable[[type], type]] = ADAPTERS.register


def get_adapter_class(name: str | None) -> type[Adapter]:
    from ..errors import ConfigError

    if not name:
        raise ConfigError(f"strategy.adapter has no type; fix: strategy.adapter.type=lora (types: {sorted(ADAPTERS)})")
    if str(name) not in ADAPTERS:
        raise ConfigError(f"strategy.adapter.type={name!r}: unknown adapter type {str(name)!r}; registered: "
                          f"{sorted(ADAPTERS)}; fix: strategy.adapter.type=lora (or strategy=bitfit; a plugin that "
                          "registers another type loads with plugins=[module])")
    return ADAPTERS.get_class(str(name))


def build_adapter(cfg: Mapping[str, Any] | Adapter | None) -> Adapter | None:
    """An :class:`Adapter` from its config (None: no adapter; an Adapter is returned as is)."""
    if cfg is None or isinstance(cfg, Adapter):
        return cfg
    return get_adapter_class(dict(cfg).get("type")).from_config(cfg)


from .bitfit import BitFit  # noqa: E402
from .lora import LoRA  # noqa: E402

register_adapter("lora")(LoRA)
register_adapter("bitfit")(BitFit)
