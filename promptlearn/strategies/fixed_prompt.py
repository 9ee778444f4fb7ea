"""``fixed_prompt``: fixed-prompt LM tuning (PET / LM-BFF prompt-based fine-tuning).

A hard template; the LM (and a verbalizer's parameters, if any) trains with cross-entropy over the
verbalizer's class scores.
"""

from __future__ import annotations

from .base import Strategy


class FixedPrompt(Strategy):
    trains = ("lm", "verbalizer", "adapter")
