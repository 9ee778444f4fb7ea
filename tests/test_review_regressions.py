"""Regression tests for problems an independent review found in the architecture change."""

import json
import warnings

import pytest
import torch

from promptlearn import PromptModel, Template, Verbalizer, build_model
from promptlearn.errors import ConfigError, PromptlearnError
from promptlearn.serialization import load_prompt_model, predict
from promptlearn.spec import MODEL_KINDS, register_model_kind
from promptlearn.strategies import get_strategy
from promptlearn.template import TemplateError

from conftest import tiny_mlm
from test_spec import _compose_toy, _logits
from test_trainer import few_shot, run


def _model(tok, text="{text_a} It was {mask}.", **kw):
    return PromptModel(tiny_mlm("bert", len(tok)), Template(text, tok, max_length=32),
                       Verbalizer({"neg": "bad", "pos": "great"}, tok), **kw)


def test_a_trains_override_that_trains_the_lm_saves_the_lm(bert_tokenizer, tmp_path):
    model = _model(bert_tokenizer)
    run(model, dict(name="fixed_lm", trains=["lm"], lr=1e-3), steps=2)
    assert model.spec.trained == ["lm"] and model.spec.strategy == "fixed_lm"
    saved = model.save_pretrained(str(tmp_path / "m"), base_model="unused")
    assert json.loads((saved / "promptlearn.json").read_text())["lm_saved"] is True
    torch.testing.assert_close(_logits(load_prompt_model(saved)), _logits(model), atol=1e-6, rtol=1e-6)


def test_a_peft_wrapped_model_is_refused_rather_than_saved_without_its_adapters(bert_tokenizer, tmp_path):
    peft = pytest.importorskip("peft")
    wrapped = peft.get_peft_model(tiny_mlm("bert", len(bert_tokenizer)),
                                  peft.LoraConfig(r=2, target_modules=["query"]))
    model = PromptModel(wrapped, Template("{text_a} {mask}", bert_tokenizer), Verbalizer({"a": "bad", "b": "great"},
                                                                                         bert_tokenizer))
    with pytest.raises(PromptlearnError, match="adapters would be lost"):
        model.save_pretrained(str(tmp_path / "m"))
    assert get_strategy("fixed_lm").learning_rates()["adapter"] > 0  # fixed_lm's lr is 0: adapters use prompt_lr


