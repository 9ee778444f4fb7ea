"""``soft``: a trainable per-class head on the hidden state at the mask (WARP; OpenPrompt's SoftVerbalizer).

The input is what the LM head's output projection would receive at the mask (``mask_hidden``, after
the head's transform).  The verbalizer is one linear layer ``H -> C``, **initialised from the label
words**: class c's weight row is the mean, over the class's label words, of the mean of the output-
embedding rows (``get_output_embeddings().weight``) of the word's sub-tokens, and its bias the same
mean of the decoder bias (zero if the model has none).  So at initialisation, with one single-token
word per class, the soft verbalizer's scores are exactly the manual verbalizer's (the label words'
logits, log-softmax over the classes); training then moves the rows away from the words.

The steps: project (the head: ``[B, H] -> [B, C]``) -> normalise (log-softmax over the classes) ->
calibrate (optional, base class) -> aggregate (identity: the units are the classes).  The head's
parameters form the ``verbalizer`` parameter group, which ``fixed_lm``, ``fixed_prompt`` and
``prompt_lm`` train (``strategy.verbalizer_lr``, default the prompt learning rate); they are saved in
``verbalizer.safetensors``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..template import resolve_prefix_space
from .base import MASK_HIDDEN, BaseVerbalizer, VerbalizerError
from .manual import check_label_words, parse_label_words

__all__ = ["SoftVerbalizer"]


def _word_ids(tokenizer: Any, words: dict[str, list[str]], prefix_space: bool) -> dict[str, list[list[int]]]:
    unk = tokenizer.unk_token_id
    out: dict[str, list[list[int]]] = {}
    for cls, ws in words.items():
        out[cls] = []
        for w in ws:
            ids = list(tokenizer((" " + w) if prefix_space else w, add_special_tokens=False)["input_ids"])
            if not ids or (unk is not None and unk in ids):
                raise VerbalizerError(f"label word {w!r} of class {cls!r} is unknown to {type(tokenizer).__name__}: it "
                                      f"splits into {tokenizer.convert_ids_to_tokens(ids)}; fix: choose a word in the "
                                      "vocabulary (the soft head is initialised from its output-embedding rows)")
            out[cls].append(ids)
    return out


class SoftVerbalizer(BaseVerbalizer):
    """A linear head ``H -> C`` on the mask's hidden state, initialised from the label words' LM-head rows."""

    input = MASK_HIDDEN
    OPTIONS = frozenset({"prefix_space", "hidden_size"})
    needs_model = True  # the head is sized and initialised from the LM's output embeddings

    def __init__(self, label_words: Any, tokenizer: Any, mlm: nn.Module | None = None,
                 labels: Sequence[str] | None = None, prefix_space: bool | str = "auto", template: Any = None,
                 name: str | None = None, hidden_size: int | None = None):
        mapping = check_label_words(parse_label_words(label_words, labels), labels, name)
        super().__init__(list(mapping), name=name)
        self.label_words = mapping
        self._tokenizer = tokenizer
        self.prefix_space_option = prefix_space
        self.prefix_space = bool(resolve_prefix_space(prefix_space, tokenizer, template))
        self.word_ids = _word_ids(tokenizer, mapping, self.prefix_space)
        decoder = mlm.get_output_embeddings() if mlm is not None else None
        if decoder is None and hidden_size is None:
            raise VerbalizerError("the soft verbalizer needs the masked LM (its output embeddings initialise the "
                                  "head) or hidden_size; fix: SoftVerbalizer(words, tokenizer, mlm)")
        size = int(hidden_size or decoder.weight.shape[1])
        self.head = nn.Linear(size, len(mapping))
        if decoder is not None:
            self.init_from_words(decoder)
        else:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @torch.no_grad()
    def init_from_words(self, decoder: nn.Module) -> None:
        """Each class row := mean over its words of the mean of their sub-tokens' output-embedding rows (and bias)."""
        weight = decoder.weight.detach().float()
        bias = getattr(decoder, "bias", None)
        if weight.shape[1] != self.head.in_features:
            raise VerbalizerError(f"the LM's output embeddings have width {weight.shape[1]} but the head expects "
                                  f"{self.head.in_features}")
        for c, cls in enumerate(self.labels):
            rows = [weight[ids].mean(0) for ids in self.word_ids[cls]]
            self.head.weight[c] = torch.stack(rows).mean(0)
            if bias is not None:
                self.head.bias[c] = torch.stack([bias.detach().float()[ids].mean() for ids in self.word_ids[cls]]).mean()
            else:
                self.head.bias[c] = 0.0

    # ------------------------------------------------------------------ steps
    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden.to(self.head.weight.dtype))

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        return {"type": self.type, "label_words": self.label_words, "labels": self.labels,
                "prefix_space": self.prefix_space, "hidden_size": self.head.in_features}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], tokenizer: Any, labels: Sequence[str] | None = None,
                    template: Any = None, name: str | None = None, mlm: nn.Module | None = None) -> "SoftVerbalizer":
        opts = cls.options(cfg)
        if cfg.get("label_words") is None:
            raise VerbalizerError("the soft verbalizer needs label_words (they initialise the head)")
        return cls(cfg["label_words"], tokenizer, mlm=mlm, labels=labels or cfg.get("labels"), template=template,
                   name=name, **opts)

    def bind(self, template: Any) -> "SoftVerbalizer":
        wanted = resolve_prefix_space(self.prefix_space_option, self._tokenizer, template)
        if wanted != self.prefix_space:
            raise VerbalizerError(f"soft verbalizer {self.name!r} was initialised for label words "
                                  f"{'with' if self.prefix_space else 'without'} a leading space, but template "
                                  f"{getattr(template, 'text', template)!r} needs the other; fix: build it with "
                                  f"template=<the template>")
        return self.copy()

    def describe(self) -> str:
        tok = self._tokenizer
        lines = [f"verbalizer soft ({type(tok).__name__}, prefix_space={self.prefix_space}): a trainable head "
                 f"{self.head.in_features} -> {len(self.labels)} on the hidden state at the mask, each class row "
                 "initialised from the mean output-embedding row of its label words:"]
        for cls in self.labels:
            words = ", ".join(f"{w!r} {tok.convert_ids_to_tokens(ids)}" for w, ids in
                              zip(self.label_words[cls], self.word_ids[cls]))
            lines.append(f"  {cls:>16}: {words}")
        return "\n".join(lines)
