"""The adapter contract: parameter-efficient tuning of the LM in its place (LoRA, BitFit, ...).

An adapter is data in the spec (``spec.adapter = {"type": "lora", "r": 8, ...}``): :func:`build_adapter` makes
the object, and the model's constructor calls :meth:`Adapter.apply` on the LM it is given, so the one builder
(:func:`promptlearn.spec.build_model`) rebuilds an adapted model from its spec alone.  The adapter then answers:

``apply(mlm) -> mlm``          the LM to run (a PEFT wrapper, or the same LM); resolves its defaults (e.g. the
                               target modules of the architecture) and checks its options against the LM;
``parameter_ids(mlm)``         the ids of the LM parameters that form the ``adapter`` parameter group;
``config()``                   the resolved options, for the spec;
``save(mlm, dir) / load(mlm, dir, name)``  the trained adapter state only (never the LM's other weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from torch import nn

from ..errors import ConfigError

__all__ = ["Adapter"]


class Adapter:
    type: ClassVar[str] = ""  # set by @register_adapter
    #: the option names a config may hold besides ``type`` (an unknown one is refused by name)
    OPTIONS: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **options: Any):
        self.options = dict(options)

    @classmethod
    def check_options(cls, cfg: Mapping[str, Any]) -> dict[str, Any]:
        """The options of ``cfg`` (without ``type``); an unknown key is a one-line ConfigError."""
        opts = {k: v for k, v in dict(cfg).items() if k != "type"}
        unknown = sorted(set(opts) - cls.OPTIONS)
        if unknown:
            raise ConfigError(f"strategy.adapter.{unknown[0]}: adapter type {cls.type!r} has no option {unknown[0]!r}; "
                              f"its options are {sorted(cls.OPTIONS) or 'none'}; fix: drop it (or use one of those)")
        return opts

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Adapter":
        return cls(**cls.check_options(cfg))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"

    # ------------------------------------------------------------------ the contract
    def apply(self, mlm: nn.Module) -> nn.Module:
        raise NotImplementedError

    def parameter_ids(self, mlm: nn.Module) -> set[int]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"type": self.type, **self.options}

    def describe(self) -> str:
        return self.type

    def save(self, mlm: nn.Module, directory: Path) -> str:
        """Write the adapter state under ``directory``; returns the file or folder name written."""
        raise NotImplementedError

    def load(self, mlm: nn.Module, directory: Path, name: str) -> None:
        raise NotImplementedError
