"""``distill``: knowledge distillation into a plain sequence classifier (PET's final step).

The model is the ``finetune`` classifier (a fresh head on [CLS]/<s>, no template, no verbalizer).  It
trains on the unlabelled pool -- the task's pool minus the few-shot examples, labels removed
(:func:`promptlearn.pipeline.resolve_split` ``"unlabeled"``) -- with the soft labels an ensemble
gave it, and selects on the few-shot dev set like every strategy.  ``soft_labels`` names an ``.npz``
with ``idx`` (pool ids) and ``logits`` ``[N, C]`` (the merged class log-scores,
:func:`promptlearn.methods.pet.merge_logits`); the targets are ``softmax(logits / T)`` and the loss is
PET's::

    KL(softmax(merged / T) || softmax(student / T)) * T^2      (mean over the batch; T = ``temperature``, 2)
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import SOFT_LABELS
from ..errors import ConfigError
from .finetune import Finetune


def soft_targets(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / T)`` per row (float32)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def distillation_loss(student_logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(targets || softmax(student / T)) * T^2``, averaged over the batch (``targets`` are probabilities)."""
    log_p = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return F.kl_div(log_p, targets.float(), reduction="batchmean") * temperature ** 2


class Distill(Finetune):
    trains = ("lm",)

    @property
    def temperature(self) -> float:
        return float(self.cfg.get("temperature", 2.0))

    def training_data(self, few: Any, task: Any = None, cfg: Mapping[str, Any] | None = None) -> Any:
        """The unlabelled pool rows named in ``soft_labels``, each with its target distribution; dev = few-shot dev."""
        from ..pipeline import resolve_split
        from ..sampler import FewShotSplit

        few = super().training_data(few, task, cfg)
        path = self.cfg.get("soft_labels")
        if not path:
            raise ConfigError("strategy distill needs soft labels; fix: strategy.soft_labels=<file.npz> (method=pet "
                              "writes <run dir>/soft_labels.npz), or use method=pet")
        if task is None or few is None:
            raise ConfigError("strategy distill trains on the task's unlabelled pool; fix: train through "
                              "promptlearn.pipeline.train(..., task=task) with strategy.k_shot > 0")
        try:
            with np.load(path, allow_pickle=False) as z:
                idx, logits = z["idx"].astype(np.int64), z["logits"]
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"strategy.soft_labels={str(path)!r}: cannot read idx/logits ({exc}); fix: the "
                              "soft_labels.npz a PET run wrote") from None
        if logits.ndim != 2 or logits.shape[1] != len(task.labels):
            raise ConfigError(f"strategy.soft_labels={str(path)!r}: logits have shape {logits.shape}, task "
                              f"{task.name!r} has {len(task.labels)} classes; fix: soft labels of this task")
        pool = resolve_split(task, "unlabeled", few)  # no label column: labels are never read
        row = {int(x): i for i, x in enumerate(pool["idx"][:])}
        missing = [int(i) for i in idx if int(i) not in row]
        if missing:
            raise ConfigError(f"strategy.soft_labels={str(path)!r}: pool id {missing[0]} is not in the unlabelled "
                              "pool of this run (another seed or K?); fix: soft labels from the same seed and K")
        data = pool.select([row[int(i)] for i in idx])
        data = data.add_column(SOFT_LABELS, [list(map(float, t)) for t in soft_targets(logits, self.temperature)])
        return FewShotSplit(train=data, dev=few.dev, train_ids=[int(i) for i in idx], dev_ids=few.dev_ids,
                            checksum=few.checksum)

    def compute_loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return distillation_loss(model(**batch).head_logits, batch[SOFT_LABELS], self.temperature)
