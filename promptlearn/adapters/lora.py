"""``lora``: low-rank adaptation (Hu et al. 2022) through PEFT (``LoraConfig`` + ``get_peft_model``).

Options (``strategy.adapter.*``): ``r`` (rank), ``alpha`` (scaling ``alpha / r``), ``dropout`` (on the LoRA
input), ``target_modules`` (names of the linear layers to adapt; ``null``: the architecture's entry in
``default_target_modules``, which ``conf/strategy/lora.yaml`` fills for BERT, RoBERTa, ALBERT, ELECTRA and
DistilBERT).  The spec records the resolved target modules.  Saved in PEFT's own format
(``adapter/adapter_config.json`` + ``adapter/adapter_model.safetensors``): the LoRA matrices only.
"""

from __future__ import annotations

import warnings

from pathlib import Path
from typing import Any, Mapping

from torch import nn

from ..backbone import adapter_parameter_ids, unwrap
from ..errors import ConfigError, PromptlearnError
from ..validation import Opt
from .base import Adapter

__all__ = ["LoRA"]

ADAPTER_DIR = "adapter"
_CHECKS = (Opt("r", int, "strategy.adapter.r=8", min=1),
           Opt("alpha", float, "strategy.adapter.alpha=16", min=1e-12),
           Opt("dropout", float, "strategy.adapter.dropout=0.1", min=0, max=0.999),
           Opt("target_modules", list, "strategy.adapter.target_modules=[query,value]", nullable=True),
           Opt("default_target_modules", dict, "strategy.adapter.default_target_modules={bert: [query, value]}",
               nullable=True))


def _linear_names(mlm: nn.Module) -> list[str]:
    return [n for n, m in mlm.named_modules() if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]


class LoRA(Adapter):
    OPTIONS = frozenset({"r", "alpha", "dropout", "target_modules", "default_target_modules"})

    def __init__(self, r: int = 8, alpha: float = 16, dropout: float = 0.0, target_modules: Any = None,
                 default_target_modules: Mapping[str, Any] | None = None):
        values = {"r": r, "alpha": alpha, "dropout": dropout, "target_modules": target_modules,
                  "default_target_modules": default_target_modules}
        for opt in _CHECKS:
            opt.check(values[opt.key], "strategy.adapter.")
        if target_modules is not None:
            target_modules = [str(t) for t in target_modules]
            if not target_modules:
                raise ConfigError("strategy.adapter.target_modules=[] names no layer; fix: "
                                  "strategy.adapter.target_modules=[query,value], or null for the architecture's default")
        super().__init__(r=int(r), alpha=float(alpha), dropout=float(dropout), target_modules=target_modules)
        self.default_target_modules = {str(k): list(v) for k, v in (default_target_modules or {}).items()}

    def config(self) -> dict[str, Any]:
        return {"type": self.type, **self.options}

    def describe(self) -> str:
        o = self.options
        targets = ",".join(o["target_modules"] or ["?"])
        return f"lora r={o['r']} alpha={o['alpha']:g} dropout={o['dropout']:g} on {targets}"

    def _targets(self, mlm: nn.Module) -> list[str]:
        model_type = str(getattr(getattr(mlm, "config", None), "model_type", "") or "")
        targets = self.options["target_modules"] or self.default_target_modules.get(model_type)
        names = _linear_names(mlm)
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
        if not targets:
            raise ConfigError(f"strategy.adapter.target_modules: no default for model type {model_type!r} "
                              f"({type(mlm).__name__}); its linear layers are named {leaves}; fix: "
                              "strategy.adapter.target_modules=[...] with some of those")
        for t in targets:
            if not any(n == t or n.endswith("." + t) for n in names):
                raise ConfigError(f"strategy.adapter.target_modules: {t!r} is not a linear layer of "
                                  f"{type(mlm).__name__} (model type {model_type!r}), whose linear layers are named "
                                  f"{leaves}; fix: strategy.adapter.target_modules=[...] with some of those")
        return list(targets)

    def apply(self, mlm: nn.Module) -> nn.Module:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:  # pragma: no cover - peft is in the [peft] extra
            raise ConfigError("adapter type 'lora' needs the peft library; fix: pip install -e \".[peft]\"") from exc
        if getattr(mlm, "peft_config", None):
            raise ConfigError(f"the LM is already a PEFT model ({type(mlm).__name__}); an adapter in the spec wraps a "
                              "plain LM; fix: pass the unwrapped model (model.get_base_model()) or drop the adapter")
        targets = self._targets(unwrap(mlm))
        self.options["target_modules"] = targets  # the spec records what was applied
        o = self.options
        cfg = LoraConfig(r=o["r"], lora_alpha=o["alpha"], lora_dropout=o["dropout"], target_modules=targets,
                         bias="none")
        with warnings.catch_warnings():  # PEFT calls a transformers 5 method that warns of its own rename
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(mlm, cfg)

    def parameter_ids(self, mlm: nn.Module) -> set[int]:
        return adapter_parameter_ids(mlm)

    def save(self, mlm: nn.Module, directory: Path) -> str:
        mlm.save_pretrained(str(Path(directory) / ADAPTER_DIR))
        return ADAPTER_DIR

    def load(self, mlm: nn.Module, directory: Path, name: str) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = Path(directory) / name / "adapter_model.safetensors"
        if not path.is_file():
            raise PromptlearnError(f"{Path(directory)}: the LoRA weights {path} are missing; fix: save the model "
                                   "again (save_pretrained) or copy the whole directory")
        result = set_peft_model_state_dict(mlm, load_file(str(path)))
        missing = [k for k in result.missing_keys if "lora_" in k]
        if result.unexpected_keys or missing:
            raise PromptlearnError(f"{path}: the LoRA weights do not fit the model the spec builds (unexpected "
                                   f"{list(result.unexpected_keys)[:3]}, missing {missing[:3]}); fix: load it with the "
                                   "base model it was trained on")
