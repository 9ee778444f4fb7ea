"""One frozen LM, many tasks: mixed-task batches scored in one forward pass.

:class:`MultiTaskModel` holds several prompt models (``fixed_lm`` / ``p_tuning_v2`` artifacts: soft tokens,
materialised or live LSTM/MLP prompt encoders, deep prefixes; manual, soft or KPT verbalizers) that share one
base masked LM, and scores a batch whose examples belong to different tasks in one forward of that LM:

* every example is encoded with its own task's template (so tasks may differ in soft tokens, fields, length);
* soft tokens: the tasks' ``[S_t, H]`` prompt matrices are stacked into one table, each example's ``soft_ids``
  are offset into its task's rows and injected as ``PromptModel.embed`` does;
* deep prefixes: each example gets its task's ``[layers, 2, P_t, D]`` key/values, zero-padded to the longest
  ``P`` with the attention mask extended by 1 over its own prefixes and 0 over the padding (a task without deep
  prompts: all 0), through :func:`promptlearn.soft_prompt.prefixed_inputs`, the path ``DeepPrompt`` uses.  A
  masked key gets exactly zero attention weight, so padding does not change the scores;
* the hidden state at each example's mask is read once (``PromptModel._at_mask``: the same hooks, the same
  ``MaskGatherError`` if they do not fire) and each example gets its task's verbalizer rows.

``logits`` are ``[B, C_max]`` with ``-inf`` past a task's own classes.  The members must be kind ``prompt``, keep
the base LM frozen (no ``lm/`` saved), share ``base_model`` / ``revision`` and the LM's weights (one object,
or the same :func:`~promptlearn.backbone.weight_fingerprint`); exact multi-token verbalizers
(``multi_token=exact`` with multi-token words) and models with demonstrations are refused (:class:`NotShareable`):
their mask variants / demonstration sets are a per-task expansion of the batch.  Loading from directories loads the base LM once (:meth:`MultiTaskModel.from_pretrained`).

:meth:`MultiTaskModel.predict` takes rows with a task column and returns labels and probabilities; with
``errors="record"`` a row with an unknown task or a missing field gets an ``error`` and the others are scored
(the ``python -m promptlearn.predict`` command line, :mod:`promptlearn.predict`).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, PromptlearnError
from .prompt_model import PromptModel, PromptOutput
from .verbalizers import LABEL_LOGITS, MASK_HIDDEN, WORD_LOGPROBS

__all__ = ["MultiTaskModel", "BaseModelMismatch", "NotShareable", "RowError", "check_fingerprints", "row_problem"]


class BaseModelMismatch(PromptlearnError, ValueError):
    """The prompts to serve together were trained on different base LMs."""


class NotShareable(ConfigError):
    """A model that cannot run on a shared frozen LM (it trained its LM, carries an adapter, scores exact
    multi-token words or demonstrations): it is served on its own (``promptlearn.predict`` does so for one model)."""


class RowError(PromptlearnError, ValueError):
    """One input row cannot be scored (unknown task, missing field); the message names the row and the fix."""


def _base_of(model: PromptModel) -> tuple[Any, Any]:
    spec = model.spec
    return spec.base_model, spec.revision


def check_fingerprints(lm: nn.Module, fingerprints: Mapping[str, str | None], base: Any,
                       known: str | None = None) -> None:
    """Raise :class:`BaseModelMismatch` when a task's recorded LM fingerprint (``lm_fingerprint`` of its artifact;
    None: not recorded) is not ``lm``'s (computed once, unless ``known``); ``base`` names the LM in the message."""
    from .backbone import weight_fingerprint

    actual = known
    for name, fp in fingerprints.items():
        if fp is None:
            continue
        actual = actual or weight_fingerprint(lm)
        if fp != actual:
            raise BaseModelMismatch(
                f"task {name!r}: its artifact was saved on base-model weights with fingerprint {fp}, but the "
                f"loaded base {base!r} has {actual} (its weights changed since); fix: load the base model "
                "the prompt was trained on (from_pretrained(..., base_model=...) or the recorded revision)")


