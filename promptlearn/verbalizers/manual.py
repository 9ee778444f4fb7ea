"""``manual``: label words per class, scored from the LM's logits at the mask (PET / LM-BFF / OpenPrompt).

A verbalizer is data: ``{"negative": "terrible", "positive": ["great", "good"]}`` or the one-line
string ``"negative: terrible; positive: great, good"``.  Every word is tokenised with the tokenizer
it will be used with when the verbalizer is built, and its sub-token split is kept and reported
(:meth:`ManualVerbalizer.describe`).  Whether a word gets a leading space (byte-level BPE) is
decided by :func:`promptlearn.template.resolve_prefix_space` -- users never write ``Ġgreat``.

The steps (see :mod:`promptlearn.verbalizers.base`), given the LM-head logits at the mask for the
label tokens ``token_ids``:

1. project: the input already is one logit per label token;
2. normalise: ``log_softmax`` over the label tokens of all classes (as OpenPrompt's ManualVerbalizer;
   the argmax is the same as over the full vocabulary);
3. calibrate (optional, shared by every type);
4. aggregate: a word's score is its sub-tokens' log-probability combined by ``multi_token``
   (``first``, ``mean`` or ``max``, all read at the one mask position; ``error`` refuses
   multi-token words), and a class's score combines its words by ``aggregation`` (``mean`` of
   log-probs (default, PET / OpenPrompt), ``max``, or ``logsumexp``).

Multi-token words are scored **exactly** by default (``multi_token=exact``, see
:mod:`promptlearn.multi_token`): a word of n sub-tokens is scored with n masks, its score is the sum
(``multi_token_reduce=sum``, the word's log-probability) or mean of its sub-tokens' full-vocabulary
log-probabilities, with the other positions masked (``multi_token_fill=parallel``) or filled left to
right.  Then the units are the *words*: the input is ``[B, W]`` word log-probabilities
(``input = word_logprobs``), normalise is a log-softmax over the words, calibration divides by a
prior over words, and aggregate combines each class's words.  A verbalizer whose words are all single
tokens keeps the label-row fast path above in every mode (its numbers do not depend on ``multi_token``).

With one single-token word per class the prediction is the argmax of the raw label-word logits.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..template import resolve_prefix_space
from ..multi_token import FILLS, REDUCES, MaskPlan
from .base import LABEL_LOGITS, WORD_LOGPROBS, BaseVerbalizer, VerbalizerError

__all__ = ["ManualVerbalizer", "parse_label_words", "check_label_words"]

_AGGREGATIONS = ("mean", "max", "logsumexp")
_MULTI_TOKEN = ("exact", "mean", "first", "max", "error")


YAML_HINT = ("(YAML reads unquoted yes/no/on/off/true/false as booleans and digits as numbers: quote such "
              "strings, e.g. \"Yes\")")


def check_label_words(mapping: Mapping[str, Any], labels: Sequence[str] | None = None,
                      name: str | None = None) -> dict[str, list[str]]:
    """The one validation of label words (tasks and verbalizers both use it).

    Every class has a non-empty list of non-empty strings (a YAML boolean or number is refused with a
    hint), and with ``labels`` the classes are exactly the labels; returns ``{class: [words]}`` in label order.
    """
    out = {str(k): ([v] if isinstance(v, str) or not isinstance(v, Sequence) else list(v)) for k, v in mapping.items()}
    where = f"verbalizer {name!r}" if name else "verbalizer"
    if labels is not None:
        labels = [str(x) for x in labels]
        missing = [c for c in labels if c not in out]
        extra = [c for c in out if c not in labels]
        if missing or extra:
            raise VerbalizerError(f"{where} classes {sorted(out)} do not match labels {labels} (missing {missing}, "
                                  f"extra {extra}); fix: give label words for exactly these classes")
        out = {c: out[c] for c in labels}
    for cls, words in out.items():
        if not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise VerbalizerError(f"{where}: label words of class {cls!r} must be non-empty strings, got {words!r} "
                                  f"{YAML_HINT}")
    return {c: [w.strip() for w in ws] for c, ws in out.items()}


def parse_label_words(spec: Any, labels: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Normalise a verbalizer spec to ``{class: [words]}`` (checked by :func:`check_label_words`).

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
        return check_label_words(spec)
    if isinstance(spec, Sequence):
        if labels is None:
            raise VerbalizerError("a verbalizer given as a list needs the task's labels to know the class order")
        if len(spec) != len(labels):
            raise VerbalizerError(f"verbalizer list has {len(spec)} entries but there are {len(labels)} labels {list(labels)}")
        return check_label_words(dict(zip((str(c) for c in labels), spec)))
    raise VerbalizerError(f"cannot read a verbalizer from {type(spec).__name__}: {spec!r}")


class ManualVerbalizer(BaseVerbalizer):
    """Maps classes to label words and mask-position label-token logits to class scores.

    Refused at construction, each with the fix: a word the tokenizer maps to ``[UNK]``, a word that
    splits into more than ``max_subtokens`` (3) sub-tokens (``xqzvbn`` -> ``x ##q ##z ##v ##b ##n``),
    and a word shared by two classes (their scores would tie) unless ``allow_shared=True``.
    """

    OPTIONS = frozenset({"aggregation", "multi_token", "prefix_space", "max_subtokens", "allow_shared",
                         "multi_token_reduce", "multi_token_fill"})

    needs_model = False  # built from the tokenizer alone: label words are checked before the LM loads

    def __init__(self, label_words: Any, tokenizer: Any, labels: Sequence[str] | None = None,
                 aggregation: str = "mean", multi_token: str = "exact", prefix_space: bool | str = "auto",
                 name: str | None = None, template: Any = None, max_subtokens: int = 3, allow_shared: bool = False,
                 multi_token_reduce: str = "sum", multi_token_fill: str = "parallel"):
        if aggregation not in _AGGREGATIONS:
            raise VerbalizerError(f"aggregation must be one of {_AGGREGATIONS}, got {aggregation!r}")
        if multi_token not in _MULTI_TOKEN:
            raise VerbalizerError(f"multi_token must be one of {_MULTI_TOKEN}, got {multi_token!r}")
        if multi_token_reduce not in REDUCES:
            raise VerbalizerError(f"multi_token_reduce must be one of {REDUCES}, got {multi_token_reduce!r}")
        if multi_token_fill not in FILLS:
            raise VerbalizerError(f"multi_token_fill must be one of {FILLS}, got {multi_token_fill!r}")
        self.multi_token_reduce = multi_token_reduce
        self.multi_token_fill = multi_token_fill
        mapping = check_label_words(parse_label_words(label_words, labels), labels, name)
        super().__init__(list(mapping), name=name)
        self.label_words: dict[str, list[str]] = mapping
        self.aggregation = aggregation
        self.multi_token = multi_token
        self.max_subtokens = int(max_subtokens)
        self.allow_shared = bool(allow_shared)
        self.prefix_space_option = prefix_space
        self._tokenizer = tokenizer
        self._tokenizer_name = type(tokenizer).__name__
        self._tokenize(resolve_prefix_space(prefix_space, tokenizer, template))

    # ------------------------------------------------------------------ label words -> token indices
    def _tokenize(self, prefix_space: bool) -> None:
        tokenizer = self._tokenizer
        self.prefix_space = bool(prefix_space)
        unk = tokenizer.unk_token_id
        words_ids: list[list[int]] = []
        word_class: list[int] = []
        self.splits: list[tuple[str, str, list[str]]] = []
        for c, (cls, words) in enumerate(self.label_words.items()):
            for w in words:
                text = (" " + w.strip()) if self.prefix_space else w.strip()
                ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
                pieces = tokenizer.convert_ids_to_tokens(ids)
                if not ids or (unk is not None and unk in ids):
                    raise VerbalizerError(
                        f"label word {w!r} of class {cls!r} is unknown to {self._tokenizer_name}: it splits into "
                        f"{pieces}; fix: choose a word in the vocabulary")
                if len(ids) > self.max_subtokens:
                    raise VerbalizerError(
                        f"label word {w!r} of class {cls!r} splits into {len(ids)} sub-tokens {pieces} for "
                        f"{self._tokenizer_name}, more than max_subtokens={self.max_subtokens}: it is probably not a "
                        f"word this model knows; fix: choose another word, or allow it with "
                        f"verbalizer.max_subtokens={len(ids)}")
                if len(ids) > 1 and self.multi_token == "error":
                    raise VerbalizerError(
                        f"label word {w!r} of class {cls!r} is {len(ids)} sub-tokens {pieces} for "
                        f"{self._tokenizer_name}; fix: pick a single-token word or set multi_token=mean|first|max")
                words_ids.append(ids)
                word_class.append(c)
                self.splits.append((cls, w, pieces))
        if not self.allow_shared:
            owner: dict[tuple[int, ...], tuple[str, str]] = {}
            for (cls, w, _), ids in zip(self.splits, words_ids):
                other = owner.setdefault(tuple(ids), (cls, w))
                if other[0] != cls:
                    raise VerbalizerError(
                        f"label word {w!r} of class {cls!r} is also a label word of class {other[0]!r} ({other[1]!r}): "
                        f"the two classes would share its score; fix: give each class its own words, or allow it "
                        f"with verbalizer.allow_shared=true")
        tokens = sorted({t for ids in words_ids for t in ids})
        pos = {t: i for i, t in enumerate(tokens)}
        max_sub = max(len(ids) for ids in words_ids)
        sub_idx = torch.zeros(len(words_ids), max_sub, dtype=torch.long)
        sub_mask = torch.zeros(len(words_ids), max_sub, dtype=torch.bool)
        for i, ids in enumerate(words_ids):
            sub_idx[i, : len(ids)] = torch.tensor([pos[t] for t in ids])
            sub_mask[i, : len(ids)] = True
        n_cls = len(self.label_words)
        max_words = max(len(ws) for ws in self.label_words.values())
        word_idx = torch.zeros(n_cls, max_words, dtype=torch.long)
        word_mask = torch.zeros(n_cls, max_words, dtype=torch.bool)
        counts = [0] * n_cls
        for i, c in enumerate(word_class):
            word_idx[c, counts[c]] = i
            word_mask[c, counts[c]] = True
            counts[c] += 1
        self.words_ids: list[list[int]] = words_ids
        # exact multi-token scoring: the model computes word log-probabilities with n masks per word
        exact = self.multi_token == "exact" and max_sub > 1
        self.input = WORD_LOGPROBS if exact else LABEL_LOGITS
        self.mask_plan: MaskPlan | None = (MaskPlan.from_words(words_ids, self.multi_token_fill,
                                                                self.multi_token_reduce) if exact else None)
        device = self.calibration.device
        for name, value in (("token_ids", torch.tensor(tokens, dtype=torch.long)), ("sub_idx", sub_idx),
                            ("sub_mask", sub_mask), ("word_idx", word_idx), ("word_mask", word_mask)):
            self.register_buffer(name, value.to(device), persistent=False)

    def bind(self, template: Any) -> "ManualVerbalizer":
        """The model's own copy, re-tokenised for ``template`` if ``prefix_space="auto"`` resolves differently."""
        wanted = resolve_prefix_space(self.prefix_space_option, self._tokenizer, template)
        if wanted != self.prefix_space and self.calibrated:
            raise VerbalizerError(f"verbalizer {self.name!r} was calibrated with prefix_space={self.prefix_space} "
                                  f"but template {template.text!r} needs {wanted}; calibrate after building the model")
        other = self.copy()
        if wanted != self.prefix_space:
            other._tokenize(wanted)
        return other

    # ------------------------------------------------------------------ config / reporting
    def config(self) -> dict[str, Any]:
        cfg = {"type": self.type, "label_words": self.label_words, "labels": self.labels,
               "aggregation": self.aggregation, "multi_token": self.multi_token, "prefix_space": self.prefix_space,
               "max_subtokens": self.max_subtokens, "allow_shared": self.allow_shared}
        if self.multi_token == "exact":
            cfg.update(multi_token_reduce=self.multi_token_reduce, multi_token_fill=self.multi_token_fill)
        return cfg

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], tokenizer: Any, labels: Sequence[str] | None = None,
                    template: Any = None, name: str | None = None, mlm: Any = None) -> "ManualVerbalizer":
        opts = cls.options(cfg)
        if cfg.get("label_words") is None:
            raise VerbalizerError("the manual verbalizer needs label_words (class -> word or list of words)")
        return cls(cfg["label_words"], tokenizer, labels=labels or cfg.get("labels"), name=name, template=template,
                   **opts)

    @property
    def is_multi_token(self) -> bool:
        return bool(self.sub_mask.shape[1] > 1)

    @property
    def extra_masks(self) -> int:
        """Masks the model inserts beyond the template's one (exact multi-token scoring)."""
        return self.mask_plan.max_length - 1 if self.mask_plan is not None else 0

    def describe(self) -> str:
        """One line per label word with its sub-token split."""
        lines = [f"verbalizer ({self._tokenizer_name}, prefix_space={self.prefix_space}, "
                 f"aggregation={self.aggregation}, multi_token={self.multi_token}):"]
        how = (f"scored with {{n}} masks ({self.multi_token_reduce} of sub-token log-probs, {self.multi_token_fill})"
               if self.mask_plan is not None else f"scored by '{self.multi_token}' at one mask")
        for cls, w, pieces in self.splits:
            note = "" if len(pieces) == 1 else f"  <- {len(pieces)} sub-tokens, {how.format(n=len(pieces))}"
            lines.append(f"  {cls:>16}: {w!r} -> {pieces}{note}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ManualVerbalizer({self.label_words!r}, aggregation={self.aggregation!r})"

    # ------------------------------------------------------------------ scoring steps
    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Label-token logits at the mask ``[B, T]`` (T = ``len(token_ids)``), or with exact multi-token scoring
        the words' log-probabilities ``[B, W]``: already one score per unit."""
        return x

    def aggregate(self, logp: torch.Tensor) -> torch.Tensor:
        """Label-token log-probs ``[B, T]`` -> word scores (:meth:`word_scores`) -> classes (:meth:`combine_words`);
        with exact multi-token scoring the units already are the words."""
        if self.input == WORD_LOGPROBS:
            return self.combine_words(logp)
        return self.combine_words(self.word_scores(logp))

    def word_logprobs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, W]``: each label word's normalised log-score from the verbalizer input ``x`` (before calibration
        and aggregation) -- what word-level refinement (KPT) and inspection read, whatever the scoring mode."""
        logp = self.normalize(self.project(x))
        return logp if self.input == WORD_LOGPROBS else self.word_scores(logp)

    def word_scores(self, logp: torch.Tensor) -> torch.Tensor:
        """``[B, W]``: each label word's score from its sub-tokens (``multi_token``)."""
        sub = logp[:, self.sub_idx]  # [B, W, S]
        if self.multi_token == "first" or sub.shape[-1] == 1:
            return sub[..., 0]
        if self.multi_token == "max":
            return sub.masked_fill(~self.sub_mask, float("-inf")).amax(-1)
        return (sub * self.sub_mask).sum(-1) / self.sub_mask.sum(-1)

    def combine_words(self, word: torch.Tensor) -> torch.Tensor:
        """``[B, W]`` word scores -> ``[B, C]`` class scores (``aggregation``; ``word_idx``/``word_mask`` say
        which words belong to which class)."""
        cls = word[:, self.word_idx]  # [B, C, K]
        if cls.shape[-1] == 1:
            return cls[..., 0]
        if self.aggregation == "max":
            return cls.masked_fill(~self.word_mask, float("-inf")).amax(-1)
        if self.aggregation == "logsumexp":
            return torch.logsumexp(cls.masked_fill(~self.word_mask, float("-inf")), -1)
        return (cls * self.word_mask).sum(-1) / self.word_mask.sum(-1)
