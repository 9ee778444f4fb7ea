"""ONNX export for CPU serving: the exported graph gives the PyTorch model's class scores."""

import json
import subprocess
import sys

import pytest
import torch

from promptlearn import ModelSpec, build_model
from promptlearn.data import PromptCollator
from promptlearn.export import ExportError, OnnxPromptModel, export_onnx

from conftest import ROOT

pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

ROWS = ["a good film", "the plot is boring and the acting is bad , really bad", "great",
        "i love this film , it was fun and the story is good"]


def _spec(model_dir, text="{text_a} It was {mask}.", verbalizer=None, adapter=None):
    return ModelSpec(base_model=str(model_dir), template={"text": text, "max_length": 32, "name": "t"},
                     verbalizer=verbalizer or {"type": "manual", "label_words": {"neg": ["bad", "awful"], "pos": "great"}},
                     labels=["neg", "pos"], adapter=adapter)


def _scores(model, rows):
    t = model.template
    batch = PromptCollator(t.tokenizer.pad_token_id)([t.encode({"text_a": r}) for r in rows])
    with torch.no_grad():
        return model.eval()(**batch).logits.float()


@pytest.mark.parametrize("case", ["hard", "soft_lora", "soft_verbalizer_calibrated"])
def test_onnx_export_gives_the_same_class_scores(case, tiny_model_dirs, tmp_path):
    torch.manual_seed(0)
    kind = "roberta" if case == "soft_lora" else "bert"
    if case == "hard":
        model = build_model(_spec(tiny_model_dirs[kind]))
    elif case == "soft_lora":  # soft tokens + a LoRA adapter with non-zero B (as after training)
        model = build_model(_spec(tiny_model_dirs[kind], "{soft*3} {text_a} It was {mask} .",
                                  adapter={"type": "lora", "r": 4, "target_modules": ["query", "value"]}))
        with torch.no_grad():
            for n, p in model.mlm.named_parameters():
                if "lora_B" in n:
                    p.normal_()
    else:  # a soft head (mask_hidden) with a calibration prior
        model = build_model(_spec(tiny_model_dirs[kind], verbalizer={"type": "soft", "label_words":
                                                                        {"neg": "bad", "pos": "great"}}))
        from promptlearn.calibration import calibrate

        calibrate(model, "content_free", torch.device("cpu"))
        assert model.verbalizer.calibrated
    out = model.export(str(tmp_path / "onnx"))
    info = json.loads((out / "export.json").read_text())
    assert info["check"]["max_abs_diff"] <= 1e-4
    served = OnnxPromptModel(out)
    for rows in (ROWS, ROWS[:1]):  # dynamic batch size and length
        torch.testing.assert_close(_scores(served, rows), _scores(model, rows), atol=1e-5, rtol=1e-5)
    got, ref = served.predict(ROWS), model.predict(ROWS)
    assert [p["label"] for p in got] == [p["label"] for p in ref]
    assert all(g["probs"] == pytest.approx(r["probs"], abs=1e-5) for g, r in zip(got, ref))


def test_export_cli_and_refusals(tiny_model_dirs, tmp_path):
    model = build_model(_spec(tiny_model_dirs["bert"]))
    saved = model.save_pretrained(str(tmp_path / "m"))
    proc = subprocess.run([sys.executable, "-m", "promptlearn.export", "--model", str(saved), "--out",
                           str(tmp_path / "onnx")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "exported" in proc.stdout and "max |diff|" in proc.stdout
    torch.testing.assert_close(_scores(OnnxPromptModel(tmp_path / "onnx"), ROWS), _scores(model, ROWS),
                               atol=1e-5, rtol=1e-5)
    proc = subprocess.run([sys.executable, "-m", "promptlearn.export", "--model", str(tmp_path / "nothing"), "--out",
                           str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --model") and "fix:" in proc.stderr
    exact = build_model(_spec(tiny_model_dirs["bert"], verbalizer={"type": "manual", "label_words":
                                                                      {"neg": "bad", "pos": "greatly"}}))
    assert exact.verbalizer.input == "word_logprobs"  # 'greatly' = great ##ly, scored exactly with two masks
    with pytest.raises(ExportError, match="multi_token"):
        exact.export(str(tmp_path / "exact"))
