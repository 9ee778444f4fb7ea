"""The strategy contract: how a model is built, which parameter groups train, and what the loss is.

A strategy is an object made from its config (``conf/strategy/<name>.yaml``; the optimiser
defaults every strategy shares live once in ``conf/shared/train.yaml``).  It answers three
questions, each in one overridable method:

``adapt_spec(spec, task)``  how the model is built: the strategy's changes to the spec the
                            config describes (soft tokens before the template, a prompt encoder, a
                            classifier instead of a prompt model, ...);
``parameter groups``        ``trains`` names the groups that train -- ``lm`` (the LM's own
                            weights), ``prompt`` (soft tokens / prompt encoder / deep prefixes),
                            ``verbalizer`` (a verbalizer's parameters, e.g. a soft head) and
                            ``adapter`` (PEFT adapters such as LoRA) -- each with its learning rate
                            (``lr``; ``prompt_lr``, default ``lr``; ``verbalizer_lr``, default
                            ``prompt_lr``; ``adapter_lr``, default ``lr``, or ``prompt_lr`` when
                            ``lr`` is 0);
``compute_loss(model, batch)``  the training loss (cross-entropy over the class scores by default;
                            distillation is another ``compute_loss``, not a fork of the model);
``training_data(few, task, cfg)``  what the trainer trains and selects on (the few-shot split by
                            default; distillation trains on the soft-labelled unlabelled pool).

Every strategy that trains the LM takes PET's auxiliary MLM loss: ``mlm_weight`` w is the fraction of
the loss that is MLM, ``loss = (1 - w) * compute_loss + w * MLM`` (:meth:`Strategy.training_loss`),
the MLM term on ``mlm_batch_size`` unlabelled pool examples per step (encoded with the template,
``mlm_probability`` of their non-special tokens masked as BERT does).  PET's paper writes the same
``(1 - α) L_CE + α L_MLM`` with α = 1e-4, but PET's code calls the *CE* weight ``alpha`` (default
0.9999; pet issue #30): ``strategy.mlm_weight=1e-4`` is the paper's setting.

The trainer (:func:`promptlearn.trainer.train`) asks the strategy and nothing else; ``run.py``
never looks at a strategy's name.  A new strategy is one module with a subclass and
``@register_strategy("name")`` plus a YAML file (see ``CONTRIBUTING.md``).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import adapter_parameter_ids
from ..errors import ConfigError

__all__ = ["Strategy", "GROUPS", "parameter_groups"]

GROUPS = ("lm", "prompt", "verbalizer", "adapter")


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Every parameter of ``model`` in exactly one group (model order within a group).

    ``prompt``: the soft prompt's; ``verbalizer``: the verbalizer's; ``adapter``: PEFT adapter
    parameters of the LM; ``lm``: the rest of the LM (for the classifier baseline, its head too).
    """
    groups: dict[str, list[nn.Parameter]] = {g: [] for g in GROUPS}
    seen: set[int] = set()

    def add(group: str, params: Any) -> None:
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                groups[group].append(p)

    prompt = getattr(model, "soft_prompt", None)
    verbalizer = getattr(model, "verbalizer", None)
    lm = getattr(model, "mlm", model)
    prompt_ids = {id(p) for p in prompt.parameters()} if prompt is not None else set()
    verbalizer_ids = {id(p) for p in verbalizer.parameters()} if isinstance(verbalizer, nn.Module) else set()
    own = getattr(model, "adapter_parameter_ids", None)  # BaseModel: the spec's adapter (+ hand-wrapped PEFT)
    adapters = own() if callable(own) else adapter_parameter_ids(lm)
    add("lm", (p for p in lm.parameters() if id(p) not in adapters | prompt_ids | verbalizer_ids))
    if prompt is not None:
        add("prompt", prompt.parameters())
    if isinstance(verbalizer, nn.Module):
        add("verbalizer", verbalizer.parameters())
    add("adapter", (p for p in lm.parameters() if id(p) in adapters))
    add("lm", model.parameters())  # anything else a model subclass holds trains with the LM
    return groups


