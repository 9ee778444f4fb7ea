"""Tokenisation through ``datasets.map`` (cached), dynamic per-batch padding, and the one batcher."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import tokenizers
import torch
import transformers

from . import distributed, template as template_module
from .template import Template

__all__ = ["encode_dataset", "PromptCollator", "Batches", "make_loader", "template_fingerprint"]

SOFT_LABELS = "soft_labels"  # a float [C] target distribution per example (distillation, promptlearn.methods.pet)
MODEL_COLUMNS = ("input_ids", "token_type_ids", "soft_ids", "mask_pos", "task_id")  # task_id: mixed-task batches
_TEMPLATE_CODE_HASH = hashlib.sha256(Path(template_module.__file__).read_bytes()).hexdigest()[:16]


def _tokenizer_hash(tok: Any) -> str:
    """sha256 of the whole fast tokenizer (vocabulary, merges, normaliser...), cached on the object."""
    cached = getattr(tok, "_promptlearn_hash", None)
    if cached is None:
        backend = getattr(tok, "backend_tokenizer", None)
        text = backend.to_str() if backend is not None else json.dumps(tok.get_vocab(), sort_keys=True)
        cached = hashlib.sha256(text.encode()).hexdigest()[:16]
        try:
            tok._promptlearn_hash = cached
        except Exception:  # pragma: no cover - exotic tokenizer objects
            pass
    return cached


def template_fingerprint(template: Template, base: str = "") -> str:
    """Deterministic fingerprint of what tokenisation depends on (for the ``datasets`` cache)."""
    tok = template.tokenizer
    desc = {
        "base": base,
        "template": template.text,
        "max_length": template.max_length,
        "truncate": template.truncate,
        **({"reserve": template.reserve} if template.reserve else {}),
        "tokenizer": [type(tok).__name__, getattr(tok, "name_or_path", ""), len(tok),
                      tok.mask_token_id, tok.pad_token_id, getattr(tok, "model_max_length", None)],
        "vocab_probe": tok("The quick brown fox, 123!", add_special_tokens=True)["input_ids"],
        "tokenizer_hash": _tokenizer_hash(tok),
        "versions": [transformers.__version__, getattr(tokenizers, "__version__", "")],
        "code": _TEMPLATE_CODE_HASH,  # a change to the encoding code invalidates the cache
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def encode_dataset(dataset: Any, template: Template, batch_size: int = 1000, num_proc: int | None = None,
                   desc: str | None = None) -> Any:
    """Tokenise a ``datasets.Dataset`` with ``template``; keeps ``label``/``idx``/``soft_labels``, drops the text columns.

    The result is cached by ``datasets`` under a fingerprint of the input dataset, the template and
    the tokenizer, so re-running the same configuration does not tokenise again.
    """
    keep = {"label", "idx", SOFT_LABELS}
    remove = [c for c in dataset.column_names if c not in keep]
    fp = template_fingerprint(template, getattr(dataset, "_fingerprint", ""))
    with distributed.main_process_first():  # several processes: one writes the cache, the others read it
        return dataset.map(template.encode_batch, batched=True, batch_size=batch_size, remove_columns=remove,
                           num_proc=num_proc, new_fingerprint=fp, desc=desc or f"tokenising with {template.text!r}")


class PromptCollator:
    """Pads ``input_ids`` (pad id), ``token_type_ids``/``soft_ids`` (0) to the longest in the batch; a ``task_id``
    column (mixed-task data, :mod:`promptlearn.multitask`) becomes ``task_ids`` ``[B]``, a ``soft_labels`` column
    (distillation targets) a float ``soft_labels`` ``[B, C]``."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id if pad_token_id is not None else 0
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        n = len(features)
        input_ids = torch.full((n, longest), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((n, longest), dtype=torch.long)
        batch: dict[str, torch.Tensor] = {}
        has_types = "token_type_ids" in features[0]
        has_soft = "soft_ids" in features[0]
        types = torch.zeros((n, longest), dtype=torch.long) if has_types else None
        soft = torch.zeros((n, longest), dtype=torch.long) if has_soft else None
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            input_ids[i, :k] = torch.as_tensor(f["input_ids"])
            attention[i, :k] = 1
            if types is not None:
                types[i, :k] = torch.as_tensor(f["token_type_ids"])
            if soft is not None:
                soft[i, :k] = torch.as_tensor(f["soft_ids"])
        batch["input_ids"] = input_ids
        batch["attention_mask"] = attention
        if types is not None:
            batch["token_type_ids"] = types
        if soft is not None:
            batch["soft_ids"] = soft
        batch["mask_pos"] = torch.tensor([f["mask_pos"] for f in features], dtype=torch.long)
        if "task_id" in features[0]:  # a mixed-task batch (promptlearn.multitask): each example's task
            batch["task_ids"] = torch.tensor([f["task_id"] for f in features], dtype=torch.long)
        if "label" in features[0] and features[0]["label"] is not None:
            batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
        if SOFT_LABELS in features[0]:  # distillation targets [B, C]
            batch["soft_labels"] = torch.tensor([f[SOFT_LABELS] for f in features], dtype=torch.float32)
        return batch


class Batches:
    """The one batcher: padded batches over an encoded dataset, for training, evaluation and prediction.

    ``order``:

    * ``"sequential"`` -- dataset order, one pass;
    * ``"length"`` -- longest first, one pass (little padding per batch; inference).  ``order_index``
      maps results back: row ``i`` of the concatenated outputs is dataset row ``order_index[i]``;
    * ``"shuffle"`` -- endless and seeded: epoch ``e`` uses ``torch.randperm(n, seed + e)`` and drops
      its ragged tail (training); :meth:`state` / :meth:`load` resume at the same position (load before
      ``iter()``; the position lives in this object, so a new iterator continues where the last stopped).

    Several processes (:mod:`promptlearn.distributed`): a shuffling batcher made with ``shard=(rank, world)``
    draws the same global batch of ``batch_size`` rows in every process and yields this process's slice of
    ``batch_size / world`` rows; a one-pass batcher hands each process every ``world``-th batch through
    :meth:`shard` (the batches themselves are the single-process ones).
    """

    def __init__(self, encoded: Any, batch_size: int, pad_token_id: int | None, order: str = "sequential",
                 seed: int = 0, pad_to_multiple_of: int | None = None, draw_base_seed: bool = False,
                 epoch_data: Any = None, shard: tuple[int, int] | None = None):
        if order not in ("sequential", "length", "shuffle"):
            raise ValueError(f"order must be sequential, length or shuffle, got {order!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if shard is not None and order != "shuffle":
            raise ValueError("shard= splits the batches of a shuffling batcher; one-pass batchers use .shard()")
        # epoch_data(epoch) -> encoded dataset (shuffle only): the rows change every epoch (re-sampled
        # demonstrations); same number of rows, same labels
        self.epoch_data = epoch_data
        self.rows = self._rows(encoded)
        self.n = len(encoded)
        self.mode = order
        self.seed = seed
        self.collate = PromptCollator(pad_token_id, pad_to_multiple_of)
        self.batch_size = min(int(batch_size), self.n) if order == "shuffle" else int(batch_size)
        self.rank, self.world = shard if shard is not None else (0, 1)
        if self.batch_size % self.world:
            from .errors import ConfigError

            raise ConfigError(f"batch size {self.batch_size} cannot be split evenly over {self.world} processes; "
                              f"fix: strategy.batch_size={self.world * max(1, self.batch_size // self.world)} "
                              "(the global batch: a multiple of the number of processes)")
        if order == "length":
            lengths = [len(x) for x in encoded["input_ids"][:]]
            self.order_index: list[int] | None = sorted(range(self.n), key=lambda i: (-lengths[i], i))
        else:
            self.order_index = None
        self.draw_base_seed = draw_base_seed
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation() if order == "shuffle" else None

    @staticmethod
    def _rows(encoded: Any) -> Any:
        cols = [c for c in (*MODEL_COLUMNS, "label", SOFT_LABELS) if c in encoded.column_names]
        return encoded.with_format(None, columns=cols)

    def _set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._perm = self._permutation()
        if self.epoch_data is not None:
            self.rows = self._rows(self.epoch_data(epoch))

    # ------------------------------------------------------------------ one pass (sequential / length)
    def __len__(self) -> int:
        if self.mode == "shuffle":
            raise TypeError("a shuffling Batches is endless")
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.mode == "shuffle":
            return self._endless()
        if self.draw_base_seed:
            # Like a torch DataLoader, creating an iterator draws one number from the global generator (the
            # DataLoader's workers' base seed).  promptlearn 0.1's trainer evaluated dev through a DataLoader: the
            # trainer asks for this draw, so the dropout stream of a run -- and every recorded result -- is kept.
            torch.empty((), dtype=torch.int64).random_()
        return self._one_pass()

    def _one_pass(self, rank: int = 0, world: int = 1) -> Iterator[dict[str, torch.Tensor]]:
        index = self.order_index if self.order_index is not None else range(self.n)
        for start in range(rank * self.batch_size, self.n, world * self.batch_size):
            yield self.collate([self.rows[i] for i in index[start: start + self.batch_size]])

    def shard(self, rank: int, world: int) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """One pass over batches ``rank``, ``rank + world``, ... as ``(batch number, batch)`` (the batches of a
        single pass, so gathered results put in batch order equal one process's)."""
        if self.mode == "shuffle":
            raise TypeError("a shuffling batcher is split with shard=(rank, world) when it is made")
        iter(self)  # the same global-generator draw as a whole pass (draw_base_seed)
        return zip(range(rank, len(self), world), self._one_pass(rank, world))

    # ------------------------------------------------------------------ endless, seeded (shuffle)
    def _permutation(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load(self, state: dict[str, int]) -> None:
        self.pos = state["pos"]
        self._set_epoch(state["epoch"])

    def next_indices(self) -> list[int]:
        """The rows of the next shuffled batch (advances the position; a new epoch drops the ragged tail)."""
        if self.pos + self.batch_size > self.n:
            self.pos = 0
            self._set_epoch(self.epoch + 1)
        idx = self._perm[self.pos: self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def _endless(self) -> Iterator[dict[str, torch.Tensor]]:
        per = self.batch_size // self.world
        while True:
            idx = self.next_indices()  # the global batch: the same in every process
            yield self.collate([self.rows[i] for i in idx[self.rank * per: (self.rank + 1) * per]])


def make_loader(encoded: Any, batch_size: int, pad_token_id: int, sort_by_length: bool = False,
                pad_to_multiple_of: int | None = None) -> Batches:
    """One pass of :class:`Batches` over an encoded dataset, in dataset order or (``sort_by_length``) longest
    first.  Training draws endless seeded batches with ``Batches(..., order="shuffle", seed=...)``."""
    order = "length" if sort_by_length else "sequential"
    return Batches(encoded, batch_size, pad_token_id, order=order, pad_to_multiple_of=pad_to_multiple_of)
