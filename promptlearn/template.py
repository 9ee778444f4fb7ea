"""Templates: a small, safely parsed language that turns an example into masked-LM input.

Syntax (one line of text; see README "Template language"):

* literal text is copied as is;
* ``{text_a}``, ``{question}``, ... insert the example field of that name;
  modifiers follow ``|``: ``shortenable`` (this slot may be cut to fit ``max_length``),
  ``lower`` (lowercase the first letter), ``upper`` (uppercase the first letter),
  ``nopunct`` (drop final punctuation); e.g. ``{text_b|lower|shortenable}``;
* ``{mask}`` -- exactly one per template, the position the verbalizer reads;
* ``{sep}`` -- ends the first segment; what follows is the second segment of a sentence
  pair (the tokenizer's own pair layout and ``token_type_ids`` are used);
* ``{soft}`` -- one trainable pseudo-token; ``{soft*3}`` three of them; ``{soft:It was}``
  one per sub-token of "It was", initialised from their embeddings; ``{soft|id=p}`` shares
  the parameters of every soft slot with the same id;
* ``{{`` and ``}}`` are literal braces.

Nothing is ``eval``-ed. Every error names the template, the position and the fix.

Truncation: when an encoded example is longer than ``max_length`` tokens, tokens are cut from
the end of the longest *shortenable* slot, one at a time, until it fits.  Hard text, soft tokens
and the mask are never cut.  A template that marks no slot shortenable treats every field slot
as shortenable.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .errors import PromptlearnError

__all__ = ["Template", "TemplateError", "Piece", "SoftSpec", "resolve_prefix_space", "is_space_sensitive"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FIELD_MODIFIERS = {"shortenable", "lower", "upper", "nopunct", "cutfirst"}
_RESERVED = {"mask", "sep", "soft"}
# piece kinds, for code outside this module (which must not spell a registry member's name, e.g. the soft verbalizer)
SOFT_PIECE, SEP_PIECE = "soft", "sep"


class TemplateError(PromptlearnError, ValueError):
    """A template that cannot be parsed or cannot encode an example."""


@dataclass(frozen=True)
class Piece:
    """One parsed element of a template."""

    kind: str  # "text" | "field" | "mask" | "sep" | "soft"
    value: str = ""  # literal text, field name, or soft init text
    col: int = 0  # 0-based position in the template string
    shortenable: bool = False
    lower: bool = False
    upper: bool = False
    nopunct: bool = False
    cutfirst: bool = False  # shortenable, and cut before every other slot (demonstrations before the query)
    n: int = 1  # number of soft tokens (kind == "soft")
    soft_id: str | None = None


@dataclass(frozen=True)
class SoftSpec:
    """Soft pseudo-tokens declared by a template, after sharing is resolved.

    ``num_tokens`` distinct trainable vectors; ``init_token_ids[i]`` is the vocabulary id whose
    embedding initialises vector ``i`` (``None``: random initialisation).
    """

    num_tokens: int
    init_token_ids: tuple[int | None, ...]


def _error(template: str, name: str | None, col: int, msg: str, fix: str) -> TemplateError:
    label = f"template {name!r}" if name else "template"
    caret = " " * (col + 3) + "^"
    return TemplateError(f"{label}: {msg} (at position {col})\n  {template!r}\n{caret}\n  fix: {fix}")


def parse(text: str, name: str | None = None, require_mask: bool = True) -> list[Piece]:
    """Parse template ``text`` into pieces (no tokenizer needed).

    ``require_mask=False`` accepts templates without ``{mask}`` (plain classifier inputs, e.g.
    ``{text_a}{sep}{text_b}`` for head fine-tuning); they encode ``mask_pos`` 0, the first token.
    """
    if not isinstance(text, str) or not text.strip():
        raise TemplateError(f"template {name!r}: empty template; fix: write e.g. '{{text_a}} It was {{mask}}.'")
    pieces: list[Piece] = []
    buf: list[str] = []
    buf_col = 0
    i = 0

    def flush() -> None:
        if buf:
            pieces.append(Piece("text", "".join(buf), buf_col))
            buf.clear()

    while i < len(text):
        ch = text[i]
        if ch == "{" and text.startswith("{{", i):
            if not buf:
                buf_col = i
            buf.append("{")
            i += 2
            continue
        if ch == "}":
            if text.startswith("}}", i):
                if not buf:
                    buf_col = i
                buf.append("}")
                i += 2
                continue
            raise _error(text, name, i, "unmatched '}'", "write '}}' for a literal brace or remove it")
        if ch == "{":
            end = text.find("}", i + 1)
            nxt = text.find("{", i + 1)
            if end < 0 or (0 <= nxt < end):
                raise _error(text, name, i, "'{' is never closed", "close the placeholder with '}' or write '{{' for a literal brace")
            flush()
            pieces.append(_parse_placeholder(text, name, i, text[i + 1 : end]))
            i = end + 1
            continue
        if not buf:
            buf_col = i
        buf.append(ch)
        i += 1
    flush()

    masks = [p for p in pieces if p.kind == "mask"]
    if len(masks) > 1 or (require_mask and not masks):
        col = masks[1].col if len(masks) > 1 else len(text)
        what = "no {mask}" if not masks else f"{len(masks)} {{mask}} placeholders"
        raise _error(text, name, col, f"a template needs exactly one {{mask}}, found {what}",
                     "keep exactly one {mask} where the label word goes")
    seps = [p for p in pieces if p.kind == "sep"]
    if len(seps) > 1:
        raise _error(text, name, seps[1].col, "more than one {sep}", "use one {sep} to split a sentence pair into two segments")
    if seps and (seps[0] is pieces[0] or seps[0] is pieces[-1]):
        raise _error(text, name, seps[0].col, "{sep} at the start or end leaves an empty segment", "put {sep} between the two segments")
    return pieces


def _parse_placeholder(text: str, name: str | None, col: int, body: str) -> Piece:
    parts = [p.strip() for p in body.split("|")]
    head, mods = parts[0], parts[1:]
    init = None
    if ":" in head:
        head, init = head.split(":", 1)
        head = head.strip()
    count = 1
    if "*" in head:
        head, cnt = (s.strip() for s in head.split("*", 1))
        if not cnt.isdigit() or int(cnt) < 1:
            raise _error(text, name, col, f"bad repeat count {cnt!r} in {{{body}}}", "write e.g. {soft*3} with a positive integer")
        count = int(cnt)
    if not head:
        raise _error(text, name, col, "empty placeholder {}", "name a field like {text_a}, or use {mask}, {sep}, {soft}; write '{{' for a literal brace")
    if not _IDENT.match(head):
        raise _error(text, name, col, f"{{{body}}} is not a valid placeholder name",
                     "field names are identifiers (letters, digits, '_'), e.g. {text_a} or {question}")
    if head != "soft" and (count != 1 or init is not None):
        raise _error(text, name, col, f"'*N' and ':init' are only allowed on {{soft}}, not on {{{head}}}", "remove them")
    if head in ("mask", "sep"):
        if mods:
            raise _error(text, name, col, f"{{{head}}} takes no modifiers", f"write {{{head}}}")
        return Piece(head, col=col)
    if head == "soft":
        soft_id = None
        for m in mods:
            key, eq, val = m.partition("=")
            if key.strip() != "id" or not eq or not val.strip():
                raise _error(text, name, col, f"unknown soft-token option {m!r}", "the only option is id=NAME, e.g. {soft*2|id=p1}")
            soft_id = val.strip()
        if init is not None and not init.strip():
            raise _error(text, name, col, "empty init text in {soft:}", "give words, e.g. {soft:It was}, or drop the ':'")
        if init is not None and count != 1:
            raise _error(text, name, col, "use either {soft*N} or {soft:init words}, not both",
                         "the number of tokens of an initialised soft slot is the number of sub-tokens of its init text")
        return Piece("soft", (init or "").strip(), col=col, n=count, soft_id=soft_id)
    flags = {}
    for m in mods:
        if m not in _FIELD_MODIFIERS:
            raise _error(text, name, col, f"unknown modifier {m!r} on {{{head}}}",
                         f"use one of {sorted(_FIELD_MODIFIERS)}, e.g. {{{head}|shortenable}}")
        flags[m] = True
    if flags.get("lower") and flags.get("upper"):
        raise _error(text, name, col, f"{{{body}}} has both 'lower' and 'upper'", "keep one of them")
    return Piece("field", head, col=col, **flags)


def _apply_modifiers(value: Any, piece: Piece) -> str:
    s = "" if value is None else str(value).strip()
    if piece.nopunct:
        s = s.rstrip(string.punctuation + " ")
    if s and piece.lower:
        s = s[0].lower() + s[1:]
    if s and piece.upper:
        s = s[0].upper() + s[1:]
    return s


class _Layout:
    """Where the tokenizer puts its special tokens for one and two segments (probed once)."""

    def __init__(self, tokenizer: Any):
        self.single = self._probe(tokenizer, ("a",))
        self.pair = self._probe(tokenizer, ("a", "b"))

    @staticmethod
    def _probe(tokenizer: Any, texts: tuple[str, ...]) -> list[tuple[str, int, int]]:
        enc = tokenizer(*texts, add_special_tokens=True, return_special_tokens_mask=True, return_token_type_ids=True)
        ids, special, types = enc["input_ids"], enc["special_tokens_mask"], enc["token_type_ids"]
        layout: list[tuple[str, int, int]] = []  # ("special", id, type) | ("seg", index, type)
        seg = -1
        prev_special = True
        for tok, sp, tt in zip(ids, special, types):
            if sp:
                layout.append(("special", tok, tt))
            elif prev_special:
                seg += 1
                layout.append(("seg", min(seg, len(texts) - 1), tt))
            prev_special = bool(sp)
        return layout

    def n_special(self, pair: bool) -> int:
        return sum(1 for k, *_ in (self.pair if pair else self.single) if k == "special")


class Template:
    """A parsed template bound to a tokenizer.

    >>> t = Template("{text_a|shortenable} It was {mask}.", tokenizer, max_length=128)
    >>> enc = t.encode({"text_a": "A gorgeous film."})
    >>> enc["input_ids"][enc["mask_pos"]] == tokenizer.mask_token_id
    True
    """

    def __init__(self, text: str, tokenizer: Any, max_length: int | None = 128, name: str | None = None,
                 truncate: str = "tail", require_mask: bool = True, reserve: int = 0):
        if truncate not in ("tail", "head"):
            raise TemplateError(f"template {name!r}: truncate must be 'tail' or 'head', got {truncate!r}")
        if tokenizer.mask_token_id is None:
            raise TemplateError(f"template {name!r}: the tokenizer {type(tokenizer).__name__} has no mask token; "
                                "use a masked-LM tokenizer (BERT, RoBERTa, ALBERT, ELECTRA, DistilBERT, ...)")
        self.text = text
        self.name = name
        self.tokenizer = tokenizer
        self.truncate = truncate
        # tokens kept free within max_length for masks inserted after encoding (exact multi-token label
        # words: the one {mask} becomes n masks; see promptlearn.multi_token)
        self.reserve = int(reserve)
        self.pieces = parse(text, name, require_mask)
        self.has_mask = any(p.kind == "mask" for p in self.pieces)
        self.max_length = effective_max_length(tokenizer, max_length)
        self.is_pair = any(p.kind == "sep" for p in self.pieces)
        self._layout = _Layout(tokenizer)
        fields = [p for p in self.pieces if p.kind == "field"]
        self._implicit_shortenable = not any(p.shortenable for p in fields)
        self.fields: list[str] = list(dict.fromkeys(p.value for p in fields))
        self.mask_has_leading_space = self._mask_leading_space()
        self.soft_spec, self._soft_slots = self._resolve_soft()
        self.uses_token_type_ids = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
        budget = self.max_length - self._layout.n_special(self.is_pair) - self.reserve
        fixed = self._fixed_length()
        if fixed > budget:
            raise TemplateError(
                f"template {name!r}: its hard text, soft tokens and mask take {fixed} tokens, but only {budget} fit "
                f"in max_length={self.max_length} after special tokens; fix: shorten the template or raise max_length")

    # ------------------------------------------------------------------ introspection
    @property
    def has_soft_tokens(self) -> bool:
        return self.soft_spec.num_tokens > 0

    def __repr__(self) -> str:
        return f"Template({self.text!r}, max_length={self.max_length})"

    def config(self) -> dict[str, Any]:
        """What rebuilds this template with a tokenizer: ``Template(**config, tokenizer=...)``."""
        cfg = {"text": self.text, "max_length": self.max_length, "truncate": self.truncate, "name": self.name,
               "require_mask": self.has_mask}
        if self.reserve:
            cfg["reserve"] = self.reserve
        return cfg

    def reserved(self, n: int) -> "Template":
        """This template if it keeps at least ``n`` tokens free, else a copy that does (same text and tokenizer)."""
        if n <= self.reserve:
            return self
        return Template(tokenizer=self.tokenizer, **{**self.config(), "reserve": int(n)})

    def _mask_leading_space(self) -> bool:
        for i, p in enumerate(self.pieces):
            if p.kind == "mask":
                if i == 0 or self.pieces[i - 1].kind == "sep":
                    return False
                prev = self.pieces[i - 1]
                return prev.kind == "text" and prev.value[-1:].isspace()
        return False

    def _resolve_soft(self) -> tuple[SoftSpec, list[list[int]]]:
        """Map every soft slot to indices of distinct soft vectors (sharing by id)."""
        init_ids: list[int | None] = []
        by_id: dict[str, list[int]] = {}
        slots: list[list[int]] = []
        for p in self.pieces:
            if p.kind != "soft":
                continue
            if p.value:
                ids = self.tokenizer(" " + p.value if is_space_sensitive(self.tokenizer) else p.value,
                                     add_special_tokens=False)["input_ids"]
                if not ids:
                    raise _error(self.text, self.name, p.col, f"init text {p.value!r} tokenizes to nothing", "use real words")
                inits: list[int | None] = list(ids)
            else:
                inits = [None] * p.n
            if p.soft_id is not None and p.soft_id in by_id:
                idx = by_id[p.soft_id]
                if len(idx) != len(inits):
                    raise _error(self.text, self.name, p.col,
                                 f"soft id {p.soft_id!r} is used with {len(idx)} and {len(inits)} tokens",
                                 "slots that share an id must have the same length")
            else:
                idx = list(range(len(init_ids), len(init_ids) + len(inits)))
                init_ids.extend(inits)
                if p.soft_id is not None:
                    by_id[p.soft_id] = idx
            slots.append(idx)
        return SoftSpec(len(init_ids), tuple(init_ids)), slots

    def _fixed_length(self) -> int:
        # hard text is measured on its own; that is exact up to merges across piece borders
        n = int(self.has_mask)
        for p in self.pieces:
            if p.kind == "text" and p.value.strip():
                n += len(self.tokenizer(p.value.strip(), add_special_tokens=False)["input_ids"])
        n += sum(len(s) for s in self._soft_slots)
        return n

    # ------------------------------------------------------------------ rendering
    def _piece_strings(self, example: Mapping[str, Any]) -> list[str]:
        """Strings for every text/field piece with whitespace moved to the front of the next piece.

        BPE tokenizers (RoBERTa, GPT-2) encode a word differently with and without a leading
        space, so each piece is tokenised with exactly the whitespace that precedes it in the
        rendered text; the first piece of a segment never has one.
        """
        raw: list[str] = []
        for p in self.pieces:
            if p.kind == "text":
                raw.append(p.value)
            elif p.kind == "field":
                if p.value not in example:
                    raise TemplateError(
                        f"template {self.name!r}: the example has no field {p.value!r} (at position {p.col}); "
                        f"it has {sorted(k for k in example if not k.startswith('_'))}; fix: use one of those "
                        f"names or map the column to {p.value!r} in the task's `fields`")
                raw.append(_apply_modifiers(example[p.value], p))
            else:
                raw.append("")
        out: list[str] = []
        carry = False  # pending whitespace from the previous piece
        for p, s in zip(self.pieces, raw):
            if p.kind == "sep":
                carry = False
                out.append("")
                continue
            if p.kind in ("mask", "soft"):
                out.append(" " if carry else "")
                carry = False
                continue
            lead = carry or (s[:1].isspace())
            core = s.strip()
            trail = s[-1:].isspace() if s else False
            if not core:
                out.append("")
                carry = lead or trail or carry
                continue
            out.append((" " if lead else "") + core)
            carry = trail
        # no leading space at the start of a segment
        start = True
        for i, p in enumerate(self.pieces):
            if p.kind == "sep":
                start = True
                continue
            if start and out[i]:
                out[i] = out[i].lstrip()
                start = False
            elif start and p.kind in ("mask", "soft"):
                start = False
        return out

    def render(self, example: Mapping[str, Any]) -> str:
        """Human-readable text of the filled template (before tokenization and truncation)."""
        strings = self._piece_strings(example)
        soft_iter = iter(self._soft_slots)
        parts = []
        for p, s in zip(self.pieces, strings):
            if p.kind == "mask":
                parts.append(s + (self.tokenizer.mask_token or "[MASK]"))
            elif p.kind == "soft":
                parts.append(s + "".join(f"[soft{i}]" for i in next(soft_iter)))
            elif p.kind == "sep":
                parts.append(" " + (self.tokenizer.sep_token or "[SEP]") + " ")
            else:
                parts.append(s)
        return "".join(parts)

    # ------------------------------------------------------------------ encoding
    def encode(self, example: Mapping[str, Any]) -> dict[str, Any]:
        """Encode one example; see :meth:`encode_batch` for the returned keys."""
        batch = {k: [v] for k, v in example.items()}
        return {k: v[0] for k, v in self.encode_batch(batch).items()}

    def encode_batch(self, batch: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
        """Encode a batch (dict of columns, as ``datasets.map(batched=True)`` passes it).

        Returns columns ``input_ids``, ``mask_pos`` (index of the mask), ``n_truncated`` (tokens
        cut), plus ``token_type_ids`` if the tokenizer uses them and ``soft_ids`` (0 = regular
        token, i > 0 = soft vector i-1) if the template has soft tokens.
        """
        n = len(next(iter(batch.values()))) if batch else 0
        keys = list(batch.keys())
        strings = [self._piece_strings({k: batch[k][j] for k in keys}) for j in range(n)]
        # tokenise column-wise: one fast-tokenizer call per piece
        piece_ids: list[list[list[int]]] = []
        for i, p in enumerate(self.pieces):
            if p.kind in ("text", "field"):
                col = [s[i] for s in strings]
                nonempty = [j for j, s in enumerate(col) if s]
                toks = [[] for _ in col]
                if nonempty:
                    enc = self.tokenizer([col[j] for j in nonempty], add_special_tokens=False, verbose=False)["input_ids"]
                    for j, ids in zip(nonempty, enc):
                        toks[j] = list(ids)
                piece_ids.append(toks)
            else:
                piece_ids.append([[] for _ in range(n)])
        out: dict[str, list[Any]] = {"input_ids": [], "mask_pos": [], "n_truncated": []}
        if self.uses_token_type_ids:
            out["token_type_ids"] = []
        if self.has_soft_tokens:
            out["soft_ids"] = []
        for j in range(n):
            enc = self._assemble([piece_ids[i][j] for i in range(len(self.pieces))])
            for k, v in enc.items():
                out[k].append(v)
        return out

    def _shortenable(self, p: Piece) -> bool:
        return p.kind == "field" and (p.shortenable or p.cutfirst or self._implicit_shortenable)

    def _assemble(self, ids_per_piece: list[list[int]]) -> dict[str, Any]:
        ids_per_piece = [list(x) for x in ids_per_piece]
        lengths = [len(x) for x in ids_per_piece]
        soft_iter = iter(self._soft_slots)
        soft_lens = [len(next(soft_iter)) if p.kind == "soft" else 0 for p in self.pieces]
        total = (sum(lengths) + sum(soft_lens) + int(self.has_mask) + self._layout.n_special(self.is_pair)
                 + self.reserve)
        excess = total - self.max_length
        cut = 0
        if excess > 0:
            cand = [i for i, p in enumerate(self.pieces) if self._shortenable(p)]
            room = sum(lengths[i] for i in cand)
            if room < excess:
                raise TemplateError(
                    f"template {self.name!r}: an example needs {total} tokens but max_length is {self.max_length} and "
                    f"the shortenable slots hold only {room}; fix: mark more slots |shortenable or raise max_length")
            first = [i for i in cand if self.pieces[i].cutfirst]
            while cut < excess:  # cut the longest shortenable slot, one token at a time (|cutfirst slots first)
                pool = [c for c in first if lengths[c] > 0] or cand
                i = max(pool, key=lambda c: (lengths[c], -c))
                lengths[i] -= 1
                cut += 1
            for i in cand:
                if lengths[i] < len(ids_per_piece[i]):
                    x = ids_per_piece[i]
                    # a |cutfirst slot (a demonstration) loses its beginning: its end holds its label word
                    tail = self.truncate == "tail" and not self.pieces[i].cutfirst
                    ids_per_piece[i] = x[: lengths[i]] if tail else x[len(x) - lengths[i]:]
        segs: list[list[tuple[int, int]]] = [[]]  # (token id, soft index or 0)
        soft_iter = iter(self._soft_slots)
        unk = self.tokenizer.unk_token_id
        placeholder = unk if unk is not None else self.tokenizer.mask_token_id
        for p, ids in zip(self.pieces, ids_per_piece):
            if p.kind == "sep":
                segs.append([])
            elif p.kind == "mask":
                segs[-1].append((self.tokenizer.mask_token_id, -1))
            elif p.kind == "soft":
                segs[-1].extend((placeholder, k + 1) for k in next(soft_iter))
            else:
                segs[-1].extend((t, 0) for t in ids)
        layout = self._layout.pair if self.is_pair else self._layout.single
        input_ids: list[int] = []
        types: list[int] = []
        soft: list[int] = []
        mask_pos = -1
        for kind, val, tt in layout:
            if kind == "special":
                input_ids.append(val)
                types.append(tt)
                soft.append(0)
            else:
                for tok, s in segs[val]:
                    if s == -1:
                        mask_pos = len(input_ids)
                    input_ids.append(tok)
                    types.append(tt)
                    soft.append(max(s, 0))
        out: dict[str, Any] = {"input_ids": input_ids, "mask_pos": max(mask_pos, 0), "n_truncated": cut}
        if self.uses_token_type_ids:
            out["token_type_ids"] = types
        if self.has_soft_tokens:
            out["soft_ids"] = soft
        return out


def is_space_sensitive(tokenizer: Any) -> bool:
    """True for tokenizers (RoBERTa/GPT-2 byte-level BPE) that encode ' word' and 'word' differently."""
    cached = getattr(tokenizer, "_promptlearn_space_sensitive", None)
    if cached is None:
        a = tokenizer(" great", add_special_tokens=False)["input_ids"]
        b = tokenizer("great", add_special_tokens=False)["input_ids"]
        cached = a != b
        try:
            tokenizer._promptlearn_space_sensitive = cached
        except Exception:  # pragma: no cover - exotic tokenizer objects
            pass
    return cached


def resolve_prefix_space(option: bool | str, tokenizer: Any, template: "Template | None" = None) -> bool:
    """Whether label words are tokenised with a leading space -- decided here and nowhere else.

    ``True``/``False`` are taken as given.  ``"auto"``: only tokenizers that encode ``' word'`` and
    ``'word'`` differently (byte-level BPE: RoBERTa, GPT-2) get a space, and then only if the mask
    follows one in the template (``It was {mask}``: yes; ``{mask}: {text_a}`` or ``{mask}`` right
    after ``{sep}``: no).  Without a template the usual case, a mask after a space, is assumed;
    :class:`~promptlearn.prompt_model.PromptModel` re-binds the verbalizer to its template.
    """
    if isinstance(option, str):
        if option.lower() in ("true", "false"):
            return option.lower() == "true"
        if option != "auto":
            raise TemplateError(f"prefix_space must be auto, true or false, got {option!r}")
        if not is_space_sensitive(tokenizer):
            return False
        return True if template is None else bool(template.mask_has_leading_space)
    return bool(option)


def effective_max_length(tokenizer: Any, requested: int | None) -> int:
    """``requested`` capped by the tokenizer's ``model_max_length`` (when that is a real limit)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is None or limit > 100_000:
        limit = None
    if requested is None:
        if limit is None:
            raise TemplateError("max_length is not set and the tokenizer declares no model_max_length; set max_length")
        return int(limit)
    return int(min(requested, limit)) if limit is not None else int(requested)


def iter_fields(text: str) -> Iterable[str]:
    """Field names used by template ``text`` (parsing only)."""
    return [p.value for p in parse(text) if p.kind == "field"]