def row_problem(row: Any, task_key: str, tasks: Sequence[str], fields_of: Callable[[str], Sequence[str]],
                template_of: Callable[[str], str]) -> tuple[Any, str | None]:
    """``(task, None)`` for an input row the loaded ``tasks`` can score, else ``(task or None, what is wrong;
    fix: ...)``: not an object, no task (with several tasks), an unknown task, a missing template field
    (``fields_of(task)``; ``template_of(task)``: the template text, for the message) or a field that is not text.
    A row without the task field is the only task's when one is loaded."""
    if not isinstance(row, Mapping):
        return None, (f"is a {type(row).__name__}, not an object with a {task_key!r} field; fix: write "
                      f"{{\"{task_key}\": \"{tasks[0]}\", ...the template's fields...}}")
    task = row.get(task_key)
    if task is None and len(tasks) == 1:
        task = tasks[0]
    if task is None:
        return None, f"has no {task_key!r} field; fix: add \"{task_key}\": one of {list(tasks)}"
    if not isinstance(task, str) or task not in tasks:
        return task, (f"unknown task {task!r}; the loaded tasks are {list(tasks)}; fix: set \"{task_key}\" to one "
                      f"of them (or load a model for {task!r})")
    fields = list(fields_of(task))
    missing = [f for f in fields if f not in row]
    if missing:
        return task, (f"task {task!r} needs field {missing[0]!r} (template {template_of(task)!r} reads {fields}), "
                      f"the row has {sorted(row)}; fix: add \"{missing[0]}\" to the row")
    wrong = [f for f in fields if row[f] is not None and not isinstance(row[f], (str, int, float))]
    if wrong:
        return task, (f"field {wrong[0]!r} of task {task!r} is a {type(row[wrong[0]]).__name__}, not text; fix: "
                      "give it as a string")
    return task, None


