"""AutoPrompt (Shin et al. 2020): gradient-guided discrete trigger tokens, on the run's masked LM.

``search.template`` is a template with trigger markers ``[T]`` (default ``{text_a|shortenable} [T] [T] [T]
{mask}.``: the task's first field, ``search.n_triggers`` triggers, the mask; a task with more fields gets them
after the mask).  The label words are the run's verbalizer (fixed); the loss is the strategies' loss, the
cross-entropy of the verbalizer's class scores on the few-shot **train** set.  Written for this project:

1. the triggers start as ``search.init_token`` (``the``; AutoPrompt starts from ``[MASK]``, but a real word
   keeps every intermediate template writable);
2. each iteration, one pass over the train set gives the gradient of the mean loss w.r.t. the input
   embedding at every trigger position (a hook on the LM's input-embedding layer; no weight gets a gradient);
3. HotFlip: per position, the ``search.top_k`` tokens ``w`` with the largest ``-e_w . g`` (first-order loss
   decrease) among the allowed ones -- single-token whole words that tokenise back to themselves in that
   position (:func:`promptlearn.label_search.candidate_tokens`, with the template's leading-space rule),
   neither special tokens nor label words;
4. every single flip (position x candidate; AutoPrompt flips one random position per iteration -- scoring all
   positions at once needs fewer iterations) and the current triggers are scored in one batched pass: each
   data batch of the one batcher is expanded to ``search.candidate_batch`` trigger variants per forward, run
   through the one inference loop (:func:`promptlearn.inference.infer`), one mean loss per variant;
5. the best flip is kept if it lowers the train loss (else the search has converged and stops), and the new
   triggers are scored on the few-shot **dev** set; after ``search.iterations`` the trigger sets the search
   moved to are ranked by the task's dev metric (ties: lower train loss; the starting triggers are only a
   result when no flip was ever kept, as in AutoPrompt).  The test split is never read.

The triggers are written as words into a plain template (``{text_a|shortenable} w1 w2 w3 {mask}.``); every
template returned is checked to encode the few-shot examples to exactly the token ids that were searched.
"""

from __future__ import annotations

import logging
import re
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..template import SOFT_PIECE
from ..validation import Opt
from . import register_search_method
from .base import SearchContext, TemplateSearch

__all__ = ["AutoPrompt", "TriggerTemplate", "default_trigger_template"]

log = logging.getLogger("promptlearn")

MARKER = "[T]"
_ADJACENT = re.compile(r"(?<![\s}])\[T\]|\[T\](?![\s{.,!?;:]|$)")


def default_trigger_template(fields: list[str], n: int) -> str:
    """``{f0|shortenable} [T]*n {mask}.`` (more fields follow the mask)."""
    triggers = " ".join([MARKER] * n)
    rest = "".join(f" {{{f}|shortenable}}" for f in fields[1:])
    return f"{{{fields[0]}|shortenable}} {triggers} {{mask}}" + (rest if rest else ".")


class TriggerTemplate:
    """A template with ``[T]`` markers: encoded with a soft slot per marker (which marks the positions), filled
    with trigger token ids, and written back as text with the trigger words in place of the markers."""

    def __init__(self, text: str, task_fields: list[str] | None = None):
        from ..template import parse

        self.text = text
        n = text.count(MARKER)
        if n < 1:
            raise ConfigError(f"search.template={text!r} has no trigger marker {MARKER}; fix: "
                              "search.template=\"{text_a|shortenable} [T] [T] [T] {mask}.\"")
        if "{soft" in text:
            raise ConfigError(f"search.template={text!r} has soft tokens; trigger search writes hard words; fix: "
                              f"use {MARKER} markers instead of {{soft}}")
        bad = _ADJACENT.search(text)
        if bad:
            raise ConfigError(f"search.template={text!r}: the {MARKER} at position {bad.start()} touches other "
                              "text, so the trigger word would merge with it when the template is tokenised; fix: "
                              f"put a space on both sides of every {MARKER}")
        self.n = n
        self.soft_text = text.replace(MARKER, "{soft}")
        self.pieces = parse(self.soft_text, "search.template")  # syntax and exactly one {mask}
        fields = [p.value for p in self.pieces if p.kind == "field"]
        unknown = [f for f in fields if task_fields and f not in task_fields]
        if unknown:
            raise ConfigError(f"search.template={text!r}: field {{{unknown[0]}}} is not a field of the task, which "
                              f"has {task_fields}; fix: use {{{task_fields[0]}}}")
        # whether each trigger slot follows whitespace (byte-level BPE: the word then needs its leading space)
        self.after_space = []
        for i, p in enumerate(self.pieces):
            if p.kind == SOFT_PIECE:
                prev = self.pieces[i - 1] if i else None
                self.after_space.append(prev is not None and prev.kind == "text" and prev.value[-1:].isspace())

    def encoder(self, tokenizer: Any, max_length: int) -> Any:
        """The promptlearn Template that encodes examples with a placeholder (``soft_ids`` j+1) per trigger."""
        from ..template import Template

        return Template(self.soft_text, tokenizer, max_length=max_length, name="search.template")

    def render(self, words: list[str]) -> str:
        """The plain template text with ``words`` in place of the markers (braces escaped)."""
        it = iter(w.replace("{", "{{").replace("}", "}}") for w in words)
        return re.sub(re.escape(MARKER), lambda _: next(it), self.text)


