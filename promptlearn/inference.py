"""The one inference loop: model outputs for every example, in dataset order.

Training (dev evaluation), evaluation, calibration, :func:`promptlearn.serialization.predict`,
the pipeline's ``score`` stage and the benchmarks all run :func:`infer` over :class:`~promptlearn.data.Batches`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed
from .data import Batches, encode_dataset

__all__ = ["infer", "predict_scores", "score_dataset", "vocab_logprobs"]


@torch.no_grad()
def infer(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device | str,
          outputs: Sequence[str] = ("logits",), progress: bool = False, desc: str = "scoring",
          forward: Callable[..., Any] | None = None) -> dict[str, np.ndarray]:
    """Run ``model`` in eval mode over ``batches``; ``{name: [N, ...] array}`` for each requested output field.

    ``name`` is a :class:`~promptlearn.prompt_model.PromptOutput` attribute (``logits``,
    ``token_logits``, ``hidden``, ``verbalizer_input``, ...).  Length-sorted batches are put back in
    dataset order.  The model's train/eval mode is restored afterwards.  ``forward(**batch)`` replaces
    ``model(**batch)`` for another view of the same model (its outputs are read by name the same way).

    Scoring runs in full precision (mixed precision is a training setting).  With several processes each scores
    every N-th batch and every process gets all the results (:mod:`promptlearn.distributed`); a plain run scores
    every batch itself.
    """
    was_training = model.training
    model.eval()
    world, me = distributed.world_size(), distributed.rank()
    show = {"desc": desc, "disable": not progress or not distributed.is_main(), "leave": False}
    if world == 1:
        # tqdm.auto's bar calls iter(batches) once more than the loop does: a dev batcher's draw_base_seed draws
        # twice per pass, and every recorded training run depends on that -- keep the bar around the batcher
        numbered: Iterable[tuple[int, dict[str, torch.Tensor]]] = enumerate(tqdm(batches, **show))
    elif isinstance(batches, Batches):
        numbered = tqdm(batches.shard(me, world), total=_length(batches, world, me), **show)
    else:
        numbered = tqdm(((i, b) for i, b in enumerate(batches) if i % world == me), total=_length(batches, world, me),
                        **show)
    done: list[tuple[int, dict[str, np.ndarray]]] = []
    try:
        for i, batch in numbered:
            batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            out = (forward or model)(**batch)
            row = {}
            for name in outputs:
                value = getattr(out, name)
                if value is None:
                    raise ValueError(f"the model's output has no {name!r} (a {type(model).__name__} with "
                                     f"verbalizer {getattr(getattr(model, 'verbalizer', None), 'type', None)!r})")
                row[name] = value.float().cpu().numpy()
            done.append((i, row))
    finally:
        model.train(was_training)
    if world > 1:
        done = sorted(distributed.gather(done), key=lambda item: item[0])  # every process's batches, in order
    order = getattr(batches, "order_index", None)
    result = {}
    for name in outputs:
        parts = [row[name] for _, row in done]
        arr = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
        if order is not None:
            back = np.empty_like(arr)
            back[np.asarray(order)] = arr
            arr = back
        result[name] = arr
    return result


def _length(batches: Any, world: int, me: int) -> int | None:
    try:
        n = len(batches)
    except TypeError:
        return None
    return len(range(me, n, world))


def predict_scores(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device | str,
                   progress: bool = True, desc: str = "evaluating") -> np.ndarray:
    """Class scores ``[N, C]`` for every example of ``batches``, in dataset order."""
    return infer(model, batches, device, ("logits",), progress=progress, desc=desc)["logits"]


def score_dataset(model: torch.nn.Module, dataset: Any, batch_size: int, device: torch.device | str,
                  outputs: Sequence[str] = ("logits",), progress: bool = False, desc: str = "scoring",
                  encoded: Any = None) -> dict[str, Any]:
    """Encode (cached by ``datasets``), batch by length and :func:`infer`; labels are never needed.

    Returns the requested outputs plus ``n_truncated`` (tokens cut per example) and ``encoded``.
    """
    if encoded is None:
        encoded = encode_dataset(dataset, model.template)
    batches = Batches(encoded, batch_size, model.template.tokenizer.pad_token_id, order="length")
    result: dict[str, Any] = infer(model, batches, device, outputs, progress=progress, desc=desc)
    result["n_truncated"] = np.asarray(encoded["n_truncated"][:], dtype=np.int64)
    result["encoded"] = encoded
    return result


def vocab_logprobs(model: torch.nn.Module, dataset: Any, device: torch.device | str, batch_size: int = 32,
                   progress: bool = False) -> np.ndarray:
    """``[N, V]`` log-softmax over the whole vocabulary at the mask for every example, in dataset order
    (:meth:`~promptlearn.PromptModel.vocab_logits`; label-word search, KPT's frequency refinement)."""
    encoded = encode_dataset(dataset, model.template)
    batches = Batches(encoded, batch_size, model.template.tokenizer.pad_token_id, order="length")

    def forward(**batch: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(vocab_logprob=torch.log_softmax(model.vocab_logits(**batch).float(), -1))

    return infer(model, batches, device, ("vocab_logprob",), progress=progress, desc="vocabulary",
                 forward=forward)["vocab_logprob"]