class MultiTaskModel(nn.Module):
    """Several prompt models over one frozen LM; ``forward(..., task_ids)`` scores a mixed-task batch.

    ``models``: task name -> :class:`~promptlearn.PromptModel`.  ``fingerprints``: task name -> the
    ``lm_fingerprint`` its artifact recorded (checked against the shared LM; :meth:`from_pretrained` passes them).
    """

    def __init__(self, models: Mapping[str, PromptModel], fingerprints: Mapping[str, str | None] | None = None):
        super().__init__()
        from .backbone import weight_fingerprint

        if not models:
            raise ConfigError("MultiTaskModel needs at least one task model; fix: pass {name: PromptModel}")
        for name, m in models.items():
            if not isinstance(name, str) or not name or "." in name or "=" in name:
                raise ConfigError(f"task name {name!r}: must be a non-empty string without '.' or '='; "
                                  "fix: name it like sst2 or my_task")
            if not isinstance(m, PromptModel):
                raise NotShareable(f"task {name!r}: a {type(m).__name__} (kind {getattr(m, 'kind', '?')!r}) is not a "
                                  "prompt model; only prompt models (fixed_lm, p_tuning_v2, tuning_free) share a frozen LM")
            if "lm" in m.trained:
                raise NotShareable(f"task {name!r}: its LM was trained (strategy {m.strategy!r} trained {list(m.trained)}), "
                                  "so it does not run on the shared base LM; fix: serve it on its own, or train it "
                                  "with a fixed-LM strategy (fixed_lm, p_tuning_v2)")
            if getattr(m, "adapter", None) is not None:
                raise NotShareable(f"task {name!r}: its LM carries a {m.adapter.type!r} adapter (strategy {m.strategy!r}), "
                                  "so it does not run on the shared base LM; fix: serve it on its own "
                                  "(PromptModel.from_pretrained), or train it with fixed_lm / p_tuning_v2")
            if m.verbalizer.input == WORD_LOGPROBS:
                raise NotShareable(f"task {name!r}: its verbalizer scores multi-token words exactly (n masks per word), "
                                  "which needs its own expansion of the batch; fix: serve it on its own, or use "
                                  "verbalizer.multi_token=mean|first|max")
            if getattr(m, "demonstrations", None) is not None:
                raise NotShareable(f"task {name!r}: it scores with demonstrations (sets of support examples appended "
                                   "to each input and averaged), which a mixed batch does not do; fix: serve it on "
                                   "its own (PromptModel.from_pretrained(dir).predict, or promptlearn.predict with "
                                   "this model alone)")
        names = list(models)
        first = models[names[0]]
        base = _base_of(first)
        shared = first.mlm
        shared_fp: str | None = None
        for name in names[1:]:
            other = _base_of(models[name])
            if other != base:
                raise BaseModelMismatch(
                    f"task {name!r} was trained on base model {other[0]!r} (revision {other[1]!r}) but task "
                    f"{names[0]!r} on {base[0]!r} (revision {base[1]!r}); one MultiTaskModel serves prompts of one "
                    "base LM; fix: serve them in separate MultiTaskModels (or retrain one on the other's base)")
            if models[name].mlm is not shared:
                shared_fp = shared_fp or weight_fingerprint(shared)
                fp = weight_fingerprint(models[name].mlm)
                if fp != shared_fp:
                    raise BaseModelMismatch(
                        f"task {name!r} and task {names[0]!r} name the same base model {base[0]!r} but their LMs' "
                        f"weights differ (fingerprints {fp} vs {shared_fp}); fix: build both on one loaded LM "
                        "(build_model(spec, tokenizer=..., mlm=...))")
        check_fingerprints(shared, fingerprints or {}, base[0], known=shared_fp)
        tok = first.template.tokenizer
        for name in names[1:]:
            other_tok = models[name].template.tokenizer
            if other_tok is not tok and other_tok.get_vocab() != tok.get_vocab():
                raise BaseModelMismatch(f"task {name!r} uses another vocabulary than task {names[0]!r}; fix: load "
                                        "both with the base model's tokenizer")
        self.tasks: list[str] = names
        self.members = nn.ModuleDict(models)
        self.mlm = shared
        self.tokenizer = tok
        label_members = [models[n] for n in names if models[n].verbalizer.input == LABEL_LOGITS]
        self.restricted_head = all(m.restricted_head for m in label_members)
        if not self.restricted_head and any(models[n].verbalizer.input == MASK_HIDDEN for n in names):
            raise ConfigError("this LM's head does not allow reading label rows from the hidden state at the mask, "
                              "and some tasks' verbalizers need that hidden state; fix: serve the tasks with "
                              "'mask_hidden' verbalizers (soft) in a separate MultiTaskModel")
        self.train(shared.training)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, directories: Mapping[str, str | Path], base_model: str | None = None,
                        **load_kwargs: Any) -> "MultiTaskModel":
        """Load saved prompt models (task name -> directory) on one base LM, loaded once.

        The artifacts must record the same ``base_model`` and ``revision`` (``base_model=`` overrides all of them),
        and each recorded LM fingerprint must match the loaded LM's weights.
        """
        from .backbone import load_masked_lm, load_tokenizer
        from .serialization import load_prompt_model, read_config

        if not directories:
            raise ConfigError("MultiTaskModel.from_pretrained needs at least one task=directory; fix: "
                              "--model sst2=outputs/.../model")
        configs: dict[str, dict[str, Any]] = {}
        for name, d in directories.items():
            try:
                configs[name] = read_config(d)
            except (FileNotFoundError, ValueError) as exc:
                raise ConfigError(f"task {name!r}: {exc}; fix: point it at a directory written by save_model=true "
                                  "or save_pretrained()") from exc
            if configs[name]["spec"].adapter:
                raise NotShareable(f"task {name!r}: {d} has a {configs[name]['spec'].adapter.get('type')!r} adapter on "
                                  "its LM, so it cannot share the base LM; fix: serve it on its own "
                                  "(PromptModel.from_pretrained), or train it with fixed_lm / p_tuning_v2")
            if configs[name]["lm_saved"]:
                raise NotShareable(f"task {name!r}: {d} saved its own LM (strategy {configs[name]['spec'].strategy!r} "
                                  "trained it), so it cannot share the base LM; fix: serve it on its own "
                                  "(PromptModel.from_pretrained), or train it with fixed_lm / p_tuning_v2")
        names = list(configs)
        bases = {n: (c["spec"].base_model, c["spec"].revision) for n, c in configs.items()}
        if base_model is None:
            for n in names[1:]:
                if bases[n] != bases[names[0]]:
                    raise BaseModelMismatch(
                        f"task {n!r} ({directories[n]}) was trained on base model {bases[n][0]!r} (revision "
                        f"{bases[n][1]!r}) but task {names[0]!r} ({directories[names[0]]}) on {bases[names[0]][0]!r} "
                        f"(revision {bases[names[0]][1]!r}); fix: serve them separately, or give base_model= "
                        "(--base-model) if both really are the same LM")
            source, revision = bases[names[0]]
        else:
            source, revision = base_model, None
        tokenizer = load_tokenizer(source, revision)
        mlm = load_masked_lm(source, revision, **load_kwargs).eval()
        models = {n: load_prompt_model(directories[n], base_model=base_model, tokenizer=tokenizer, mlm=mlm)
                  for n in names}
        return cls(models, fingerprints={n: configs[n].get("lm_fingerprint") for n in names})

    # ------------------------------------------------------------------ training (promptlearn.trainer.train)
    @property
    def soft_prompt(self) -> nn.ModuleDict | None:
        """The tasks' prompts (a view, for the ``prompt`` parameter group)."""
        prompts = {n: self.members[n].soft_prompt for n in self.tasks if self.members[n].soft_prompt is not None}
        return nn.ModuleDict(prompts) if prompts else None

    @property
    def verbalizer(self) -> nn.ModuleDict:
        """The tasks' verbalizers (a view, for the ``verbalizer`` parameter group)."""
        return nn.ModuleDict({n: self.members[n].verbalizer for n in self.tasks})

    @property
    def trained(self) -> tuple[str, ...]:
        return tuple(sorted({g for n in self.tasks for g in self.members[n].trained}))

    def mark_trained(self, strategy: str, groups: Sequence[str]) -> None:
        for n in self.tasks:
            self.members[n].mark_trained(strategy, groups)

    def encode_split(self, rows: Sequence[Mapping[str, Any]], task_key: str = "task") -> Any:
        """Labelled rows (``task_key``, ``label`` = the class index within its task, the task's fields) encoded for
        mixed-task training batches (``promptlearn.trainer.train`` calls this instead of ``encode_dataset``)."""
        rows = list(rows)
        encoded, kept, _ = self.encode(rows, task_key=task_key, errors="raise")
        return encoded.add_column("label", [int(rows[i]["label"]) for i in kept])

    @property
    def labels(self) -> dict[str, list[str]]:
        return {n: list(self.members[n].labels) for n in self.tasks}

    def task_index(self, name: str) -> int:
        return self.tasks.index(name)

    # ------------------------------------------------------------------ forward
    def _soft_table(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """All tasks' input-level soft vectors ``[S_total, H]`` and each task's row offset ``[T]``."""
        parts, offsets, total = [], [], 0
        for n in self.tasks:
            m = self.members[n]
            offsets.append(total)
            if m.soft_prompt is not None and m.template.has_soft_tokens:
                vecs = m.soft_prompt()
                parts.append(vecs)
                total += vecs.shape[0]
        if not parts:
            return None
        return torch.cat(parts), torch.tensor(offsets, dtype=torch.long)

    def _prefixes(self) -> tuple[torch.Tensor, torch.Tensor, Any] | None:
        """Every task's deep prefixes zero-padded to the longest, ``[T, layers, 2, P_max, D]``, their mask ``[T, P_max]``
        and one deep prompt (for heads / head_dim), or None when no task has deep prompts."""
        deep = {n: self.members[n].soft_prompt for n in self.tasks
                if hasattr(self.members[n].soft_prompt, "key_values")}
        if not deep:
            return None
        ref = next(iter(deep.values()))
        kvs = {n: p.key_values() for n, p in deep.items()}
        p_max = max(kv.shape[2] for kv in kvs.values())
        some = next(iter(kvs.values()))
        stacked = some.new_zeros(len(self.tasks), some.shape[0], 2, p_max, some.shape[3])
        mask = torch.zeros(len(self.tasks), p_max, dtype=torch.long)
        rows = []
        for t, n in enumerate(self.tasks):
            if n in kvs:
                kv = kvs[n]
                rows.append(F.pad(kv, (0, 0, 0, p_max - kv.shape[2])))
                mask[t, :kv.shape[2]] = 1
            else:
                rows.append(stacked[t])
        return torch.stack(rows), mask, ref

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_pos: torch.Tensor,
                task_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                soft_ids: torch.Tensor | None = None, **_: Any) -> PromptOutput:
        from .soft_prompt import keep_positions, prefixed_inputs

        first = self.members[self.tasks[0]]
        backbone = first.backbone
        inputs: dict[str, torch.Tensor] = {"attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        table = self._soft_table() if soft_ids is not None else None
        if table is not None:
            vecs, offsets = table
            emb = backbone.get_input_embeddings()(input_ids)
            shifted = soft_ids + offsets.to(soft_ids.device)[task_ids].unsqueeze(1)  # 1-based rows of the table
            picked = vecs[(shifted - 1).clamp(min=0)]
            inputs["inputs_embeds"] = torch.where((soft_ids > 0).unsqueeze(-1), picked.to(emb.dtype), emb)
        else:
            inputs["input_ids"] = input_ids
        prefixes = self._prefixes()
        context = nullcontext()
        if prefixes is not None:
            kv, pmask, ref = prefixes
            context = keep_positions(self.mlm)
            inputs = prefixed_inputs(self.mlm, inputs, kv.to(attention_mask.device)[task_ids],
                                     pmask.to(attention_mask.device)[task_ids], ref.num_heads, ref.head_dim)
        with context:
            if self.restricted_head:
                x = first._at_mask(inputs, mask_pos, restricted=True, read="hidden")  # [B, H]
            else:
                x = first._at_mask(inputs, mask_pos, restricted=False, read="vocab")[:, 0]  # [B, V]
        decoder = backbone.get_output_embeddings()
        sizes = [len(self.members[n].labels) for n in self.tasks]
        logits = x.new_full((x.shape[0], max(sizes)), float("-inf"), dtype=torch.float32)
        for t, n in enumerate(self.tasks):
            rows = (task_ids == t).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            m = self.members[n]
            xt = x[rows]
            if m.verbalizer.input == LABEL_LOGITS:
                ids = m.verbalizer.token_ids
                if self.restricted_head:
                    bias = decoder.bias[ids] if getattr(decoder, "bias", None) is not None else None
                    xt = F.linear(xt, decoder.weight[ids], bias)
                else:
                    xt = xt[:, ids]
            logits[rows, :sizes[t]] = m.verbalizer(xt).float()
        return PromptOutput(logits=logits)

    # ------------------------------------------------------------------ data
    def encode(self, rows: Sequence[Any], task_key: str = "task", errors: str = "raise",
               where: Callable[[int], str] | None = None) -> tuple[Any, list[int], dict[int, str]]:
        """Encode rows (dicts with ``task_key`` and the fields of that task's template) for mixed batches.

        Returns ``(encoded, kept, errors)``: a ``datasets.Dataset`` of the encodable rows (with ``task_id``),
        the input positions of its rows, and ``{position: message}`` for the others.  ``errors="raise"``
        raises :class:`RowError` at the first bad row instead.
        """
        from datasets import Dataset

        if errors not in ("raise", "record"):
            raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
        where = where or (lambda i: f"input row {i}")
        bad: dict[int, str] = {}
        groups: dict[int, list[int]] = {}

        def fail(i: int, msg: str) -> None:
            if errors == "raise":
                raise RowError(f"{where(i)}: {msg}")
            bad[i] = f"{where(i)}: {msg}"

        for i, row in enumerate(rows):
            task, problem = row_problem(row, task_key, self.tasks, lambda t: self.members[t].template.fields,
                                        lambda t: self.members[t].template.text)
            if problem:
                fail(i, problem)
                continue
            groups.setdefault(self.task_index(task), []).append(i)
        any_soft = any(self.members[n].template.has_soft_tokens for n in self.tasks)
        columns: dict[str, list[Any]] = {"input_ids": [], "mask_pos": [], "n_truncated": [], "task_id": []}
        if any_soft:
            columns["soft_ids"] = []
        if self.members[self.tasks[0]].template.uses_token_type_ids:
            columns["token_type_ids"] = []
        kept: list[int] = []
        for t, idx in sorted(groups.items()):
            template = self.members[self.tasks[t]].template
            fields = {f: [None if rows[i][f] is None else str(rows[i][f]) for i in idx] for f in template.fields}
            enc = template.encode_batch(fields)
            for j, i in enumerate(idx):
                for k in ("input_ids", "mask_pos", "n_truncated"):
                    columns[k].append(enc[k][j])
                if "token_type_ids" in columns:
                    columns["token_type_ids"].append(enc["token_type_ids"][j])
                if any_soft:
                    columns["soft_ids"].append(enc["soft_ids"][j] if "soft_ids" in enc else [0] * len(enc["input_ids"][j]))
                columns["task_id"].append(t)
                kept.append(i)
        return Dataset.from_dict(columns), kept, bad

    @torch.no_grad()
    def predict(self, rows: Sequence[Mapping[str, Any]], batch_size: int = 32, task_key: str = "task",
                errors: str = "raise", progress: bool = False,
                where: Callable[[int], str] | None = None) -> list[dict[str, Any]]:
        """``{"task", "label", "probs"}`` for every row, in input order; one mixed length-sorted batcher.

        ``errors="record"``: a row that cannot be scored gets ``{"task", "error"}`` and the others are scored."""
        from .data import Batches
        from .inference import infer

        rows = list(rows)
        encoded, kept, bad = self.encode(rows, task_key=task_key, errors=errors, where=where)
        results: list[dict[str, Any]] = [{} for _ in rows]
        for i, msg in bad.items():
            task = rows[i].get(task_key) if isinstance(rows[i], Mapping) else None
            results[i] = {"task": task, "error": msg}
        if kept:
            device = next(self.parameters()).device
            batches = Batches(encoded, batch_size, self.tokenizer.pad_token_id, order="length")
            logits = torch.from_numpy(infer(self, batches, device, progress=progress, desc="predicting")["logits"])
            task_ids = encoded["task_id"]
            for j, i in enumerate(kept):
                name = self.tasks[task_ids[j]]
                labels = self.members[name].labels
                p = torch.softmax(logits[j, :len(labels)], -1)
                results[i] = {"task": name, "label": labels[int(p.argmax())],
                              "probs": {lab: float(v) for lab, v in zip(labels, p)}}
        return results