class Strategy:
    """Base strategy: trains nothing (see the module doc for what subclasses override)."""

    name: ClassVar[str] = ""  # set by @register_strategy
    trains: ClassVar[tuple[str, ...]] = ()
    #: keep a frozen LM in eval mode while training (no dropout noise; OpenPrompt's plm_eval_mode)
    lm_eval_mode_default: ClassVar[bool] = True

    def __init__(self, cfg: Mapping[str, Any] | None = None):
        self.cfg: dict[str, Any] = dict(cfg or {})
        trains = self.cfg.get("trains")
        if trains is not None:  # a config may override the class's groups: strategy.trains=[prompt,verbalizer]
            bad = [g for g in trains if g not in GROUPS]
            if bad:
                raise ConfigError(f"strategy {self.name!r}: unknown parameter group(s) {bad}; groups are {list(GROUPS)}")
            self.trains = tuple(trains)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, trains={self.trains})"

    # ------------------------------------------------------------------ what the run needs
    @property
    def needs_training(self) -> bool:
        return bool(self.trains)

    @property
    def k_shot(self) -> int:
        return int(self.cfg.get("k_shot", 0) or 0)

    # ------------------------------------------------------------------ how the model is built
    def adapt_spec(self, spec: Any, task: Any) -> Any:
        """Soft tokens before the template (``soft_prefix: N``), the prompt encoder (``prompt_encoder``) and an
        adapter on the LM (``adapter: {type: lora | bitfit, ...}``)."""
        text = spec.template["text"]
        n_soft = int(self.cfg.get("soft_prefix", 0) or 0)
        if n_soft:
            text = f"{{soft*{n_soft}}} " + text  # P-tuning style pseudo-tokens before the prompt
        encoder = self.cfg.get("prompt_encoder")
        adapter = self.cfg.get("adapter")
        return spec.replace(template={**spec.template, "text": text},
                            soft_prompt=dict(encoder) if encoder else spec.soft_prompt,
                            adapter=dict(adapter) if adapter else spec.adapter)

    # ------------------------------------------------------------------ what trains, how fast
    def learning_rates(self) -> dict[str, float]:
        c = self.cfg
        lr = float(c.get("lr", 1e-5) or 0.0)
        prompt = float(c["prompt_lr"]) if c.get("prompt_lr") is not None else lr
        return {"lm": lr, "prompt": prompt,
                "verbalizer": float(c["verbalizer_lr"]) if c.get("verbalizer_lr") is not None else prompt,
                # adapters tune the LM in its place: the LM's rate, or the prompt's where the LM is frozen (lr 0)
                "adapter": float(c["adapter_lr"]) if c.get("adapter_lr") is not None else (lr or prompt)}

    def configure(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """Set ``requires_grad`` by ``trains``; returns the training groups (empty lists for frozen ones)."""
        groups = parameter_groups(model)
        frozen = [g for g in ("prompt", "verbalizer", "adapter") if groups[g] and g not in self.trains]
        if frozen:
            warnings.warn(f"strategy {self.name!r} keeps the {' and '.join(frozen)} parameters frozen at their "
                          f"current values (it trains {list(self.trains) or 'nothing'}); choose a strategy that "
                          f"trains them or set strategy.trains=[...]")
        out: dict[str, list[nn.Parameter]] = {}
        for g in GROUPS:
            on = g in self.trains
            for p in groups[g]:
                p.requires_grad_(on)
            out[g] = groups[g] if on else []
        if not any(out.values()):
            raise ConfigError(f"strategy {self.name!r} trains nothing: it trains {list(self.trains)} and the model has "
                             "no such parameters; add {soft} tokens (strategy.soft_prefix=N or template=...), "
                             "a verbalizer with parameters, or choose a strategy that trains the LM")
        return out

    def train_mode(self, model: nn.Module, groups: Mapping[str, list]) -> None:
        """Training mode for ``model``; a frozen LM stays in eval mode (``lm_eval_mode``)."""
        model.train()
        if not groups.get("lm") and bool(self.cfg.get("lm_eval_mode", self.lm_eval_mode_default)):
            getattr(model, "mlm", model).eval()

    # ------------------------------------------------------------------ what it trains on
    def training_data(self, few: Any, task: Any = None, cfg: Mapping[str, Any] | None = None) -> Any:
        """The split the trainer trains on (``.train``) and selects on (``.dev``): ``few`` by default.

        With ``mlm_weight > 0`` this also takes the unlabelled pool for the auxiliary MLM loss: the task's
        pool minus the few-shot examples, labels removed (``pipeline.resolve_split(task, "unlabeled")``),
        ``mlm_pool_size`` of them drawn with the run's seed."""
        self._mlm_pool, self._mlm_batches = None, None
        if self.cfg.get("pseudo_labels"):
            few = self._with_pseudo_labels(few, task)
        if self.mlm_weight > 0:
            if "lm" not in self.trains:
                raise ConfigError(f"strategy.mlm_weight={self.mlm_weight}: the auxiliary MLM loss trains the LM, "
                                  f"which strategy {self.name!r} keeps frozen; fix: strategy=fixed_prompt, or "
                                  "strategy.mlm_weight=0")
            if task is None:
                raise ConfigError("strategy.mlm_weight > 0 needs the task's unlabelled pool; fix: train through "
                                  "promptlearn.pipeline.train(..., task=task) (the CLI does), or mlm_weight=0")
            from ..pipeline import resolve_split

            pool = resolve_split(task, "unlabeled", few)
            size = self.cfg.get("mlm_pool_size")
            if size and int(size) < len(pool):
                pool = pool.shuffle(seed=int((cfg or {}).get("seed", 42))).select(range(int(size)))
            self._mlm_pool, self._mlm_seed = pool, int((cfg or {}).get("seed", 42))
        return few

    def _with_pseudo_labels(self, few: Any, task: Any) -> Any:
        """``few`` with pool rows added to its train set under the labels another model gave them
        (``pseudo_labels``: an ``.npz`` with ``idx`` and ``label``; iPET).  The pool's own labels are never read."""
        import datasets
        import numpy as np

        from ..pipeline import resolve_split
        from ..sampler import FewShotSplit

        path = self.cfg["pseudo_labels"]
        if task is None or few is None:
            raise ConfigError("strategy.pseudo_labels needs the task's pool and a few-shot split; fix: train through "
                              "promptlearn.pipeline.train(..., task=task) with strategy.k_shot > 0")
        try:
            with np.load(path, allow_pickle=False) as z:
                idx, labels = z["idx"].astype(np.int64), z["label"].astype(np.int64)
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"strategy.pseudo_labels={str(path)!r}: cannot read idx/label ({exc}); fix: the .npz "
                              "an iPET generation wrote (next-gen/<model>.npz)") from None
        if len(idx) == 0:
            return few
        pool = resolve_split(task, "unlabeled", few)
        row = {int(x): i for i, x in enumerate(pool["idx"][:])}
        missing = [int(i) for i in idx if int(i) not in row]
        if missing or labels.min() < 0 or labels.max() >= len(task.labels):
            raise ConfigError(f"strategy.pseudo_labels={str(path)!r}: ids or labels outside this run's unlabelled pool "
                              f"and classes (e.g. id {missing[:1]}); fix: pseudo labels made for the same seed and K")
        extra = pool.select([row[int(i)] for i in idx]).add_column("label", labels.tolist())
        extra = extra.cast(few.train.features)  # the same ClassLabel as the few-shot rows
        train = datasets.concatenate_datasets([few.train, extra])
        return FewShotSplit(train=train, dev=few.dev, train_ids=few.train_ids + idx.tolist(), dev_ids=few.dev_ids,
                            checksum=few.checksum)

    # ------------------------------------------------------------------ the loss
    @property
    def mlm_weight(self) -> float:
        return float(self.cfg.get("mlm_weight") or 0.0)

    def compute_loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the class scores against ``batch["labels"]``."""
        return F.cross_entropy(model(**batch).logits, batch["labels"])

    def training_loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """What the trainer minimises: ``compute_loss``, mixed with the auxiliary MLM loss when ``mlm_weight`` w > 0:
        ``(1 - w) * compute_loss + w * MLM`` (w is the fraction of the loss that is MLM)."""
        loss = self.compute_loss(model, batch)
        w = self.mlm_weight
        if w <= 0:
            return loss
        return (1 - w) * loss + w * self.mlm_loss(model, batch["input_ids"].device)

    def mlm_loss(self, model: nn.Module, device: torch.device) -> torch.Tensor:
        """Masked-LM loss of the LM on the next batch of unlabelled pool examples (encoded with the template)."""
        if getattr(self, "_mlm_batches", None) is None:
            self._mlm_batches = self._mlm_stream(model)
        batch = {k: v.to(device) for k, v in next(self._mlm_batches).items()}
        return model.mlm(**batch).loss

    def _mlm_stream(self, model: nn.Module) -> Any:
        from transformers import DataCollatorForLanguageModeling

        from ..data import Batches, encode_dataset

        if getattr(self, "_mlm_pool", None) is None:
            raise ConfigError("strategy.mlm_weight > 0 but no unlabelled pool was given; fix: train through "
                              "promptlearn.pipeline.train(..., task=task), or strategy.mlm_weight=0")
        if getattr(model, "soft_prompt", None) is not None:
            raise ConfigError("strategy.mlm_weight > 0 with soft prompt tokens: the MLM loss runs the LM on hard "
                              "tokens only; fix: a hard template, or strategy.mlm_weight=0")
        template = model.template
        encoded = encode_dataset(self._mlm_pool, template, desc="tokenising the MLM pool")
        collate = DataCollatorForLanguageModeling(template.tokenizer, mlm=True,
                                                  mlm_probability=float(self.cfg.get("mlm_probability", 0.15)))
        rows = Batches(encoded, int(self.cfg.get("mlm_batch_size", 8)), template.tokenizer.pad_token_id,
                       order="shuffle", seed=self._mlm_seed)
        keep = [c for c in ("input_ids", "token_type_ids") if c in encoded.column_names]
        view = encoded.with_format(None, columns=keep)
        while True:  # the batcher's seeded order; the collator pads and masks (15%: 80% [MASK], 10% random, 10% kept)
            yield collate([view[i] for i in rows.next_indices()])
