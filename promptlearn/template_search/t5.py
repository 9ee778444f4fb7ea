"""LM-BFF's template generation (Gao et al. 2021, ``tools/generate_template.py``) with a seq2seq model (T5).

``search.shapes`` are promptlearn templates with span markers ``<X>``, ``<Y>`` (``<Z>``) where the generator
writes text, and ``{mask}`` where the example's label word goes (default for a one-field task:
``{text_a} <X> {mask} <Y>`` and ``<X> {mask} <Y> {text_a}``; with two fields ``{text_a} <X> {mask} <Y>
{text_b}``).  Written for this project:

1. each few-shot **train** example becomes one generator input: the shape with its fields filled in (each cut
   to ``search.max_field_tokens`` generator tokens), ``{mask}`` replaced by the first label word of the
   example's class (the run's verbalizer) and the markers by T5's sentinels ``<extra_id_0>``, ``<extra_id_1>``...;
2. one beam search over the whole set (LM-BFF's decoding: a candidate's score is the sum over all examples of
   the generator's log-probability of the output, so one template is decoded for the task, not one per
   example), ``search.beam`` beams (LM-BFF: 100).  The output is ``<extra_id_0> X <extra_id_1> Y
   <extra_id_2>``: the decoder starts at ``<extra_id_0>``, sentinels can only come in order, a span is closed
   after ``search.max_span_tokens`` tokens, and the last one may also be closed by ``</s>``;
3. each finished beam's spans replace the markers of the shape -- a promptlearn template with the fields
   and ``{mask}`` of the shape; templates promptlearn's :class:`~promptlearn.template.Template` refuses are
   dropped (:func:`promptlearn.template_search.base.score_templates`);
4. the templates are ranked by the masked LM's zero-shot few-shot **dev** metric with the run's verbalizer
   (ties: lower few-shot train loss).  LM-BFF instead fine-tunes a model with each of the top templates and
   picks on dev after fine-tuning; that costs a fine-tuning run per template and is left to the user
   (the written list feeds PET's pattern list or a ``template=`` sweep).

The generator is ``search.generator`` (LM-BFF: ``t5-3b``; a local directory is used as is), loaded with
``AutoModelForSeq2SeqLM`` / ``AutoTokenizer``; it must have the ``<extra_id_N>`` sentinel tokens.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Sequence

import torch

from ..errors import ConfigError
from ..template import SEP_PIECE, SOFT_PIECE
from ..validation import Opt
from . import register_search_method
from .base import SearchContext, TemplateSearch

__all__ = ["T5Generation", "aggregated_beam_search", "default_shapes", "fill_shape", "sentinel_ids"]

log = logging.getLogger("promptlearn")

MARKERS = ("<X>", "<Y>", "<Z>")
_PUNCT = ".,!?;:"


def default_shapes(fields: Sequence[str]) -> list[str]:
    """LM-BFF's generation inputs for one sentence (both sides) or a pair (between the sentences)."""
    if len(fields) == 1:
        return [f"{{{fields[0]}}} <X> {{mask}} <Y>", f"<X> {{mask}} <Y> {{{fields[0]}}}"]
    rest = " ".join(f"{{{f}}}" for f in fields[1:])
    return [f"{{{fields[0]}}} <X> {{mask}} <Y> {rest}"]


def shape_markers(shape: str) -> list[str]:
    """The span markers of ``shape`` in order; each of ``<X>`` ``<Y>`` ``<Z>`` at most once, in that order."""
    found = [m for m in MARKERS if m in shape]
    if not found:
        raise ConfigError(f"search.shapes: {shape!r} has no span marker; fix: e.g. \"{{text_a}} <X> {{mask}} <Y>\"")
    for m in found:
        if shape.count(m) > 1:
            raise ConfigError(f"search.shapes: {shape!r} has {m} twice; fix: one <X> and one <Y>")
    if found != list(MARKERS[:len(found)]) or sorted(found, key=shape.index) != found:
        raise ConfigError(f"search.shapes: {shape!r}: the markers must be <X>, then <Y>, then <Z>, in this order "
                          "in the text; fix: e.g. \"{text_a} <X> {mask} <Y>\"")
    return found


