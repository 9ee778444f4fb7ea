"""Export a trained prompt model for CPU serving: ONNX (``torch.onnx.export`` through ``torch.export``), run
by onnxruntime -- no PyTorch model, no LM weights to load at serving time.

``export_onnx(model, directory)`` (also ``model.export(directory)`` and ``python -m promptlearn.export``) writes::

    model.onnx      the whole scoring graph: (soft-token injection,) the LM (with its LoRA / BitFit adapter),
                    the mask gather, the LM head at the mask, the verbalizer (and its calibration): class log-scores
    tokenizer/      the tokenizer files
    export.json     the model's spec (template, labels, ...), the graph's input names, opset, the check's result

and checks the ONNX graph against the PyTorch model on a few inputs (onnxruntime, when installed).  Batch size
and sequence length are dynamic.  :class:`OnnxPromptModel` serves the export: the same template encoding, the
one batcher and the one inference loop as ``PromptModel.predict`` -- only the forward runs in onnxruntime::

    from promptlearn.export import OnnxPromptModel
    OnnxPromptModel(directory).predict(["a gorgeous film"])   # [{'label': 'positive', 'probs': {...}}]

How: ``torch.export`` (the exporter's first step) traces the model's Python with fake tensors.  PromptModel's
restricted LM head (and a verbalizer that reads the head's input) stops the head with an exception raised in a
pre-hook, which ``torch.export`` cannot trace; while exporting, ``model.traceable`` lets the head finish (at the mask
position only: one ``[B, V]`` projection instead of ``[B, T]``) and reads its input through the hook: the same scores
to float rounding (the check confirms it).  Not exported (refused with a message): models that
average LM-BFF demonstration sets (the averaging happens outside the forward) and exact multi-token verbalizers
(their batch expansion); deep prompts (P-tuning v2) are refused if their cache cannot be traced.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, PromptlearnError

__all__ = ["export_onnx", "OnnxPromptModel", "ExportError", "EXPORT_CONFIG", "ONNX_FILE", "main"]

EXPORT_CONFIG = "export.json"
ONNX_FILE = "model.onnx"
FORMAT = "promptlearn-onnx/1"
INPUTS = ("input_ids", "attention_mask", "mask_pos", "token_type_ids", "soft_ids")


class ExportError(PromptlearnError, RuntimeError):
    """The model cannot be exported, or the exported graph does not reproduce its scores."""


class _Scores(nn.Module):
    """``model(**inputs).logits`` with positional inputs (what the exporter traces)."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, args))).logits


def _example_rows(template: Any) -> list[dict[str, str]]:
    texts = ["a fine film , really", "the plot is boring and the acting is bad , so bad that it hurts", "ok"]
    fields = list(template.fields) or ["text_a"]
    return [{f: t if j == 0 else "and so it goes" for j, f in enumerate(fields)} for t in texts]


