"""``kpt``: the knowledgeable verbalizer (KPT, Hu et al. 2022) -- many label words per class, refined.

Each class is expanded from its label word(s) to a list of related words read from a word-list file
(``words=sentiment`` reads ``conf/verbalizer/words/sentiment.yaml``; any YAML file ``class: [words]``
works, ``words=/path/to/list.yaml``).  The class's own label words (the task's, or ``label_words``)
come first.  Then, as KPT does:

1. **length refinement** (at construction): words the tokenizer maps to ``[UNK]`` or splits into more
   than ``max_subtokens`` sub-tokens are dropped (with a note; the manual verbalizer would refuse
   them), and so are words listed for several classes (their scores would tie);
2. **frequency refinement** (before training, on a support set -- the pipeline's ``refine`` stage: the
   same unlabelled pool examples ``calibrate=support`` uses, ``calibrate_size`` of them, labels never
   read): the LM's mean log-probability of every vocabulary token at the mask over the support inputs;
   the fraction ``cut_off`` (0.5, KPT's default) of the vocabulary with the lowest is "rare", and a word
   with a rare sub-token is dropped (KPT's rule, OpenPrompt's ``register_calibrate_logits``) -- except
   each class's first word, so no class loses its name;
3. **calibration**: KPT divides by the same support-set prior; here that is ``calibrate=support``
   (KPT's AG News zero-shot: 51.3 without calibration, 85.1 with it -- use it);
4. **learned word weights** (``learn_weights=true``): one weight per word, softmax-normalised within its
   class and started uniform (so an untrained kpt verbalizer is the mean over its words), trained on the
   few-shot train set as the ``verbalizer`` parameter group (``fixed_prompt``, ``fixed_lm``,
   ``prompt_lm``, or ``strategy.trains=[verbalizer]``).  A class's score is then the weighted mean of its
   words' log-probabilities.

Multi-token words are scored as the manual verbalizer scores them (exactly, by default).  The words
that survive are what :meth:`config` records, so a saved model rebuilds the refined verbalizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..template import resolve_prefix_space
from .base import VerbalizerError
from .manual import ManualVerbalizer, parse_label_words

__all__ = ["KnowledgeableVerbalizer", "load_word_list", "WORDS_DIR"]

WORDS_DIR = Path(__file__).resolve().parents[2] / "conf" / "verbalizer" / "words"


def load_word_list(source: str | Path, labels: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``{class: [words]}`` from a shipped list name (``sentiment``) or a YAML file path."""
    import yaml

    p = Path(str(source))
    if not p.is_file():
        candidates = [WORDS_DIR / f"{source}.yaml", WORDS_DIR / str(source)]
        p = next((c for c in candidates if c.is_file()), p)
    if not p.is_file():
        shipped = sorted(f.stem for f in WORDS_DIR.glob("*.yaml"))
        raise VerbalizerError(f"word list {str(source)!r} not found (not a file, and not in {WORDS_DIR}); fix: "
                              f"verbalizer.words=<one of {shipped}> or a path to a YAML file 'class: [words]'")
    data = yaml.safe_load(p.read_text())
    if not isinstance(data, Mapping):
        raise VerbalizerError(f"word list {p}: expected a mapping class -> list of words, got {type(data).__name__}")
    for k, v in data.items():
        for j, w in enumerate(v if isinstance(v, list) else [v]):
            if not isinstance(w, str):  # YAML reads no/yes/on/off/true as booleans, 1/2.5 as numbers
                raise VerbalizerError(f"word list {p}: class {k!r}, word {j + 1} is {w!r} ({type(w).__name__}), not "
                                      f"a word: YAML reads no/yes/on/off/true/null and numbers as values; fix: quote "
                                      f"it, e.g. \"{str(w).lower() if isinstance(w, bool) else w}\"")
    out = {str(k): [w.strip() for w in (v if isinstance(v, list) else [v]) if w.strip()] for k, v in data.items()}
    if labels is not None:
        missing = [c for c in labels if c not in out]
        extra = [c for c in out if c not in labels]
        if missing or extra:
            raise VerbalizerError(f"word list {p}: its classes {sorted(out)} do not match the task's labels "
                                  f"{list(labels)} (missing {missing}, extra {extra}); fix: one entry per label")
    return out


