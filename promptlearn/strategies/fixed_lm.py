"""``fixed_lm``: fixed-LM prompt tuning (Lester et al.; P-tuning v1 encoders; P-tuning v2 deep prefixes).

The LM is frozen and kept in eval mode; only the prompt parameters train (and a verbalizer's or
PEFT adapter's, if the model has them).  ``soft_prefix: N`` puts N soft tokens before the template,
``prompt_encoder.type`` picks ``embedding`` / ``lstm`` / ``mlp`` / ``deep``.
"""

from __future__ import annotations

from .base import Strategy


class FixedLM(Strategy):
    trains = ("prompt", "verbalizer", "adapter")