def _batch(template: Any, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    from .data import PromptCollator

    return PromptCollator(template.tokenizer.pad_token_id)([template.encode(r) for r in rows])


def _refuse(model: nn.Module) -> None:
    from .verbalizers import WORD_LOGPROBS

    if getattr(model, "demonstrations", None) is not None:
        raise ExportError("export: the model scores with LM-BFF demonstrations (it averages the class scores of "
                          f"{model.demonstrations.num_sets} demonstration sets outside its forward), which one graph "
                          "does not hold; fix: export a model trained without demonstrations (demonstrations=none)")
    verbalizer = getattr(model, "verbalizer", None)
    if verbalizer is not None and verbalizer.input == WORD_LOGPROBS:
        raise ExportError("export: the verbalizer scores multi-token label words exactly (n masks per word, a batch "
                          "expansion inside the forward); fix: verbalizer.multi_token=mean|first|max, or single-token "
                          "label words")


def export_onnx(model: nn.Module, directory: str | Path, opset: int | None = None, check: bool = True,
                atol: float = 1e-4) -> Path:
    """Write ``model`` as ONNX to ``directory`` (see the module doc); returns the directory.

    ``check``: score a few inputs with onnxruntime and the PyTorch model and raise :class:`ExportError` if a class
    score differs by more than ``atol`` (recorded in ``export.json`` as ``check.max_abs_diff``)."""
    _refuse(model)
    template = model.template
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    batch = _batch(template, _example_rows(template))
    accepted = inspect.signature(type(model).forward).parameters
    names = [n for n in INPUTS if n in batch and n in accepted]
    traceable = getattr(model, "traceable", None)
    was_training = model.training
    model.eval()
    batch_dim = torch.export.Dim("batch")
    seq_dim = torch.export.Dim("seq", max=max(int(template.max_length), batch["input_ids"].shape[1] + 1))
    dynamic = tuple({0: batch_dim} if n == "mask_pos" else {0: batch_dim, 1: seq_dim} for n in names)
    t0 = time.perf_counter()
    try:
        if traceable is not None:
            model.traceable = True  # see the module doc: the full head at the mask, no exception-stopped head
        with torch.no_grad():
            torch.onnx.export(_Scores(model, names).eval(), tuple(batch[n] for n in names), str(d / ONNX_FILE),
                              input_names=names, output_names=["logits"], dynamo=True, dynamic_shapes=(dynamic,),
                              **({"opset_version": int(opset)} if opset else {}))
    except PromptlearnError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise ExportError(f"export: torch.onnx.export failed for this {type(model).__name__} (soft prompt "
                          f"{getattr(getattr(model, 'soft_prompt', None), 'config', lambda: None)()}): "
                          f"{type(exc).__name__}: {(first[0] if first else '')[:300]}; fix: export a model with "
                          "input soft tokens or a hard template (deep prompts may not trace)") from exc
    finally:
        if traceable is not None:
            model.traceable = traceable
        model.train(was_training)
    export_s = time.perf_counter() - t0
    template.tokenizer.save_pretrained(str(d / "tokenizer"))
    info: dict[str, Any] = {"format": FORMAT, "spec": model.spec.to_dict(), "inputs": names, "outputs": ["logits"],
                            "opset": opset, "torch": torch.__version__, "export_s": round(export_s, 2)}
    (d / EXPORT_CONFIG).write_text(json.dumps(info, indent=2))
    if check:
        try:
            served = OnnxPromptModel(d)
        except ImportError:
            served = None
        if served is not None:
            rows = _example_rows(template) + [{f: "great" for f in (template.fields or ["text_a"])}]
            b = _batch(template, rows)
            with torch.no_grad():
                ref = model.eval()(**{n: b[n] for n in names}).logits.float().numpy()
                model.train(was_training)
            got = served(**{n: b[n] for n in names}).logits.numpy()
            diff = float(np.abs(got - ref).max())
            info["check"] = {"rows": len(rows), "max_abs_diff": diff, "atol": atol}
            (d / EXPORT_CONFIG).write_text(json.dumps(info, indent=2))
            if not diff <= atol:
                raise ExportError(f"export: the ONNX graph's class scores differ from the model's by {diff:.3g} "
                                  f"(more than atol={atol}) on {len(rows)} check inputs; the export in {d} is not "
                                  "usable; fix: report it with the model's spec")
    return d


class OnnxPromptModel(nn.Module):
    """An exported model served by onnxruntime behind the prompt model's scoring interface.

    ``forward(**batch)`` -> :class:`~promptlearn.prompt_model.PromptOutput` (class log-scores), so
    :meth:`predict` is :func:`promptlearn.serialization.predict`: the template's encoding, the one batcher, the one
    inference loop."""

    kind = "onnx"

    def __init__(self, directory: str | Path, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort
        from transformers import AutoTokenizer

        from .spec import ModelSpec
        from .template import Template

        d = Path(directory)
        if not (d / EXPORT_CONFIG).is_file() or not (d / ONNX_FILE).is_file():
            raise ConfigError(f"{d} is not an ONNX export (no {EXPORT_CONFIG} / {ONNX_FILE}); fix: write one with "
                              "python -m promptlearn.export --model MODEL_DIR --out DIR")
        info = json.loads((d / EXPORT_CONFIG).read_text())
        if info.get("format") != FORMAT:
            raise ConfigError(f"{d / EXPORT_CONFIG}: unknown format {info.get('format')!r} (expected {FORMAT!r})")
        self.info = info
        self.spec = ModelSpec.from_dict(info["spec"])
        tokenizer = AutoTokenizer.from_pretrained(str(d / "tokenizer"))
        self.template = Template(tokenizer=tokenizer, **{**self.spec.template,
                                                          "require_mask": self.spec.kind != "classifier"})
        self.labels = list(self.spec.labels)
        self.demonstrations = None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(d / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def forward(self, **batch: torch.Tensor) -> Any:
        from .prompt_model import PromptOutput

        missing = [n for n in self.input_names if n not in batch]
        if missing:
            raise ConfigError(f"the ONNX graph needs input {missing[0]!r} (it takes {self.input_names}); fix: encode "
                              "the inputs with the export's template (OnnxPromptModel.predict does)")
        feed = {n: batch[n].cpu().numpy().astype(np.int64) for n in self.input_names}
        return PromptOutput(logits=torch.from_numpy(self.session.run(["logits"], feed)[0]))

    def predict(self, inputs: Any, batch_size: int = 32) -> Any:
        """Labels and class probabilities for raw strings or field dicts, as ``PromptModel.predict``."""
        from .serialization import predict

        return predict(self, inputs, batch_size=batch_size)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m promptlearn.export --model MODEL_DIR --out DIR [--opset N] [--no-check]``"""
    from .distributed import single_process_entry

    single_process_entry("promptlearn.export")
    p = argparse.ArgumentParser(prog="python -m promptlearn.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a saved model directory (save_model=true / save_pretrained)")
    p.add_argument("--out", required=True, help="the export directory (model.onnx, tokenizer/, export.json)")
    p.add_argument("--base-model", default=None, help="load the saved model on this base LM instead of the recorded one")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch check")
    p.add_argument("--atol", type=float, default=1e-4, help="largest class-score difference the check accepts")
    a = p.parse_args(argv)
    from .serialization import load_prompt_model

    try:
        try:
            model = load_prompt_model(a.model, base_model=a.base_model)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"--model {a.model}: {exc}; fix: point it at a directory written by save_model=true "
                              "or save_pretrained()") from exc
        out = export_onnx(model, a.out, opset=a.opset, check=not a.no_check, atol=a.atol)
    except PromptlearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = json.loads((out / EXPORT_CONFIG).read_text())
    size = (out / ONNX_FILE).stat().st_size + sum(f.stat().st_size for f in out.glob(ONNX_FILE + "*.data"))
    check = info.get("check")
    print(f"exported {a.model} to {out / ONNX_FILE} ({size / 1e6:.2f} MB, inputs {info['inputs']}, "
          f"{info['export_s']:.1f}s)" + (f"; onnxruntime vs PyTorch on {check['rows']} inputs: max |diff| "
                                         f"{check['max_abs_diff']:.2e}" if check else "; not checked"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
