"""``prompt_lm``: prompt+LM tuning (P-tuning v1).

Soft tokens and the LM train together, each group with its own learning rate (``prompt_lr`` much
larger than ``lr``, P-tuning's advice).
"""

from __future__ import annotations

from .base import Strategy


class PromptLM(Strategy):
    trains = ("lm", "prompt", "verbalizer", "adapter")
