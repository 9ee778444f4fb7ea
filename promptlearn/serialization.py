"""Saving and loading models, and prediction on raw strings.

Layout of a saved directory::

    promptlearn.json         the model's spec (see promptlearn.spec.ModelSpec) + which files hold what
    prompt.safetensors       prompt parameters (soft tokens / prompt encoder / deep prefixes), if any
    verbalizer.safetensors   the verbalizer's state (a soft head, the calibration prior), if any
    adapter/ | adapter.safetensors   the spec's adapter state only: LoRA in PEFT's own format (adapter_config.json +
                             adapter_model.safetensors), BitFit's tuned biases -- never the LM's other weights
    lm/                      the masked LM + tokenizer -- only when the strategy trained it (or save_lm=True)

Loading reads the spec and hands it to :func:`promptlearn.spec.build_model`, the same builder the
CLI uses; a fixed-LM (prompt-tuning) run therefore stores kilobytes, not the LM: the base model is
loaded from the spec (the Hub id or directory recorded at save time, at the recorded revision, or
one given to :func:`load_prompt_model`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

__all__ = ["save_prompt_model", "load_prompt_model", "read_config", "predict", "CONFIG_NAME", "PROMPT_WEIGHTS", "VERBALIZER_WEIGHTS"]

CONFIG_NAME = "promptlearn.json"
PROMPT_WEIGHTS = "prompt.safetensors"
VERBALIZER_WEIGHTS = "verbalizer.safetensors"
FORMAT = "promptlearn/2"


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_prompt_model(model: nn.Module, directory: str | Path, save_lm: bool | None = None,
                      base_model: str | None = None, materialize: bool = False) -> Path:
    """Write ``model`` to ``directory`` (see the module doc for the layout); returns the directory.

    ``save_lm=None`` saves the LM if its weights changed (``model.lm_needs_saving()``: the ``lm`` group
    trained, or the model has a new head).  A model with an adapter in its spec (``model.adapter``: LoRA,
    BitFit) saves the adapter's state only; a PEFT model wrapped by hand (not through the spec) is refused rather
    than saved without its adapters.
    ``materialize=True`` stores a reparameterised prompt (LSTM/MLP encoder, projected deep prefixes)
    as the plain vectors it produces, as PEFT does: the same logits, a fraction of the size, but no
    encoder to continue training.
    """
    from safetensors.torch import save_file

    from .backbone import adapter_parameter_ids, unwrap, weight_fingerprint
    from .errors import PromptlearnError

    adapter = getattr(model, "adapter", None)
    if adapter is None and (adapter_parameter_ids(model.mlm) or unwrap(model.mlm) is not model.mlm):
        raise PromptlearnError(
            f"saving a {type(model.mlm).__name__}-wrapped LM that its spec does not describe: its adapters would be "
            "lost; fix: build the model with the adapter in its spec (PromptModel(mlm, template, verbalizer, "
            "adapter={'type': 'lora', ...}) or strategy.adapter=...), or merge them first "
            "(model.mlm = model.mlm.merge_and_unload()) and save with save_lm=True")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    spec = model.spec
    if base_model is not None:
        spec = spec.replace(base_model=base_model)
    if spec.base_model and Path(str(spec.base_model)).exists():  # a local directory: record it absolutely
        spec = spec.replace(base_model=str(Path(str(spec.base_model)).resolve()))
    if save_lm is None:
        save_lm = model.lm_needs_saving()
    if save_lm and adapter is not None:
        raise PromptlearnError(
            f"the model's LM trained (groups {list(model.trained) or ['lm']}) and it has a {adapter.type!r} adapter: "
            "saving both the LM and the adapter is not supported; fix: train only the adapter (do not put lm in "
            "strategy.trains), or merge a LoRA adapter into the LM first (model.mlm.merge_and_unload())")
    files: dict[str, str] = {}
    sp = getattr(model, "soft_prompt", None)
    if sp is not None:
        if materialize and hasattr(sp, "plain"):
            sp = sp.plain()
        spec = spec.replace(soft_prompt=sp.config())
        save_file(_state(sp), str(d / PROMPT_WEIGHTS))
        files["soft_prompt"] = PROMPT_WEIGHTS
    verbalizer = getattr(model, "verbalizer", None)
    if isinstance(verbalizer, nn.Module) and (verbalizer.calibrated or any(True for _ in verbalizer.parameters())):
        save_file(_state(verbalizer), str(d / VERBALIZER_WEIGHTS))
        files["verbalizer"] = VERBALIZER_WEIGHTS
    if adapter is not None:
        files["adapter"] = adapter.save(model.mlm, d)
    if save_lm:
        model.mlm.save_pretrained(d / "lm")
        model.template.tokenizer.save_pretrained(d / "lm")
        files["lm"] = "lm"
    # the base LM's weights, so that prompts sharing one LM can be checked to share it (promptlearn.multitask)
    (d / CONFIG_NAME).write_text(json.dumps({"format": FORMAT, "spec": spec.to_dict(), "lm_saved": bool(save_lm),
                                             "files": files, "lm_fingerprint": weight_fingerprint(model.mlm)},
                                            indent=2))
    _usual_modes(d, files.values())
    return d


def _usual_modes(directory: Path, written: Iterable[str]) -> None:
    """safetensors writes its files readable by their owner only (0600): give the files this save wrote (``written``:
    names in ``directory``, folders included) the mode the config file got from ``open`` under the umask, so a
    model saved on a shared cluster is readable as the user's other files are.  Nothing else is touched."""
    mode = (directory / CONFIG_NAME).stat().st_mode & 0o777
    if mode == 0o600:
        return
    for name in written:
        path = directory / name
        for f in [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []:
            if f.is_file() and not f.is_symlink() and f.stat().st_mode & 0o777 == 0o600:
                os.chmod(f, mode)


def _upgrade_v1(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A ``promptlearn/1`` config (promptlearn 0.1.0) as a ``promptlearn/2`` one."""
    t = cfg["template"]
    spec: dict[str, Any] = {"kind": cfg["kind"], "base_model": cfg["base_model"], "revision": cfg.get("base_revision"),
                            "template": {k: t[k] for k in ("text", "max_length", "truncate", "name", "require_mask")
                                         if k in t},
                            "trained": ["lm"] if cfg["lm_saved"] else []}
    calibration = None
    if cfg["kind"] == "classifier":
        spec.update(labels=cfg["labels"])
    else:
        v = dict(cfg["verbalizer"])
        calibration = v.pop("calibration", None)
        spec.update(labels=v["labels"], verbalizer={"type": "manual", **v}, soft_prompt=cfg.get("soft_prompt"))
        if calibration is not None:
            spec["calibration"] = "content_free"
    return {"format": FORMAT, "spec": spec, "lm_saved": cfg["lm_saved"], "calibration_v1": calibration}


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``promptlearn.json`` of a saved model (upgraded to the current format), its ``spec`` a ``ModelSpec``."""
    from .spec import ModelSpec

    d = Path(directory)
    if not (d / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{d} is not a saved promptlearn model (no {CONFIG_NAME})")
    cfg = json.loads((d / CONFIG_NAME).read_text())
    if cfg.get("format") == "promptlearn/1":
        cfg = _upgrade_v1(cfg)
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{d / CONFIG_NAME}: unknown format {cfg.get('format')!r} (expected {FORMAT!r})")
    spec = ModelSpec.from_dict(cfg["spec"])
    if cfg["lm_saved"] and "lm" not in spec.trained:  # its LM differs from the base: a re-save must keep it
        spec = spec.replace(trained=sorted({*spec.trained, "lm"}))
    cfg["spec"] = spec
    return cfg


def load_prompt_model(directory: str | Path, base_model: str | None = None, tokenizer: Any = None,
                      mlm: nn.Module | None = None, **load_kwargs: Any) -> nn.Module:
    """Load what :func:`save_prompt_model` wrote; ``base_model`` overrides the recorded base LM;
    ``tokenizer``/``mlm`` reuse an already loaded base LM (several prompts over one LM: :mod:`promptlearn.multitask`;
    refused for a model that saved its own LM); ``load_kwargs`` go to transformers' ``from_pretrained``."""
    from safetensors.torch import load_file

    from .errors import PromptlearnError
    from .spec import build_model

    d = Path(directory)
    cfg = read_config(d)
    spec = cfg["spec"]
    if base_model is not None:
        spec = spec.replace(base_model=base_model, revision=None)
    if mlm is not None and spec.adapter:
        raise PromptlearnError(f"{d}: this model has a {spec.adapter.get('type')!r} adapter on its LM, which would "
                               "change the LM passed in (mlm=) for every other user of it; fix: load it on its own "
                               "(load_prompt_model(dir) without mlm=)")
    if mlm is not None and cfg["lm_saved"]:
        raise PromptlearnError(f"{d}: this model saved its own LM ({d / 'lm'}; strategy {spec.strategy!r} trained "
                               f"{spec.trained}), so it cannot run on another loaded LM; fix: load it on its own "
                               "(load_prompt_model(dir) without mlm=)")
    model = build_model(spec, tokenizer=tokenizer, mlm=mlm, lm_source=str(d / "lm") if cfg["lm_saved"] else None,
                        **load_kwargs)
    if cfg.get("files", {}).get("adapter") and getattr(model, "adapter", None) is not None:
        model.adapter.load(model.mlm, d, cfg["files"]["adapter"])
    if (d / PROMPT_WEIGHTS).is_file() and getattr(model, "soft_prompt", None) is not None:
        model.soft_prompt.load_state_dict(load_file(str(d / PROMPT_WEIGHTS)))
    if (d / VERBALIZER_WEIGHTS).is_file():
        model.verbalizer.load_state_dict(load_file(str(d / VERBALIZER_WEIGHTS)))
        model.verbalizer.calibration_mode = spec.calibration if model.verbalizer.calibrated else None
    if cfg.get("calibration_v1") is not None:
        model.verbalizer.calibration = torch.tensor(cfg["calibration_v1"])
        model.verbalizer.calibration_mode = spec.calibration
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, inputs: str | Mapping[str, Any] | Sequence[str | Mapping[str, Any]],
            batch_size: int = 32, progress: bool = False) -> list[dict[str, Any]] | dict[str, Any]:
    """Labels and class probabilities for raw strings or field dicts.

    A plain string fills the template's first field (``text_a`` for single-sentence tasks); use a
    dict such as ``{"text_a": premise, "text_b": hypothesis}`` for pairs.  A row without one of the
    template's fields is an error naming it.  Runs through the same batcher and inference loop as
    evaluation (inputs are encoded directly: nothing to cache).  A model that scores with demonstrations
    (``model.demonstrations``, saved in its spec) gets them appended from its saved support rows, and the class
    log-scores of its ``num_sets`` demonstration sets are averaged, as the run scored its test split.
    """
    from datasets import Dataset

    from .inference import score_dataset
    from .template import TemplateError

    template = model.template
    single = isinstance(inputs, (str, Mapping))
    items = [inputs] if single else list(inputs)
    if not items:
        return []
    demos = getattr(model, "demonstrations", None)
    fields = list(demos.fields) if demos is not None else list(template.fields)  # demo_i columns are added here
    first = fields[0] if fields else "text_a"
    rows = [{first: x} if isinstance(x, str) else dict(x) for x in items]
    for i, r in enumerate(rows):
        missing = [f for f in fields if f not in r]
        if missing:
            raise TemplateError(f"predict: input {i} has no field {missing[0]!r} (it has {sorted(r)}); template "
                                f"{template.text!r} needs {fields}; fix: pass a dict with those keys")
    columns = {f: [None if r[f] is None else str(r[f]) for r in rows] for f in fields}
    labels = model.labels
    device = next((p.device for p in model.parameters()), torch.device("cpu"))  # an ONNX-served model has none
    if demos is None:
        sets = [columns]
    else:  # raw inputs have no ids: each one's draws are seeded by its position (never by a support id)
        queries = Dataset.from_dict(columns)
        sets = [{c: list(d[c]) for c in template.fields} for d in demos.eval_sets(queries)]
    logits = sum(score_dataset(model, None, batch_size, device, progress=progress, desc="predicting",
                               encoded=Dataset.from_dict(template.encode_batch(cols)))
                 ["logits"] for cols in sets) / len(sets)
    probs = torch.softmax(torch.from_numpy(logits), -1)
    out = [{"label": labels[int(p.argmax())], "probs": {n: float(x) for n, x in zip(labels, p)}} for p in probs]
    return out[0] if single else out
