"""``lora``: LoRA through PEFT -- low-rank updates of the LM's attention projections train, its own weights stay
frozen (bit for bit); combinable with a hard template (prompt-based, mask + verbalizer, as ``fixed_prompt``) or soft
tokens (``strategy.soft_prefix=N`` / ``{soft}`` in the template: then the prompt trains too, at ``prompt_lr``).

The adapter is part of the spec (``strategy.adapter`` -> ``spec.adapter``; :mod:`promptlearn.adapters.lora`), so
the builder wraps the LM and a saved model holds only the LoRA matrices (PEFT's format), the prompt and the
verbalizer's parameters.  Like LM fine-tuning, the LM runs in training mode (dropout; ``strategy.lm_eval_mode``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import Strategy


class AdapterTuning(Strategy):
    """A strategy whose LM is tuned through the adapter its config names (``strategy.adapter.type``)."""

    trains = ("adapter", "prompt", "verbalizer")
    lm_eval_mode_default = False  # the LM is being tuned (through its adapter): dropout on, as in fine-tuning

    def adapt_spec(self, spec: Any, task: Any) -> Any:
        adapter = self.cfg.get("adapter")
        if not adapter or not dict(adapter).get("type"):
            raise ConfigError(f"strategy {self.name!r} needs an adapter; fix: strategy.adapter.type={self.name} "
                              f"(conf/strategy/{self.name}.yaml sets it)")
        return super().adapt_spec(spec, task)


class LoraTuning(AdapterTuning):
    pass
