"""Exact scoring of multi-token label words, batched: n masks for a word of n sub-tokens.

A label word that the tokenizer splits into n sub-tokens (``okay`` -> ``ok ##ay``) is scored with
n mask positions in place of the template's one ``{mask}`` (PET's multi-mask / ADAPET), and its
score is the sum (or the mean, ``multi_token_reduce=mean``) of the log-probabilities of its
sub-tokens at their positions, each a log-softmax over the *whole* vocabulary::

    log P(okay) = log p(ok | [MASK]1 [MASK]2) + log p(##ay | [MASK]1 [MASK]2)          (fill=parallel)
    log P(okay) = log p(ok | [MASK]1 [MASK]2) + log p(##ay | ok [MASK]2)                 (fill=left_to_right)

``parallel`` keeps every other position masked (PET/ADAPET style: the sub-tokens are predicted
independently given the masked slot); ``left_to_right`` fills the earlier positions with the word's
own earlier sub-tokens (autoregressive, as a left-to-right chain rule over the word).

How it is batched.  A :class:`MaskPlan` lists the *variants* of the input the verbalizer's words
need: one per distinct word length n (``parallel``), or one per distinct (n, filled prefix)
(``left_to_right``, teacher-forced over the known candidate words).  Every example of a batch is
expanded into all variants (its one mask becomes n masks, prefixes written in), the B x V rows go
through the model in **one** forward pass, and each word reads its sub-tokens' log-probabilities
from its variant's rows.  Nothing runs at batch size 1, and there is no forward per token: with the
three lengths of a typical verbalizer a batch of B examples is one forward of at most 3B rows.  A
verbalizer whose words are all single tokens never comes here (the label-row fast path).

The template keeps ``n_max - 1`` tokens free for the inserted masks (``Template.reserve``), so the
expanded rows never exceed ``max_length`` and truncation is the same for every variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["MaskPlan", "FILLS", "REDUCES", "expand_batch"]

FILLS = ("parallel", "left_to_right")
REDUCES = ("sum", "mean")


@dataclass
class MaskPlan:
    """Which input variants a set of label words needs and where each sub-token's log-prob is read.

    ``lengths[v]``      number of masks of variant v
    ``prefixes[v]``     the sub-token ids written into variant v's first positions (``left_to_right``)
    ``read_variant``    ``[W, S]`` variant each word's sub-token t is read from
    ``read_token``      ``[W, S]`` its token id; ``read_mask`` ``[W, S]`` which entries are real sub-tokens
    """

    lengths: list[int]
    prefixes: list[tuple[int, ...]]
    read_variant: torch.Tensor
    read_token: torch.Tensor
    read_mask: torch.Tensor
    fill: str
    reduce: str

    @classmethod
    def from_words(cls, words_ids: Sequence[Sequence[int]], fill: str = "parallel", reduce: str = "sum") -> "MaskPlan":
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
        if reduce not in REDUCES:
            raise ValueError(f"reduce must be one of {REDUCES}, got {reduce!r}")
        variants: dict[tuple[int, tuple[int, ...]], int] = {}
        s_max = max(len(w) for w in words_ids)
        read_variant = torch.zeros(len(words_ids), s_max, dtype=torch.long)
        read_token = torch.zeros(len(words_ids), s_max, dtype=torch.long)
        read_mask = torch.zeros(len(words_ids), s_max, dtype=torch.bool)
        # variants in a fixed order: by length, then prefix (deterministic whatever the word order)
        keys = sorted({(len(w), tuple(w[:t]) if fill == "left_to_right" else ()) for w in words_ids
                       for t in range(len(w))})
        for k in keys:
            variants[k] = len(variants)
        for i, w in enumerate(words_ids):
            for t, tok in enumerate(w):
                key = (len(w), tuple(w[:t]) if fill == "left_to_right" else ())
                read_variant[i, t] = variants[key]
                read_token[i, t] = tok
                read_mask[i, t] = True
        return cls(lengths=[k[0] for k in keys], prefixes=[k[1] for k in keys], read_variant=read_variant,
                   read_token=read_token, read_mask=read_mask, fill=fill, reduce=reduce)

    @property
    def num_variants(self) -> int:
        return len(self.lengths)

    @property
    def max_length(self) -> int:
        return max(self.lengths)

    def word_scores(self, logp: torch.Tensor) -> torch.Tensor:
        """``logp`` ``[V, B, P, vocab]`` (log-softmax at each variant's mask positions) -> ``[B, W]`` word scores."""
        dev = logp.device
        v, t, tok = (self.read_variant.to(dev), torch.arange(self.read_token.shape[1], device=dev),
                     self.read_token.to(dev))
        picked = logp.permute(1, 0, 2, 3)[:, v, t.expand_as(v), tok]  # [B, W, S]
        m = self.read_mask.to(dev)
        total = (picked * m).sum(-1)
        return total if self.reduce == "sum" else total / m.sum(-1)


def expand_batch(inputs: dict[str, torch.Tensor], mask_pos: torch.Tensor, plan: MaskPlan, mask_token_id: int,
                 pad_token_id: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every example in every variant: the one mask at ``mask_pos`` becomes ``n`` masks (prefix tokens written in).

    ``inputs`` holds ``input_ids`` ``[B, L]``, ``attention_mask`` and optionally ``token_type_ids`` /
    ``soft_ids``.  Returns the expanded inputs ``[V*B, L + n_max - 1]`` (variant-major) and the
    positions to read ``[V*B, n_max]`` (the mask slot's positions; beyond a variant's n they are never read).
    """
    ids = inputs["input_ids"]
    b, length = ids.shape
    dev = ids.device
    n_max = plan.max_length
    out_len = length + n_max - 1
    j = torch.arange(out_len, device=dev).unsqueeze(0)  # [1, L']
    p = mask_pos.unsqueeze(1)  # [B, 1]
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in inputs}
    for n, prefix in zip(plan.lengths, plan.prefixes):
        inserted = (j >= p) & (j < p + n)  # the n mask positions
        src = torch.where(j < p, j, torch.where(inserted, p, j - (n - 1)))
        valid = src < length
        src = src.clamp(max=length - 1)
        for key, x in inputs.items():
            g = torch.gather(x, 1, src.expand(b, -1))
            if key == "input_ids":
                g = torch.where(valid, g, torch.full_like(g, pad_token_id))
                g = torch.where(inserted, torch.full_like(g, mask_token_id), g)
                for t, tok in enumerate(prefix):  # left_to_right: the word's earlier sub-tokens
                    g = torch.where(j == p + t, torch.full_like(g, tok), g)
            elif key == "soft_ids":
                g = torch.where(valid & ~inserted, g, torch.zeros_like(g))
            else:  # attention_mask, token_type_ids: the inserted positions copy the mask's
                g = torch.where(valid, g, torch.zeros_like(g))
            rows[key].append(g)
    expanded = {k: torch.cat(v, 0) for k, v in rows.items()}
    positions = (mask_pos.unsqueeze(1) + torch.arange(n_max, device=dev)).clamp(max=out_len - 1)
    return expanded, positions.repeat(plan.num_variants, 1)
