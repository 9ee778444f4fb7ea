"""Verbalizers: label words per class, and the map from mask-position scores to class scores.

A verbalizer is data: ``{"negative": "terrible", "positive": ["great", "good"]}`` or the one-line
string ``"negative: terrible; positive: great, good"``.  At construction every word is tokenised
with the tokenizer it will be used with; the sub-token split of each word is kept and reported
(:meth:`Verbalizer.describe`).  For byte-level BPE tokenizers (RoBERTa, GPT-2) a leading space is
added automatically (``prefix_space="auto"``) because the mask follows a space in the usual
templates -- users never write ``Ġgreat``.

Scoring (:meth:`Verbalizer.process`), given the LM-head logits at the mask for the label tokens:

1. ``log_softmax`` over the label tokens of all classes (the distribution is restricted to the
   verbalizer's tokens, as in OpenPrompt's ManualVerbalizer; the argmax is the same as over the
   full vocabulary);
2. optional contextual calibration: subtract the log-probabilities of a content-free input and
   renormalise (Zhao et al. 2021);
3. a word's score is its sub-tokens' log-probability combined by ``multi_token``: ``first``,
   ``mean`` (default) or ``max`` (all read at the one mask position); ``error`` refuses
   multi-token words;
4. a class's score combines its words by ``aggregation``: ``mean`` of log-probs (default, PET /
   OpenPrompt), ``max``, or ``logsumexp`` (log of the summed probability).

The result is one log-score per class; ``argmax`` is the prediction and the scores are valid
logits for a cross-entropy loss.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .template import is_space_sensitive

__all__ = ["Verbalizer", "VerbalizerError", "parse_label_words"]

_AGGREGATIONS = ("mean", "max", "logsumexp")
_MULTI_TOKEN = ("mean", "first", "max", "error")


class VerbalizerError(ValueError):
    """Label words that cannot be used with the given tokenizer or labels."""


def parse_label_words(spec: Any, labels: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Normalise a verbalizer spec to ``{class: [words]}``.

    Accepts a mapping (class -> word or list of words), a list (one entry per class, in label
    order; each a word or list of words) or a one-line string ``"neg: terrible, bad; pos: great"``.
    """
    if isinstance(spec, str):
        out: dict[str, list[str]] = {}
        for i, part in enumerate(p for p in spec.split(";") if p.strip()):
            if ":" not in part:
                raise VerbalizerError(f"verbalizer string {spec!r}: part {i + 1} ({part.strip()!r}) has no ':'; "
                                      "fix: write 'class: word1, word2; other: word3'")
            cls, words = part.split(":", 1)
            out[cls.strip()] = [w.strip() for w in words.split(",") if w.strip()]
        spec = out
    if hasattr(spec, "items"):
        mapping = {str(k): ([v] if isinstance(v, str) else [str(w) for w in v]) for k, v in spec.items()}
    elif isinstance(spec, Sequence):
        if labels is None:
            raise VerbalizerError("a verbalizer given as a list needs the task's labels to know the class order")
        if len(spec) != len(labels):
            raise VerbalizerError(f"verbalizer list has {len(spec)} entries but there are {len(labels)} labels {list(labels)}")
        mapping = {str(c): ([v] if isinstance(v, str) else [str(w) for w in v]) for c, v in zip(labels, spec)}
    else:
        raise VerbalizerError(f"cannot read a verbalizer from {type(spec).__name__}: {spec!r}")
    for cls, words in mapping.items():
        if not words or any(not w.strip() for w in words):
            raise VerbalizerError(f"class {cls!r} has an empty label word list {words!r}")
    return mapping