def fill(input_ids: torch.Tensor, soft_ids: torch.Tensor, triggers: torch.Tensor) -> torch.Tensor:
    """``[M, B, L]``: the batch's ids with trigger position j set to ``triggers[m, j]`` for every variant m."""
    picked = triggers[:, (soft_ids - 1).clamp(min=0)]  # [M, B, L]
    return torch.where(soft_ids.unsqueeze(0) > 0, picked, input_ids.unsqueeze(0))


@register_search_method("autoprompt")
class AutoPrompt(TemplateSearch):
    OPTIONS = (
        Opt("template", str, "search.template=\"{text_a|shortenable} [T] [T] [T] {mask}.\" (or leave it out)",
            nullable=True),
        Opt("n_triggers", int, "search.n_triggers=3", min=1),
        Opt("init_token", str, "search.init_token=the"),
        Opt("iterations", int, "search.iterations=10", min=1),
        Opt("top_k", int, "search.top_k=10", min=1),
        Opt("candidate_batch", int, "search.candidate_batch=16", min=1),
    )

    def check(self, task: Any) -> None:
        fields = list(task.fields or [])
        text = self.options.get("template") or default_trigger_template(fields, int(self.options["n_triggers"]))
        self.trigger_template = TriggerTemplate(text, fields)

    # ------------------------------------------------------------------ pieces
    def _allowed(self, ctx: SearchContext) -> torch.Tensor:
        """``[n, V]`` bool: the tokens each trigger position may take."""
        from ..label_search import candidate_tokens
        from ..template import is_space_sensitive

        tok = ctx.tokenizer
        V = ctx.model.backbone.get_input_embeddings().weight.shape[0]
        label_ids = set(ctx.model.verbalizer.token_ids.view(-1).tolist())
        rows, cache = [], {}
        for after_space in self.trigger_template.after_space:
            key = bool(after_space and is_space_sensitive(tok))
            if key not in cache:
                ids, _ = candidate_tokens(tok, key)
                row = torch.zeros(V, dtype=torch.bool)
                row[torch.as_tensor([i for i in ids.tolist() if i not in label_ids and i < V], dtype=torch.long)] = True
                cache[key] = row
            rows.append(cache[key])
        allowed = torch.stack(rows)
        if int(allowed.sum(1).min()) < 2:
            raise ConfigError("fewer than 2 candidate trigger words in the vocabulary (single-token whole words "
                              "other than the label words); fix: a model with a real vocabulary")
        return allowed

    def _init_ids(self, ctx: SearchContext) -> torch.Tensor:
        from ..template import is_space_sensitive

        tok, word = ctx.tokenizer, str(self.options["init_token"])
        ids = []
        for after_space in self.trigger_template.after_space:
            e = tok((" " + word) if after_space and is_space_sensitive(tok) else word, add_special_tokens=False)
            if len(e["input_ids"]) != 1:
                raise ConfigError(f"search.init_token={word!r} is {len(e['input_ids'])} tokens for this tokenizer; "
                                  "fix: one whole word that is a single token, e.g. search.init_token=the")
            ids.append(int(e["input_ids"][0]))
        return torch.tensor(ids, dtype=torch.long)

    @staticmethod
    def _model_inputs(batch: dict[str, torch.Tensor], input_ids: torch.Tensor, m: int) -> dict[str, torch.Tensor]:
        out = {"input_ids": input_ids, "attention_mask": batch["attention_mask"].repeat(m, 1),
               "mask_pos": batch["mask_pos"].repeat(m)}
        if "token_type_ids" in batch:
            out["token_type_ids"] = batch["token_type_ids"].repeat(m, 1)
        return out

    def score_triggers(self, ctx: SearchContext, encoded: Any, triggers: torch.Tensor) -> dict[str, np.ndarray]:
        """Class log-scores ``[N, M, C]`` of every example under each of the ``M`` trigger variants
        (``triggers`` ``[M, n]``), and per variant the mean loss ``[M]`` and accuracy ``[M]``: the one batcher
        and the one inference loop, ``search.candidate_batch`` variants per forward."""
        from ..data import Batches
        from ..inference import infer

        model, chunk = ctx.model, int(self.options["candidate_batch"])
        triggers = triggers.to(ctx.device)

        def forward(**batch: torch.Tensor) -> SimpleNamespace:
            parts = []
            for s in range(0, triggers.shape[0], chunk):
                t = triggers[s:s + chunk]
                ids = fill(batch["input_ids"], batch["soft_ids"], t).flatten(0, 1)
                logits = model(**self._model_inputs(batch, ids, t.shape[0])).logits
                parts.append(logits.view(t.shape[0], -1, logits.shape[-1]).transpose(0, 1))  # [B, m, C]
            return SimpleNamespace(variant_logits=torch.cat(parts, 1))

        batches = Batches(encoded, ctx.batch_size, ctx.tokenizer.pad_token_id, order="length")
        logits = infer(model, batches, ctx.device, ("variant_logits",), desc="trigger variants",
                       forward=forward)["variant_logits"]
        y = torch.as_tensor(np.asarray(encoded["label"][:], dtype=np.int64))
        lt = torch.from_numpy(logits)  # [N, M, C]
        loss = F.cross_entropy(lt.permute(0, 2, 1), y.unsqueeze(1).expand(-1, lt.shape[1]), reduction="none").mean(0)
        acc = (lt.argmax(-1) == y.unsqueeze(1)).float().mean(0)
        return {"logits": logits, "loss": loss.numpy(), "accuracy": acc.numpy()}

    def trigger_gradient(self, ctx: SearchContext, encoded: Any, triggers: torch.Tensor) -> torch.Tensor:
        """``[n, H]``: the gradient of the mean train loss w.r.t. the input embedding at each trigger position."""
        from ..data import Batches

        model = ctx.model
        emb_layer = model.backbone.get_input_embeddings()
        store: dict[str, torch.Tensor] = {}

        def hook(module: Any, args: Any, out: torch.Tensor) -> torch.Tensor:
            leaf = out.detach().requires_grad_(True)  # the gradient stops here: no weight gets one
            store["emb"] = leaf
            return leaf

        n, total = triggers.shape[0], torch.zeros(triggers.shape[0], emb_layer.weight.shape[1], device=ctx.device)
        handle = emb_layer.register_forward_hook(hook)
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                for batch in Batches(encoded, ctx.batch_size, ctx.tokenizer.pad_token_id, order="length"):
                    batch = {k: v.to(ctx.device) for k, v in batch.items()}
                    ids = fill(batch["input_ids"], batch["soft_ids"], triggers.to(ctx.device).unsqueeze(0))[0]
                    logits = model(**self._model_inputs(batch, ids, 1)).logits
                    loss = F.cross_entropy(logits.float(), batch["labels"], reduction="sum") / len(encoded)
                    (g,) = torch.autograd.grad(loss, store["emb"])
                    s = batch["soft_ids"]
                    for j in range(n):
                        total[j] += g[s == j + 1].float().sum(0)
        finally:
            handle.remove()
            model.train(was_training)
        return total

    def words(self, ctx: SearchContext, triggers: torch.Tensor) -> list[str]:
        tok = ctx.tokenizer
        return [tok.convert_tokens_to_string([t]).strip() for t in tok.convert_ids_to_tokens(triggers.tolist())]

    def verify(self, ctx: SearchContext, text: str, encoder: Any, triggers: torch.Tensor) -> bool:
        """Whether the written template encodes every few-shot example to exactly the searched token ids."""
        from ..template import Template

        hard = Template(text, ctx.tokenizer, max_length=ctx.max_length, name=ctx.task.name)
        for data in (ctx.few.train, ctx.few.dev):
            rows = data.to_dict()
            a, b = hard.encode_batch(rows), encoder.encode_batch(rows)
            for ids, ids_soft, soft in zip(a["input_ids"], b["input_ids"], b["soft_ids"]):
                filled = fill(torch.tensor([ids_soft]), torch.tensor([soft]), triggers.unsqueeze(0))[0, 0].tolist()
                if list(ids) != filled:
                    return False
        return True

    # ------------------------------------------------------------------ the search
    def search(self, ctx: SearchContext) -> list[dict[str, Any]]:
        from ..data import encode_dataset
        from ..metrics import compute_metrics

        tt = self.trigger_template
        encoder = tt.encoder(ctx.tokenizer, ctx.max_length)
        train = encode_dataset(ctx.few.train, encoder)
        dev = encode_dataset(ctx.few.dev, encoder)
        y_dev = np.asarray(dev["label"][:])
        allowed = self._allowed(ctx).to(ctx.device)
        E = ctx.model.backbone.get_input_embeddings().weight.detach()
        top_k = int(self.options["top_k"])
        current = self._init_ids(ctx)

        def dev_score(trig: torch.Tensor) -> tuple[float, float]:
            r = self.score_triggers(ctx, dev, trig.unsqueeze(0))
            m = compute_metrics(y_dev, r["logits"][:, 0].argmax(-1), ctx.metric)
            return float(m["main"]), float(m["accuracy"])

        t0 = time.perf_counter()
        first = self.score_triggers(ctx, train, current.unsqueeze(0))
        visited = [{"triggers": current.clone(), "iteration": 0, "train_loss": float(first["loss"][0]),
                    "train_accuracy": float(first["accuracy"][0]), "dev": dev_score(current)}]
        history = [{"iteration": 0, "triggers": self.words(ctx, current), "train_loss": visited[0]["train_loss"],
                    "dev": visited[0]["dev"][0], "seconds": round(time.perf_counter() - t0, 2)}]
        log.info("autoprompt: start %s, train loss %.4f", history[0]["triggers"], history[0]["train_loss"])
        for it in range(1, int(self.options["iterations"]) + 1):
            grad = self.trigger_gradient(ctx, train, current)  # [n, H]
            score = -(grad @ E.T.float())  # [n, V]: first-order decrease of the loss
            score = score.masked_fill(~allowed, float("-inf"))
            score[torch.arange(tt.n), current.to(score.device)] = float("-inf")  # a flip changes the token
            top = score.topk(min(top_k, int(allowed.sum(1).min()) - 1), dim=1).indices.cpu()  # [n, k]
            variants = [current.clone()]
            flips = [None]
            for j in range(tt.n):
                for c in top[j].tolist():
                    v = current.clone()
                    v[j] = c
                    variants.append(v)
                    flips.append((j, c))
            r = self.score_triggers(ctx, train, torch.stack(variants))  # one batched pass, every flip
            best = int(np.argmin(r["loss"]))
            entry = {"iteration": it, "variants": len(variants) - 1, "current_loss": float(r["loss"][0]),
                     "best_loss": float(r["loss"][best])}
            if best == 0 or not r["loss"][best] < r["loss"][0]:
                entry.update(triggers=self.words(ctx, current), converged=True,
                             seconds=round(time.perf_counter() - t0, 2))
                history.append(entry)
                log.info("autoprompt: iteration %d: no flip lowers the train loss; stopping", it)
                break
            current = variants[best]
            d = dev_score(current)
            visited.append({"triggers": current.clone(), "iteration": it, "train_loss": float(r["loss"][best]),
                            "train_accuracy": float(r["accuracy"][best]), "dev": d})
            entry.update(triggers=self.words(ctx, current), flip=[flips[best][0], self.words(ctx, current)[flips[best][0]]],
                         dev=d[0], seconds=round(time.perf_counter() - t0, 2))
            history.append(entry)
            log.info("autoprompt: iteration %d: %s train loss %.4f -> %.4f, dev %s %.4f", it, entry["triggers"],
                     entry["current_loss"], entry["best_loss"], ctx.metric, d[0])
        self.history = history
        if len(visited) > 1:  # as AutoPrompt: the starting triggers are the baseline, not a result
            visited = visited[1:]
        out, seen = [], set()
        for v in sorted(visited, key=lambda v: (-v["dev"][0], v["train_loss"], v["iteration"])):
            text = tt.render(self.words(ctx, v["triggers"]))
            if text in seen:
                continue
            seen.add(text)
            if not self.verify(ctx, text, encoder, v["triggers"]):
                log.warning("autoprompt: %r does not re-tokenise to the searched triggers; dropped", text)
                continue
            out.append({"template": text, "source": f"autoprompt iteration {v['iteration']}",
                        "scores": {f"dev_{ctx.metric}": v["dev"][0], "dev_accuracy": v["dev"][1],
                                   "train_accuracy": v["train_accuracy"], "train_loss": v["train_loss"]},
                        "triggers": self.words(ctx, v["triggers"])})
        return out