def test_finetune_with_materialize_prompt_saves(tiny_model_dirs, toy_data_root, tmp_path):
    from promptlearn.run import run_experiment

    cfg = _compose_toy(tiny_model_dirs["bert"], toy_data_root, strategy="finetune", save_model="true",
                       materialize_prompt="true", **{"strategy.max_steps": 1, "strategy.k_shot": 2})
    res = run_experiment(cfg, output_dir=tmp_path / "run")
    assert res["saved_model"]["bytes"] > 0 and (tmp_path / "run" / "results.json").is_file()
    # the JSONL command line serves it on its own (its LM trained), under the run's task (its template is
    # "toy-plain"), with per-line errors that match the shared-LM path's
    import json

    from promptlearn.predict import main as predict_main
    from promptlearn.serialization import load_prompt_model

    rows = [{"task": "toy", "text_a": "the movie was great"}, {"text_a": "awful plot"}, {"task": "", "text_a": "x"},
            ["not", "an", "object"]]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = predict_main(["--model", str(tmp_path / "run" / "model"), "--input", str(tmp_path / "in.jsonl"),
                         "--output", str(tmp_path / "out.jsonl"), "--no-progress"])
    got = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert code == 1 and [g["task"] for g in got] == ["toy", "toy", "", None]
    want = load_prompt_model(tmp_path / "run" / "model").predict(["the movie was great", "awful plot"])
    assert [g["probs"] for g in got[:2]] == [pytest.approx(w["probs"], abs=1e-6) for w in want]
    assert got[2]["error"].startswith("line 3: unknown task ''") and "not an object" in got[3]["error"]
    # a mistyped run folder (it holds '='): one line naming both readings, exit 2
    assert predict_main(["--model", str(tmp_path / "task=toy,strategy=finetunne" / "model"), "--input",
                         str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2


def test_building_a_model_never_changes_a_shared_verbalizer(roberta_tokenizer):
    verbalizer = Verbalizer({"neg": "bad", "pos": "great"}, roberta_tokenizer)
    before = verbalizer.token_ids.tolist()
    mlm = tiny_mlm("roberta", len(roberta_tokenizer))
    a = PromptModel(mlm, Template("{text_a} It was {mask} .", roberta_tokenizer), verbalizer)
    b = PromptModel(mlm, Template("{mask}: {text_a}", roberta_tokenizer), verbalizer)
    assert a.verbalizer is not verbalizer and b.verbalizer is not verbalizer  # each model has its own
    assert verbalizer.token_ids.tolist() == before and a.verbalizer.prefix_space and not b.verbalizer.prefix_space
    from promptlearn.calibration import calibrate

    calibrate(a, "content_free", "cpu")
    assert a.verbalizer.calibrated and not b.verbalizer.calibrated and not verbalizer.calibrated


def test_registering_a_model_kind_keeps_the_built_in_ones(bert_tokenizer, tiny_model_dirs):
    from promptlearn.prompt_model import PromptModel as PM

    @register_model_kind("mine_for_test")
    class Mine(PM):
        pass

    try:
        model = _model(bert_tokenizer)
        assert isinstance(build_model(model.spec.replace(base_model=str(tiny_model_dirs["bert"]))), PM)
    finally:
        MODEL_KINDS.pop("mine_for_test")


def test_from_pretrained_passes_loading_options_to_transformers(bert_tokenizer, tiny_model_dirs, tmp_path):
    model = _model(bert_tokenizer, base_model=str(tiny_model_dirs["bert"]))
    saved = model.save_pretrained(str(tmp_path / "m"))
    assert next(PromptModel.from_pretrained(str(saved), dtype=torch.float64).mlm.parameters()).dtype == torch.float64


def test_predict_edge_cases(bert_tokenizer):
    model = _model(bert_tokenizer, text="{text_a} ? {mask} , {text_b}").eval()
    assert predict(model, []) == []
    with pytest.raises(TemplateError, match="input 1 has no field 'text_b'"):
        predict(model, [{"text_a": "a", "text_b": "b"}, {"text_a": "a"}])
    assert predict(model, {"text_a": 3, "text_b": "great"})["label"] in ("neg", "pos")  # values become strings
    state = torch.get_rng_state()
    predict(model, {"text_a": "fun", "text_b": "yes"})
    assert torch.equal(state, torch.get_rng_state())  # inference draws nothing from the global generator


def test_promptlearn_0_1_config_keys_are_translated_with_a_warning(tiny_model_dirs, toy_data_root):
    from promptlearn.spec import spec_from_config
    from promptlearn.task import load_task

    cfg = _compose_toy(tiny_model_dirs["bert"], toy_data_root)
    task = load_task(cfg["task"], data_root=toy_data_root)
    old = {**cfg, "verbalizer": "negative: awful; positive: fun", "verbalizer_options": {"aggregation": "max"}}
    with pytest.warns(FutureWarning, match="verbalizer.label_words"):
        spec = spec_from_config(old, task, get_strategy("tuning_free"))
    assert spec.verbalizer["label_words"] == "negative: awful; positive: fun" and spec.verbalizer["aggregation"] == "max"
    with pytest.warns(FutureWarning, match="trains"):
        assert get_strategy({"name": "fixed_prompt", "train_lm": True, "train_prompt": True}).trains == ("lm", "prompt")


def test_calibration_is_in_the_spec_only_once_measured_and_is_refused_without_a_verbalizer(
        tiny_model_dirs, toy_data_root):
    from promptlearn.run import build, run_experiment

    model = build(_compose_toy(tiny_model_dirs["bert"], toy_data_root, calibrate="content_free"))["model"]
    assert model.spec.calibration is None and not model.verbalizer.calibrated
    with pytest.raises(ConfigError, match="no label-word prior"):
        run_experiment(_compose_toy(tiny_model_dirs["bert"], toy_data_root, strategy="finetune",
                                    calibrate="content_free"))


def test_python_strategies_from_a_name_use_the_cli_defaults(bert_tokenizer):
    s = get_strategy("fixed_lm")
    assert s.learning_rates()["prompt"] == 1e-2 and s.cfg["max_steps"] == 1000 and s.cfg["soft_prefix"] == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray warnings for a plain strategy
        info = run(_model(bert_tokenizer, text="{soft*2} {text_a} It was {mask}."), "fixed_lm", steps=1)
    assert info["learning_rates"] == {"prompt": 1e-2}