class Verbalizer(nn.Module):
    """Maps classes to label words and mask-position token logits to class scores."""

    def __init__(self, label_words: Any, tokenizer: Any, labels: Sequence[str] | None = None,
                 aggregation: str = "mean", multi_token: str = "mean", prefix_space: bool | str = "auto",
                 name: str | None = None):
        super().__init__()
        if aggregation not in _AGGREGATIONS:
            raise VerbalizerError(f"aggregation must be one of {_AGGREGATIONS}, got {aggregation!r}")
        if multi_token not in _MULTI_TOKEN:
            raise VerbalizerError(f"multi_token must be one of {_MULTI_TOKEN}, got {multi_token!r}")
        mapping = parse_label_words(label_words, labels)
        if labels is not None:
            labels = [str(x) for x in labels]
            missing = [c for c in labels if c not in mapping]
            extra = [c for c in mapping if c not in labels]
            if missing or extra:
                raise VerbalizerError(
                    f"verbalizer {name or ''} classes {list(mapping)} do not match the labels {labels}: "
                    f"missing {missing}, unknown {extra}; fix: give label words for exactly these classes")
            mapping = {c: mapping[c] for c in labels}
        self.name = name
        self.labels: list[str] = list(mapping)
        self.label_words: dict[str, list[str]] = mapping
        self.aggregation = aggregation
        self.multi_token = multi_token
        if prefix_space == "auto":
            prefix_space = is_space_sensitive(tokenizer)
        self.prefix_space = bool(prefix_space)
        self._tokenizer_name = type(tokenizer).__name__

        unk = tokenizer.unk_token_id
        words_ids: list[list[int]] = []
        word_class: list[int] = []
        self.splits: list[tuple[str, str, list[str]]] = []
        for c, (cls, words) in enumerate(mapping.items()):
            for w in words:
                text = (" " + w.strip()) if self.prefix_space else w.strip()
                ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
                pieces = tokenizer.convert_ids_to_tokens(ids)
                if not ids or (unk is not None and unk in ids):
                    raise VerbalizerError(
                        f"label word {w!r} of class {cls!r} is unknown to {self._tokenizer_name}: it splits into "
                        f"{pieces}; fix: choose a word in the vocabulary")
                if len(ids) > 1 and multi_token == "error":
                    raise VerbalizerError(
                        f"label word {w!r} of class {cls!r} is {len(ids)} sub-tokens {pieces} for "
                        f"{self._tokenizer_name}; fix: pick a single-token word or set multi_token=mean|first|max")
                words_ids.append(ids)
                word_class.append(c)
                self.splits.append((cls, w, pieces))
        tokens = sorted({t for ids in words_ids for t in ids})
        pos = {t: i for i, t in enumerate(tokens)}
        max_sub = max(len(ids) for ids in words_ids)
        sub_idx = torch.zeros(len(words_ids), max_sub, dtype=torch.long)
        sub_mask = torch.zeros(len(words_ids), max_sub, dtype=torch.bool)
        for i, ids in enumerate(words_ids):
            sub_idx[i, : len(ids)] = torch.tensor([pos[t] for t in ids])
            sub_mask[i, : len(ids)] = True
        n_cls = len(mapping)
        max_words = max(len(ws) for ws in mapping.values())
        word_idx = torch.zeros(n_cls, max_words, dtype=torch.long)
        word_mask = torch.zeros(n_cls, max_words, dtype=torch.bool)
        counts = [0] * n_cls
        for i, c in enumerate(word_class):
            word_idx[c, counts[c]] = i
            word_mask[c, counts[c]] = True
            counts[c] += 1
        self.register_buffer("token_ids", torch.tensor(tokens, dtype=torch.long), persistent=False)
        self.register_buffer("sub_idx", sub_idx, persistent=False)
        self.register_buffer("sub_mask", sub_mask, persistent=False)
        self.register_buffer("word_idx", word_idx, persistent=False)
        self.register_buffer("word_mask", word_mask, persistent=False)
        self.register_buffer("calibration", torch.zeros(len(tokens)), persistent=False)
        self.calibrated = False

    # ------------------------------------------------------------------ reporting
    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def is_multi_token(self) -> bool:
        return bool(self.sub_mask.shape[1] > 1)

    def describe(self) -> str:
        """One line per label word with its sub-token split."""
        lines = [f"verbalizer ({self._tokenizer_name}, prefix_space={self.prefix_space}, "
                 f"aggregation={self.aggregation}, multi_token={self.multi_token}):"]
        for cls, w, pieces in self.splits:
            note = "" if len(pieces) == 1 else f"  <- {len(pieces)} sub-tokens, scored by '{self.multi_token}'"
            lines.append(f"  {cls:>16}: {w!r} -> {pieces}{note}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Verbalizer({self.label_words!r}, aggregation={self.aggregation!r})"

    # ------------------------------------------------------------------ scoring
    def calibrate(self, content_free_token_logits: torch.Tensor) -> None:
        """Contextual calibration from label-token logits of content-free inputs ([N, T] or [T])."""
        logp = torch.log_softmax(content_free_token_logits.float().reshape(-1, self.token_ids.numel()), dim=-1)
        self.calibration = (torch.logsumexp(logp, 0) - torch.log(torch.tensor(float(logp.shape[0])))).to(
            self.calibration.device)
        self.calibrated = True

    def process(self, token_logits: torch.Tensor) -> torch.Tensor:
        """Label-token logits at the mask ``[B, T]`` (T = ``len(token_ids)``) -> class log-scores ``[B, C]``."""
        logp = torch.log_softmax(token_logits.float(), dim=-1)
        if self.calibrated:
            logp = torch.log_softmax(logp - self.calibration, dim=-1)
        sub = logp[:, self.sub_idx]  # [B, W, S]
        if self.multi_token == "first" or sub.shape[-1] == 1:
            word = sub[..., 0]
        elif self.multi_token == "max":
            word = sub.masked_fill(~self.sub_mask, float("-inf")).amax(-1)
        else:
            word = (sub * self.sub_mask).sum(-1) / self.sub_mask.sum(-1)
        cls = word[:, self.word_idx]  # [B, C, K]
        if cls.shape[-1] == 1:
            return cls[..., 0]
        if self.aggregation == "max":
            return cls.masked_fill(~self.word_mask, float("-inf")).amax(-1)
        if self.aggregation == "logsumexp":
            return torch.logsumexp(cls.masked_fill(~self.word_mask, float("-inf")), -1)
        return (cls * self.word_mask).sum(-1) / self.word_mask.sum(-1)

    def forward(self, token_logits: torch.Tensor) -> torch.Tensor:
        return self.process(token_logits)
