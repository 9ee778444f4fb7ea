"""A plugin that lives outside the package (as a user's would): one verbalizer type and one strategy.

``toy_head``       a linear head on the hidden state at the mask (``input = mask_hidden``), started at zero;
``toy_head_only``  trains only the ``verbalizer`` group, with a label-smoothed cross-entropy of its own,
                   and counts its loss calls in the file named by $TOY_LOSS_LOG (so a test can see it ran).

Loaded with ``plugins=[toy_plugin]`` (this folder on PYTHONPATH) and configs in ``conf/`` (``--config-dir``).
"""

from __future__ import annotations

import os

import torch.nn.functional as F
from torch import nn

from promptlearn.strategies import Strategy, register_strategy
from promptlearn.verbalizers import MASK_HIDDEN, BaseVerbalizer, register_verbalizer


@register_verbalizer("toy_head")
class ToyHead(BaseVerbalizer):
    input = MASK_HIDDEN

    def __init__(self, labels, hidden_size, name=None):
        super().__init__(labels, name=name)
        self.hidden_size = int(hidden_size)
        self.head = nn.Linear(self.hidden_size, len(self.labels))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def project(self, hidden):
        return self.head(hidden.float())

    def config(self):
        return {"type": self.type, "hidden_size": self.hidden_size}

    @classmethod
    def from_config(cls, cfg, tokenizer, labels=None, template=None, name=None, mlm=None):
        hidden = cfg.get("hidden_size") or mlm.get_output_embeddings().weight.shape[1]
        return cls(labels, hidden, name=name)


@register_strategy("toy_head_only")
class HeadOnly(Strategy):
    trains = ("verbalizer",)

    def compute_loss(self, model, batch):
        if os.environ.get("TOY_LOSS_LOG"):
            with open(os.environ["TOY_LOSS_LOG"], "a") as f:
                f.write("loss\n")
        return F.cross_entropy(model(**batch).logits, batch["labels"], label_smoothing=0.1)
