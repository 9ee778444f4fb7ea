"""``bitfit``: only the LM's bias terms train (Ben Zaken et al. 2022, BitFit); PEFT has no BitFit, so this is a
parameter-group rule: the ``adapter`` group is every parameter of the LM named ``...bias`` (attention, feed-forward,
LayerNorm and LM-head biases), the LM object is left as it is.  Saved as ``adapter.safetensors``: those biases,
by their parameter names, and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, PromptlearnError
from .base import Adapter

__all__ = ["BitFit"]

WEIGHTS = "adapter.safetensors"


def _biases(mlm: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in mlm.named_parameters() if n.rsplit(".", 1)[-1] == "bias"}


class BitFit(Adapter):
    OPTIONS = frozenset()

    def describe(self) -> str:
        return "bitfit: bias terms only"

    def apply(self, mlm: nn.Module) -> nn.Module:
        if not _biases(mlm):
            raise ConfigError(f"strategy.adapter.type=bitfit: {type(mlm).__name__} has no bias terms to tune; fix: "
                              "strategy=lora (or another strategy)")
        return mlm

    def parameter_ids(self, mlm: nn.Module) -> set[int]:
        return {id(p) for p in _biases(mlm).values()}

    def save(self, mlm: nn.Module, directory: Path) -> str:
        from safetensors.torch import save_file

        save_file({n: p.detach().cpu().contiguous() for n, p in _biases(mlm).items()}, str(Path(directory) / WEIGHTS))
        return WEIGHTS

    def load(self, mlm: nn.Module, directory: Path, name: str) -> None:
        from safetensors.torch import load_file

        path = Path(directory) / name
        state: dict[str, Any] = load_file(str(path))
        biases = _biases(mlm)
        unknown = sorted(set(state) - set(biases))
        if unknown:
            raise PromptlearnError(f"{path}: bias {unknown[0]!r} is not a bias of {type(mlm).__name__}; fix: load it "
                                   "with the base model it was trained on")
        with torch.no_grad():
            for n, t in state.items():
                biases[n].copy_(t.to(biases[n].device, biases[n].dtype))