class KnowledgeableVerbalizer(ManualVerbalizer):
    """Many words per class from a word list, refined by length, shared use and support-set prior (KPT)."""

    needs_support = True
    OPTIONS = frozenset({"words", "words_source", "cut_off", "learn_weights", "refined", "aggregation", "multi_token",
                         "prefix_space", "max_subtokens", "allow_shared", "multi_token_reduce", "multi_token_fill"})

    def __init__(self, label_words: Any, tokenizer: Any, labels: Sequence[str] | None = None,
                 words: str | Path | Mapping[str, Sequence[str]] | None = None, cut_off: float = 0.5,
                 learn_weights: bool = False, max_subtokens: int = 3, prefix_space: bool | str = "auto",
                 template: Any = None, name: str | None = None, refined: bool = False, **manual: Any):
        if not 0.0 <= float(cut_off) < 1.0:
            raise VerbalizerError(f"cut_off={cut_off} must be in [0, 1): the fraction of words frequency "
                                  "refinement drops; fix: verbalizer.cut_off=0.5")
        base = parse_label_words(label_words, labels) if label_words is not None else {}
        labels = [str(c) for c in labels] if labels is not None else list(base)
        if words is None and not base:
            raise VerbalizerError("the kpt verbalizer needs words (a word list) or label_words; fix: "
                                  "verbalizer.words=sentiment (conf/verbalizer/words/) or a YAML file")
        listed = (load_word_list(words, labels) if isinstance(words, (str, Path))
                  else {str(k): list(v) for k, v in (words or {}).items()})
        merged: dict[str, list[str]] = {}
        for cls in labels:
            seen: dict[str, None] = {}
            for w in list(base.get(cls, [])) + list(listed.get(cls, [])):
                seen.setdefault(w.strip(), None)
            merged[cls] = list(seen)
        space = resolve_prefix_space(prefix_space, tokenizer, template)
        kept, dropped = self._length_refine(merged, tokenizer, bool(space), int(max_subtokens))
        super().__init__(kept, tokenizer, labels=labels, prefix_space=prefix_space, template=template, name=name,
                         max_subtokens=max_subtokens, **manual)
        self.words_source = str(words) if isinstance(words, (str, Path)) else None
        self.cut_off = float(cut_off)
        self.learn_weights = bool(learn_weights)
        self.refined = bool(refined)
        self.dropped: dict[str, list[str]] = dropped  # reason -> words (reported, not saved)
        self._reset_weights()

    # ------------------------------------------------------------------ refinement
    @staticmethod
    def _length_refine(words: dict[str, list[str]], tokenizer: Any, space: bool,
                       max_subtokens: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        unk = tokenizer.unk_token_id
        dropped: dict[str, list[str]] = {"unknown": [], "too_long": [], "shared": []}
        ids_of: dict[tuple[int, ...], list[str]] = {}
        kept: dict[str, list[str]] = {}
        for cls, ws in words.items():
            kept[cls] = []
            for i, w in enumerate(ws):
                ids = tuple(tokenizer((" " + w) if space else w, add_special_tokens=False)["input_ids"])
                if not ids or (unk is not None and unk in ids):
                    dropped["unknown"].append(w)
                elif len(ids) > max_subtokens and i > 0:
                    dropped["too_long"].append(w)
                else:
                    kept[cls].append(w)
                    ids_of.setdefault(ids, []).append(cls)
        shared = {ids for ids, owners in ids_of.items() if len(set(owners)) > 1}
        if shared:
            for cls, ws in kept.items():
                first = ws[:1]
                rest = [w for w in ws[1:] if tuple(tokenizer((" " + w) if space else w,
                                                             add_special_tokens=False)["input_ids"]) not in shared]
                dropped["shared"] += [w for w in ws[1:] if w not in rest]
                kept[cls] = first + rest
        for cls, ws in kept.items():
            if not ws:
                raise VerbalizerError(f"kpt verbalizer: no usable word is left for class {cls!r} (unknown or longer "
                                      f"than max_subtokens={max_subtokens}); fix: give it a label word the "
                                      "tokenizer knows")
        return kept, dropped

    def refine(self, inputs: torch.Tensor, vocab_logprob: torch.Tensor) -> dict[str, Any]:
        """Frequency refinement, KPT's rule: ``vocab_logprob`` ``[V]`` is the support set's mean log-probability
        of every vocabulary token at the mask; the ``cut_off`` fraction of the *vocabulary* with the lowest is
        rare, and a word any of whose sub-tokens is rare is dropped (a class's first word never is).  A frequent
        word survives whatever the other words do, and a multi-token word is judged by its pieces' own
        frequency, not by its (much smaller) joint probability."""
        if self.refined:
            return {"skipped": "already refined"}
        if self.calibrated:
            raise VerbalizerError("kpt verbalizer: refine() after calibration would leave a prior over words that "
                                  "are dropped; fix: refine first, then calibrate (the pipeline's order)")
        prior = vocab_logprob.detach().float().flatten().cpu()
        order = torch.argsort(prior, stable=True)
        quantile = torch.empty_like(prior)  # the share of the vocabulary less probable than each token
        quantile[order] = torch.arange(prior.numel(), dtype=torch.float32) / prior.numel()
        rare = set(order[: int(self.cut_off * prior.numel())].tolist())
        words = [(cls, w) for cls, w, _ in self.splits]
        firsts = {(cls, ws[0]) for cls, ws in self.label_words.items()}
        drop = {i for i, ids in enumerate(self.words_ids) if words[i] not in firsts and rare.intersection(ids)}
        before = {c: len(ws) for c, ws in self.label_words.items()}
        ids_of = list(self.words_ids)
        self.label_words = {c: [w for i, (cc, w) in enumerate(words) if cc == c and i not in drop]
                            for c in self.label_words}
        self._tokenize(self.prefix_space)
        self._reset_weights()
        self.refined = True
        return {"words_before": before, "words_after": {c: len(ws) for c, ws in self.label_words.items()},
                "dropped": sorted(words[i][1] for i in drop),
                "vocab_quantile_of_kept": {w: round(min(float(quantile[t]) for t in ids_of[i]), 4)
                                           for i, (_, w) in enumerate(words) if i not in drop}}

    # ------------------------------------------------------------------ learned word weights
    def _reset_weights(self) -> None:
        if self.learn_weights:
            self.word_weight = nn.Parameter(torch.zeros(self.word_idx.shape, device=self.calibration.device))
        else:
            self.word_weight = None

    def combine_words(self, word: torch.Tensor) -> torch.Tensor:
        if self.word_weight is None:
            return super().combine_words(word)
        cls = word[:, self.word_idx]  # [B, C, K]
        w = torch.softmax(self.word_weight.float().masked_fill(~self.word_mask, float("-inf")), -1)
        return (cls * w).masked_fill(~self.word_mask, 0.0).sum(-1)

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg.update(cut_off=self.cut_off, learn_weights=self.learn_weights, refined=self.refined,
                   words_source=self.words_source)
        return cfg

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], tokenizer: Any, labels: Sequence[str] | None = None,
                    template: Any = None, name: str | None = None, mlm: Any = None) -> "KnowledgeableVerbalizer":
        opts = cls.options(cfg)
        opts.pop("words_source", None)  # where the words came from (informational)
        opts.pop("allow_shared", None)  # shared words are dropped, never allowed
        return cls(cfg.get("label_words"), tokenizer, labels=labels or cfg.get("labels"), template=template,
                   name=name, **opts)

    def describe(self) -> str:
        head = (f"verbalizer kpt ({self._tokenizer_name}, prefix_space={self.prefix_space}, "
                f"{'learned word weights' if self.learn_weights else 'aggregation=' + self.aggregation}, "
                f"multi_token={self.multi_token}, refined={self.refined}, cut_off={self.cut_off}):")
        lines = [head]
        for c, ws in self.label_words.items():
            shown = ", ".join(ws[:12]) + (f", ... ({len(ws)} words)" if len(ws) > 12 else f" ({len(ws)} words)")
            lines.append(f"  {c:>16}: {shown}")
        dropped = {k: v for k, v in getattr(self, "dropped", {}).items() if v}
        if dropped:
            lines.append("  dropped at construction: " + "; ".join(f"{k}: {', '.join(v[:8])}"
                                                                  + (" ..." if len(v) > 8 else "")
                                                                  for k, v in dropped.items()))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"KnowledgeableVerbalizer({ {c: len(ws) for c, ws in self.label_words.items()} }, refined={self.refined})"