def fill_shape(shape: str, spans: Sequence[str]) -> str:
    """The template text: each marker replaced by its span (braces escaped; an empty span takes the space before
    it away, as does a span that starts with punctuation)."""
    out = shape
    for marker, span in zip(shape_markers(shape), spans):
        span = " ".join(span.split()).replace("{", "{{").replace("}", "}}")
        if not span or span[0] in _PUNCT:
            out = re.sub(r"\s*" + re.escape(marker), lambda _: span, out, count=1)
        else:
            out = out.replace(marker, span, 1)
    return " ".join(out.split())


def sentinel_ids(tokenizer: Any, n: int, name: str) -> list[int]:
    """Ids of ``<extra_id_0>`` ... ``<extra_id_{n}>`` (each one token), or a ConfigError naming the fix."""
    ids = []
    for i in range(n + 1):
        enc = tokenizer(f"<extra_id_{i}>", add_special_tokens=False)["input_ids"]
        if len(enc) != 1 or enc[0] == tokenizer.unk_token_id:
            raise ConfigError(f"search.generator={name!r}: its tokenizer has no sentinel token <extra_id_{i}> "
                              "(T5's span-corruption markers); fix: search.generator=t5-3b or another T5 model")
        ids.append(int(enc[0]))
    return ids


@torch.no_grad()
def aggregated_beam_search(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                           sentinels: Sequence[int], eos_id: int, beam: int = 100, max_span_tokens: int = 8,
                           rows_per_forward: int = 256, banned: Sequence[int] = ()) -> list[tuple[list[int], float]]:
    """LM-BFF's decoding: beams over one output shared by all ``N`` inputs, scored by the sum over the inputs
    of the output's log-probability.  ``sentinels`` = ``<extra_id_0..n>`` for ``n`` spans.  Returns up to
    ``beam`` finished outputs ``(token ids, including <extra_id_0> and the closing token; summed log-prob)``,
    best first."""
    device = input_ids.device
    n_spans = len(sentinels) - 1
    N = input_ids.shape[0]
    encoder = model.get_encoder()
    hidden = torch.cat([encoder(input_ids=input_ids[s:s + rows_per_forward],
                                attention_mask=attention_mask[s:s + rows_per_forward]).last_hidden_state
                        for s in range(0, N, rows_per_forward)])
    start = model.config.decoder_start_token_id
    V = model.get_output_embeddings().weight.shape[0]
    base = torch.ones(V, dtype=torch.bool, device=device)
    base[list(banned) + list(sentinels) + [eos_id]] = False
    # a beam: (tokens, score, next sentinel index s: span s-1 is open, tokens in the open span)
    active = [([sentinels[0]], 0.0, 1, 0)]
    finished: list[tuple[list[int], float]] = []
    while active:
        dec = torch.tensor([[start] + t for t, *_ in active], device=device)  # all beams have the same length
        total = torch.zeros(len(active), V, device=device)
        rows = len(active) * N
        for s in range(0, rows, rows_per_forward):
            r = torch.arange(s, min(rows, s + rows_per_forward), device=device)
            b, ex = r // N, r % N
            logits = model(encoder_outputs=(hidden[ex],), attention_mask=attention_mask[ex],
                           decoder_input_ids=dec[b]).logits[:, -1].float()
            total.index_add_(0, b, torch.log_softmax(logits, -1))
        expansions = []
        for i, (tokens, score, nxt, span_len) in enumerate(active):
            allowed = base.clone() if span_len < max_span_tokens else torch.zeros_like(base)
            allowed[sentinels[nxt]] = True
            if nxt == n_spans:
                allowed[eos_id] = True
            lp = total[i].masked_fill(~allowed, float("-inf"))
            k = min(beam, int(allowed.sum()))
            vals, idx = lp.topk(k)
            for v, t in zip(vals.tolist(), idx.tolist()):
                expansions.append((score + v, tokens, t, nxt, span_len))
        expansions.sort(key=lambda e: -e[0])
        active = []
        for score, tokens, t, nxt, span_len in expansions:
            if len(active) >= beam:
                break
            closes = t == sentinels[nxt] or t == eos_id
            if closes and nxt == n_spans:
                finished.append((tokens + [t], score))
            elif closes:
                active.append((tokens + [t], score, nxt + 1, 0))
            else:
                active.append((tokens + [t], score, nxt, span_len + 1))
        finished.sort(key=lambda f: -f[1])
        finished = finished[:beam]
        if len(finished) >= beam and active and active[0][1] <= finished[-1][1]:
            break  # log-probabilities only add up: no open beam can still enter the top `beam`
    return finished


