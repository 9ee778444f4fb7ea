"""Saving and loading prompt models, and prediction on raw strings.

Layout of a saved directory::

    promptlearn.json        template, verbalizer, soft-prompt encoder config, base-model reference
    prompt.safetensors      prompt parameters (soft tokens / prompt encoder), if any
    lm/                     the masked LM + tokenizer -- only when the LM was trained (or save_lm=True)

A fixed-LM (prompt-tuning) run therefore stores kilobytes, not the LM: loading it takes the base
model from ``base_model`` (the Hub id or directory recorded at save time, or one given to
:func:`load_prompt_model`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .data import PromptCollator

__all__ = ["save_prompt_model", "load_prompt_model", "predict", "CONFIG_NAME", "PROMPT_WEIGHTS"]

CONFIG_NAME = "promptlearn.json"
PROMPT_WEIGHTS = "prompt.safetensors"
FORMAT = "promptlearn/1"


def save_prompt_model(model: nn.Module, directory: str | Path, save_lm: bool | None = None,
                      base_model: str | None = None, materialize: bool = False) -> Path:
    """Write ``model`` to ``directory`` (see the module doc for the layout); returns the directory.

    ``save_lm=None`` saves the LM only if it was tuned (``model.lm_trained``, set by the trainer).
    ``materialize=True`` stores a reparameterised prompt (LSTM/MLP encoder, projected deep prefixes)
    as the plain vectors it produces, as PEFT does: the same logits, a fraction of the size, but no
    encoder to continue training.
    """
    from safetensors.torch import save_file

    from .classifier import ClassifierModel

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    t = model.template
    is_classifier = isinstance(model, ClassifierModel)
    if save_lm is None:
        save_lm = is_classifier or bool(getattr(model, "lm_trained", False))
    base = base_model or getattr(getattr(model.mlm, "config", None), "_name_or_path", None) or t.tokenizer.name_or_path
    if Path(str(base)).exists():  # a local directory: record it absolutely so the artifact loads from anywhere
        base = str(Path(str(base)).resolve())
    cfg: dict[str, Any] = {
        "format": FORMAT,
        "kind": "classifier" if is_classifier else "prompt",
        "base_model": str(base),
        "base_revision": getattr(model, "base_revision", None),
        "lm_saved": bool(save_lm),
        "template": {"text": t.text, "max_length": t.max_length, "truncate": t.truncate, "name": t.name,
                     "require_mask": t.has_mask},
    }
    if is_classifier:
        cfg["labels"] = model.labels
    else:
        v = model.verbalizer
        cfg["verbalizer"] = {"label_words": v.label_words, "labels": v.labels, "aggregation": v.aggregation,
                             "multi_token": v.multi_token, "prefix_space": v.prefix_space,
                             "calibration": v.calibration.tolist() if v.calibrated else None}
        sp = getattr(model, "soft_prompt", None)
        if sp is not None:
            cfg["soft_prompt"] = dict(getattr(sp, "build_config", None) or {"type": "embedding"})
            if materialize and hasattr(sp, "plain"):
                from .soft_prompt import SoftPrompt

                sp = sp.plain()
                cfg["soft_prompt"] = ({"type": "embedding"} if isinstance(sp, SoftPrompt)
                                      else {**cfg["soft_prompt"], "prefix_projection": False})
            state = {k: v.detach().cpu().contiguous() for k, v in sp.state_dict().items()}
            save_file(state, str(d / PROMPT_WEIGHTS))
    if save_lm:
        model.mlm.save_pretrained(d / "lm")
        t.tokenizer.save_pretrained(d / "lm")
    (d / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
    return d


def load_prompt_model(directory: str | Path, base_model: str | None = None, **model_kwargs: Any) -> nn.Module:
    """Load what :func:`save_prompt_model` wrote; ``base_model`` overrides the recorded base LM."""
    from safetensors.torch import load_file

    from .classifier import ClassifierModel
    from .prompt_model import PromptModel, load_backbone
    from .template import Template
    from .verbalizer import Verbalizer

    d = Path(directory)
    if not (d / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{d} is not a saved promptlearn model (no {CONFIG_NAME})")
    cfg = json.loads((d / CONFIG_NAME).read_text())
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{d / CONFIG_NAME}: unknown format {cfg.get('format')!r} (expected {FORMAT!r})")
    source = str(d / "lm") if cfg["lm_saved"] else (base_model or cfg["base_model"])
    if not cfg["lm_saved"] and base_model is None and cfg.get("base_revision"):
        model_kwargs.setdefault("revision", cfg["base_revision"])
    tc = cfg["template"]
    if cfg["kind"] == "classifier":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, **model_kwargs)
        template = Template(tc["text"], tokenizer, max_length=tc["max_length"], name=tc["name"],
                            truncate=tc["truncate"], require_mask=False)
        return ClassifierModel.from_pretrained(source, template, cfg["labels"], **model_kwargs).eval()
    tokenizer, mlm = load_backbone(source, **model_kwargs)
    template = Template(tc["text"], tokenizer, max_length=tc["max_length"], name=tc["name"], truncate=tc["truncate"])
    vc = cfg["verbalizer"]
    verbalizer = Verbalizer(vc["label_words"], tokenizer, labels=vc["labels"], aggregation=vc["aggregation"],
                            multi_token=vc["multi_token"], prefix_space=vc["prefix_space"], name=tc["name"])
    if vc.get("calibration") is not None:
        verbalizer.calibration = torch.tensor(vc["calibration"])
        verbalizer.calibrated = True
    soft_prompt = None
    if cfg.get("soft_prompt"):
        from .soft_prompt import build_soft_prompt

        opts = dict(cfg["soft_prompt"])
        soft_prompt = build_soft_prompt(template.soft_spec, mlm, opts.pop("type", "embedding"), **opts)
        soft_prompt.build_config = dict(cfg["soft_prompt"])
        soft_prompt.load_state_dict(load_file(str(d / PROMPT_WEIGHTS)))
    model = PromptModel(mlm, template, verbalizer, soft_prompt=soft_prompt).eval()
    model.lm_trained = bool(cfg["lm_saved"])  # re-saving keeps a tuned LM
    model.base_revision = cfg.get("base_revision")
    return model


@torch.no_grad()
def predict(model: nn.Module, inputs: str | Mapping[str, Any] | Sequence[str | Mapping[str, Any]],
            batch_size: int = 32) -> list[dict[str, Any]]:
    """Labels and class probabilities for raw strings or field dicts.

    A plain string fills the template's first field (``text_a`` for single-sentence tasks); use a
    dict such as ``{"text_a": premise, "text_b": hypothesis}`` for pairs.
    """
    template = model.template
    single = isinstance(inputs, (str, Mapping))
    items = [inputs] if single else list(inputs)
    first = template.fields[0] if template.fields else "text_a"
    rows = [{first: x} if isinstance(x, str) else dict(x) for x in items]
    labels = model.labels if hasattr(model, "labels") else model.verbalizer.labels
    device = next(model.parameters()).device
    collate = PromptCollator(template.tokenizer.pad_token_id)
    was_training = model.training
    model.eval()
    out: list[dict[str, Any]] = []
    try:
        for i in range(0, len(rows), batch_size):
            chunk = rows[i: i + batch_size]
            enc = template.encode_batch({k: [r.get(k) for r in chunk] for k in {k for r in chunk for k in r}})
            feats = [{k: v[j] for k, v in enc.items()} for j in range(len(chunk))]
            batch = {k: v.to(device) for k, v in collate(feats).items()}
            probs = torch.softmax(model(**batch).logits.float(), -1).cpu()
            for p in probs:
                out.append({"label": labels[int(p.argmax())], "probs": {n: float(x) for n, x in zip(labels, p)}})
    finally:
        model.train(was_training)
    return out[0] if single else out
