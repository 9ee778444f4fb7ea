"""Training strategies: a registry, one module per strategy, the contract in :mod:`.base`.

==============  ==========================================  =============================================
strategy        trains                                      what it is
==============  ==========================================  =============================================
tuning_free     nothing                                     zero-shot scoring
fixed_lm        prompt, verbalizer, adapter (LM frozen)     prompt tuning: soft tokens / encoder / prefixes
fixed_prompt    lm, verbalizer, adapter                     PET / LM-BFF prompt-based fine-tuning
prompt_lm       lm, prompt, verbalizer, adapter             P-tuning: prompt and LM, own learning rates
finetune        lm (incl. the fresh head)                   classic [CLS] head fine-tuning, no template
distill         lm (incl. the fresh head)                   PET's final step: the classifier on soft labels
lora            adapter (LoRA, PEFT), prompt, verbalizer    LoRA on a frozen LM, prompt-based (mask + verbalizer)
bitfit          adapter (the LM's biases), prompt, verb.    BitFit: only bias terms of the LM, prompt-based
==============  ==========================================  =============================================

``get_strategy(cfg)`` builds the strategy ``cfg["name"]`` with its config.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

from ..registry import Registry
from .base import GROUPS, Strategy, parameter_groups

__all__ = ["Strategy", "STRATEGIES", "register_strategy", "get_strategy", "strategy_defaults", "GROUPS",
           "parameter_groups"]

STRATEGIES: Registry = Registry("strategy", Strategy, "name")
register_strategy = STRATEGIES.register  # class decorator: @register_strategy("name")


DEFAULT_STRATEGY = "tuning_free"
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def strategy_defaults(name: str) -> dict[str, Any]:
    """The defaults of strategy ``name``: ``conf/shared/train.yaml`` updated by ``conf/strategy/<name>.yaml``.

    The same values the CLI composes, so a strategy made in Python from a name (``get_strategy("fixed_lm")``)
    trains with the same hyperparameters as ``strategy=fixed_lm`` on the command line.
    """
    from omegaconf import OmegaConf

    from ..errors import ConfigError

    if not (CONF_DIR / "shared" / "train.yaml").is_file():
        raise ConfigError(f"promptlearn's configuration folder was not found at {CONF_DIR}; fix: install promptlearn "
                          "from its repository checkout (pip install -e .), which has conf/ beside the package")
    out: dict[str, Any] = {}
    for path in (CONF_DIR / "shared" / "train.yaml", CONF_DIR / "strategy" / f"{name}.yaml"):
        if path.is_file():
            d = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
            d.pop("defaults", None)
            out.update(d)
    return out


def _migrate(cfg: dict[str, Any]) -> dict[str, Any]:
    """promptlearn 0.1 strategy keys ``train_lm`` / ``train_prompt`` -> ``trains``."""
    if "train_lm" not in cfg and "train_prompt" not in cfg:
        return cfg
    warnings.warn("strategy keys train_lm / train_prompt are replaced by `trains` (e.g. trains=[lm, prompt]); "
                  "translated for this run", FutureWarning, stacklevel=3)
    cfg = dict(cfg)
    lm, prompt = bool(cfg.pop("train_lm", False)), bool(cfg.pop("train_prompt", True))
    cfg.setdefault("trains", [g for g, on in (("lm", lm), ("prompt", prompt)) if on])
    return cfg


def get_strategy(cfg: Mapping[str, Any] | Strategy | str | None) -> Strategy:
    """A :class:`Strategy` from its config (``name`` + options, over the strategy's defaults), a name, or a
    Strategy (returned as is)."""
    if isinstance(cfg, Strategy):
        return cfg
    cfg = {"name": cfg or DEFAULT_STRATEGY} if cfg is None or isinstance(cfg, str) else dict(cfg)
    name = str(cfg.get("name") or DEFAULT_STRATEGY)
    defaults = strategy_defaults(name)  # a preset (p_tuning_v2.yaml) names the strategy it configures
    name = str(defaults.get("name") or name) if name not in STRATEGIES else name
    cls = STRATEGIES.get_class(name)
    return cls({**defaults, **_migrate(cfg), "name": name})


from .bitfit import BitFitTuning  # noqa: E402
from .distill import Distill  # noqa: E402
from .finetune import Finetune  # noqa: E402
from .fixed_lm import FixedLM  # noqa: E402
from .fixed_prompt import FixedPrompt  # noqa: E402
from .lora import LoraTuning  # noqa: E402
from .prompt_lm import PromptLM  # noqa: E402
from .tuning_free import TuningFree  # noqa: E402

for _name, _cls in ((DEFAULT_STRATEGY, TuningFree), ("fixed_lm", FixedLM), ("fixed_prompt", FixedPrompt),
                    ("prompt_lm", PromptLM), ("finetune", Finetune), ("distill", Distill),
                    ("lora", LoraTuning), ("bitfit", BitFitTuning)):
    register_strategy(_name)(_cls)