def split_spans(tokens: Sequence[int], sentinels: Sequence[int], eos_id: int) -> list[list[int]]:
    """The token ids of each span of a finished output ``<extra_id_0> X <extra_id_1> Y <extra_id_2>``."""
    spans, cur = [], None
    for t in tokens:
        if t in sentinels or t == eos_id:
            if cur is not None:
                spans.append(cur)
            cur = []
        else:
            cur.append(t)
    return spans


@register_search_method("t5")
class T5Generation(TemplateSearch):
    OPTIONS = (
        Opt("generator", str, "search.generator=t5-3b (or /path/to/t5)"),
        Opt("shapes", list, "search.shapes=['{text_a} <X> {mask} <Y>'] (or leave it out)", nullable=True),
        Opt("beam", int, "search.beam=100", min=1),
        Opt("max_span_tokens", int, "search.max_span_tokens=8", min=1),
        Opt("max_field_tokens", int, "search.max_field_tokens=128", min=1),
        Opt("rows_per_forward", int, "search.rows_per_forward=256", min=1),
    )

    def check(self, task: Any) -> None:
        from ..backbone import check_model_source
        from ..template import parse

        fields = list(task.fields or [])
        self.shapes = list(self.options.get("shapes") or default_shapes(fields))
        for shape in self.shapes:
            if not isinstance(shape, str):
                raise ConfigError(f"search.shapes: {shape!r} is not a string; fix: e.g. \"{{text_a}} <X> {{mask}} <Y>\"")
            markers = shape_markers(shape)
            pieces = parse(fill_shape(shape, ["x"] * len(markers)), "search.shapes")  # syntax, exactly one {mask}
            unknown = [p.value for p in pieces if p.kind == "field" and fields and p.value not in fields]
            if unknown:
                raise ConfigError(f"search.shapes: {shape!r}: field {{{unknown[0]}}} is not a field of task "
                                  f"{task.name!r}, which has {fields}; fix: use {{{fields[0]}}}")
            if any(p.kind in (SOFT_PIECE, SEP_PIECE) for p in pieces):
                raise ConfigError(f"search.shapes: {shape!r}: {{soft}} and {{sep}} cannot be generated around; fix: "
                                  "plain text, fields, {mask} and the markers <X> <Y>")
        name = str(self.options["generator"])
        check_model_source(name)  # a missing directory / unreachable Hub: now
        self.tokenizer = self._tokenizer(name)  # small; the sentinels are checked before any weights load
        for shape in self.shapes:
            sentinel_ids(self.tokenizer, len(shape_markers(shape)), name)
        if self.tokenizer.eos_token_id is None:
            raise ConfigError(f"search.generator={name!r}: its tokenizer has no end-of-sequence token; fix: a T5 "
                              "model such as search.generator=t5-3b")

    @staticmethod
    def _tokenizer(name: str) -> Any:
        from transformers import AutoTokenizer

        from ..backbone import _load_error

        try:
            return AutoTokenizer.from_pretrained(name)
        except Exception as exc:  # OSError, ValueError, connection errors...
            raise _load_error(name, "generator tokenizer", exc) from exc

    def _inputs(self, ctx: SearchContext, shape: str, tokenizer: Any, sentinels: list[int]) -> list[str]:
        from ..template import _apply_modifiers, parse

        markers = shape_markers(shape)
        sentinel_text = {m: f"<extra_id_{i}>" for i, m in enumerate(markers)}
        pieces = parse(fill_shape(shape, [f"\x00{i}\x00" for i in range(len(markers))]), "search.shapes")
        words = ctx.model.verbalizer.label_words  # {class: [words]}: the first word of each class
        labels = list(ctx.task.labels)
        limit = int(self.options["max_field_tokens"])
        texts = []
        for ex in ctx.few.train:
            parts = []
            for p in pieces:
                if p.kind == "text":
                    parts.append(re.sub("\x00(\\d)\x00", lambda m: " " + sentinel_text[markers[int(m.group(1))]] + " ",
                                        p.value))
                elif p.kind == "field":
                    value = _apply_modifiers(ex[p.value], p)
                    ids = tokenizer(value, add_special_tokens=False)["input_ids"]
                    parts.append(tokenizer.decode(ids[:limit], skip_special_tokens=True) if len(ids) > limit
                                 else value)
                elif p.kind == "mask":
                    w = words[labels[int(ex["label"])]]
                    parts.append(w[0] if isinstance(w, (list, tuple)) else str(w))
            texts.append(" ".join("".join(parts).split()))
        return texts

    def search(self, ctx: SearchContext) -> list[dict[str, Any]]:
        from transformers import AutoModelForSeq2SeqLM

        from ..backbone import _load_error

        name = str(self.options["generator"])
        tokenizer = getattr(self, "tokenizer", None) or self._tokenizer(name)
        try:
            generator = AutoModelForSeq2SeqLM.from_pretrained(name)
        except Exception as exc:  # OSError, ValueError, connection errors...
            raise _load_error(name, "seq2seq generator", exc) from exc
        generator.to(ctx.device).eval()
        eos = tokenizer.eos_token_id
        banned = [i for i in (tokenizer.pad_token_id, tokenizer.unk_token_id) if i is not None]
        banned += [i for i in tokenizer.all_special_ids if i != eos]
        banned += list(range(len(tokenizer), generator.get_output_embeddings().weight.shape[0]))  # padded rows
        out = []
        t0 = time.perf_counter()
        for shape in self.shapes:
            n = len(shape_markers(shape))
            sentinels = sentinel_ids(tokenizer, n, name)
            texts = self._inputs(ctx, shape, tokenizer, sentinels)
            enc = tokenizer(texts, padding=True, return_tensors="pt").to(ctx.device)
            beams = aggregated_beam_search(generator, enc["input_ids"], enc["attention_mask"], sentinels, eos,
                                           beam=int(self.options["beam"]),
                                           max_span_tokens=int(self.options["max_span_tokens"]),
                                           rows_per_forward=int(self.options["rows_per_forward"]), banned=banned)
            log.info("t5: shape %r: %d outputs (%.1fs); e.g. generator input %r", shape, len(beams),
                     time.perf_counter() - t0, texts[0])
            for tokens, score in beams:
                spans = [tokenizer.decode(s, skip_special_tokens=True).strip()
                         for s in split_spans(tokens, sentinels, eos)]
                out.append({"template": fill_shape(shape, spans), "source": f"t5 {name}: {shape}",
                            "scores": {"generator_logprob": float(score) / max(1, len(texts))},
                            "spans": spans})
        del generator
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
        self.history = [{"seconds": round(time.perf_counter() - t0, 2), "outputs": len(out)}]
        return out
