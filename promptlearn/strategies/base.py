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
                            distillation or an auxiliary MLM loss are other ``compute_loss``\\ es,
                            not forks of the model).

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

    # ------------------------------------------------------------------ the loss
    def compute_loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the class scores against ``batch["labels"]``."""
        return F.cross_entropy(model(**batch).logits, batch["labels"])
