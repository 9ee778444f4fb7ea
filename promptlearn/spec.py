"""One spec, one builder.

A :class:`ModelSpec` is the plain, JSON-serialisable description of a model: which LM (Hub id or
directory, and revision), the template, the verbalizer (type + options), the soft-prompt encoder,
the labels, the strategy its weights come from and how it was calibrated.  :func:`build_model`
turns a spec into a model, and it is the only place that does: the CLI builds its spec from the
Hydra config (:func:`spec_from_config`), ``from_pretrained`` reads it from ``promptlearn.json``,
and ``model.spec`` gives it back for any model -- ``build_model(model.spec)`` is the same model up
to its trained weights (which live beside the spec in a saved model).  An adapter (``spec.adapter``:
LoRA through PEFT, BitFit; :mod:`promptlearn.adapters`) is part of the spec: the model's constructor applies
it to the LM it loads, so the builder rebuilds the wrapped model and the saved artifact holds only the adapter's
weights.

Model kinds (``spec.kind``) are a small registry: ``prompt`` (:class:`~promptlearn.PromptModel`)
and ``classifier`` (the [CLS]-head baseline); each class implements ``from_spec`` and ``spec``.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import nn

from .registry import Registry

__all__ = ["ModelSpec", "build_model", "spec_from_config", "MODEL_KINDS", "register_model_kind"]


@dataclass
class ModelSpec:
    kind: str = "prompt"
    base_model: str | None = None
    revision: str | None = None
    template: dict[str, Any] = field(default_factory=dict)  # Template(**template, tokenizer=...)
    verbalizer: dict[str, Any] | None = None  # {"type": "manual", ...}; None for kind=classifier
    labels: list[str] = field(default_factory=list)
    soft_prompt: dict[str, Any] | None = None  # {"type": "embedding" | "lstm" | "mlp" | "deep", ...}
    strategy: str | None = None  # the strategy that trained the weights (None: not trained)
    trained: list[str] = field(default_factory=list)  # the parameter groups it trained (lm, prompt, ...)
    calibration: str | None = None  # how the verbalizer's prior was measured: content_free | support | None
    demonstrations: dict[str, Any] | None = None  # LM-BFF demonstrations the model scores with (their support rows)
    adapter: dict[str, Any] | None = None  # {"type": "lora", "r": 8, ...} | {"type": "bitfit"}: applied to the LM by the builder

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"model spec has unknown keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "ModelSpec":
        return dataclasses.replace(self, **changes)


MODEL_KINDS: Registry = Registry("model kind", nn.Module, "kind")
register_model_kind = MODEL_KINDS.register


def _kinds() -> Registry:
    from .classifier import ClassifierModel
    from .prompt_model import PromptModel

    for cls in (PromptModel, ClassifierModel):  # the built-in kinds, whatever else was registered
        MODEL_KINDS.setdefault(cls.kind, cls)
    return MODEL_KINDS


def build_model(spec: ModelSpec | Mapping[str, Any], tokenizer: Any = None, mlm: nn.Module | None = None,
                lm_source: str | None = None, **load_kwargs: Any) -> nn.Module:
    """The model a spec describes.

    ``tokenizer``/``mlm`` reuse an already loaded LM; ``lm_source`` loads the LM from another place
    than ``spec.base_model`` (a saved artifact's ``lm/`` directory) while the spec keeps naming the base;
    ``load_kwargs`` go to transformers' ``from_pretrained`` (``torch_dtype=...``).
    """
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec.from_dict(spec)
    return _kinds().get_class(spec.kind).from_spec(spec, tokenizer=tokenizer, mlm=mlm, lm_source=lm_source,
                                                   **load_kwargs)


def _verbalizer_config(c: Mapping[str, Any]) -> dict[str, Any]:
    """The ``verbalizer`` config; promptlearn 0.1's forms (label words as the value, ``verbalizer_options``)
    are translated with a warning."""
    v = c.get("verbalizer")
    options = {"type", "label_words", "aggregation", "multi_token", "prefix_space", "max_subtokens", "allow_shared"}
    old = isinstance(v, str) or (isinstance(v, Mapping) and not set(map(str, v)) & options)
    if old or c.get("verbalizer_options") is not None:
        warnings.warn("`verbalizer: <label words>` and `verbalizer_options` are now `verbalizer.label_words` and "
                      "`verbalizer.<option>` (the verbalizer config group); translated for this run",
                      FutureWarning, stacklevel=3)
    cfg = {"label_words": v} if old else dict(v or {"label_words": None})
    cfg.update(c.get("verbalizer_options") or {})
    return retype_verbalizer_config(cfg)


def _verbalizer_groups() -> dict[str, dict[str, Any]]:
    """``{type: defaults}`` of the shipped ``conf/verbalizer/<type>.yaml`` group files."""
    import yaml
    from pathlib import Path

    out = {}
    for path in sorted((Path(__file__).resolve().parent.parent / "conf" / "verbalizer").glob("*.yaml")):
        d = yaml.safe_load(path.read_text()) or {}
        out[str(d.get("type", path.stem))] = d
    return out


def retype_verbalizer_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``verbalizer.type=T`` on top of another group's defaults (the default group is ``manual``) means
    ``verbalizer=T`` plus the explicit overrides: T's own defaults fill in, and an option T does not take is
    dropped when its value is another group's default (a leftover of that group, not the user's choice).  An
    option set to a non-default value stays, so T refuses it by name.  Types without a shipped group file
    (plugins) are returned unchanged."""
    from .verbalizers import DEFAULT_TYPE

    cfg = dict(cfg)
    groups = _verbalizer_groups()
    own = groups.get(str(cfg.get("type") or DEFAULT_TYPE))
    if own is None:
        return cfg
    others = [g for t, g in groups.items() if g is not own]
    leftover = {k for k, v in cfg.items() if k not in own and any(k in g and g[k] == v for g in others)}
    if not leftover:  # the group of this type (or a Python dict): as given
        return cfg
    return {**own, **{k: v for k, v in cfg.items() if k not in leftover}}


def spec_from_config(c: Mapping[str, Any], task: Any, strategy: Any) -> ModelSpec:
    """The spec of a CLI run: model, template and verbalizer from the config (task defaults), then the
    strategy's changes (soft tokens, prompt encoder, or a classifier instead of a prompt model)."""
    model_cfg = c.get("model") or {}
    vcfg = _verbalizer_config(c)
    if "label_words" in vcfg and vcfg["label_words"] is None:  # a verbalizer with label words: the task's by default
        vcfg["label_words"] = task.verbalizer
    spec = ModelSpec(
        kind="prompt",
        base_model=model_cfg.get("name_or_path"),
        revision=model_cfg.get("revision") or None,
        template={"text": c.get("template") or task.template, "max_length": c.get("max_length") or task.max_length,
                  "truncate": c.get("truncate", "tail"), "name": task.name},
        verbalizer=vcfg,
        labels=list(task.labels),
    )
    return strategy.adapt_spec(spec, task)
