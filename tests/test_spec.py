"""One spec, one builder: the CLI, from_pretrained and Python-built models describe themselves the same way.

Regression tests for the bugs of promptlearn 0.1: a prompt built in Python with build_soft_prompt(..., "lstm")
saved as {"type": "embedding"}; a CLI run with model.revision=X saved base_revision null; a template that
starts with {mask} got different label-word tokens from the CLI and from Python.
"""

import json

import pytest
import torch

from promptlearn import ModelSpec, PromptModel, Template, Verbalizer, build_model, build_soft_prompt
from promptlearn.data import PromptCollator
from promptlearn.run import build, run_experiment
from promptlearn.serialization import load_prompt_model

from conftest import ROOT, tiny_mlm

ROWS = [{"text_a": "the movie was great"}, {"text_a": "a boring plot and bad acting"}, {"text_a": "i love this film"}]


def _logits(model, rows=ROWS):
    batch = PromptCollator(model.template.tokenizer.pad_token_id)([model.template.encode(r) for r in rows])
    with torch.no_grad():
        return model.eval()(**batch).logits






def _compose_toy(model_dir, data_root, **over):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        overrides = [f"hydra.searchpath=[file://{ROOT / 'tests' / 'plugins' / 'conf'}]", "+task=toy",
                     f"model.name_or_path={model_dir}", f"data_root={data_root}", "progress=false"]
        overrides += [f"{k}={v}" for k, v in over.items()]
        cfg = compose("config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def test_python_built_lstm_prompt_saves_as_lstm_and_reloads(bert_tokenizer, tiny_model_dirs, tmp_path):
    from transformers import AutoModelForMaskedLM

    mlm = AutoModelForMaskedLM.from_pretrained(tiny_model_dirs["bert"]).eval()
    template = Template("{soft*3} {text_a} It was {mask}.", bert_tokenizer, max_length=32)
    prompt = build_soft_prompt(template.soft_spec, mlm, "lstm", seed=4, hidden_size=16)
    model = PromptModel(mlm, template, Verbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer), soft_prompt=prompt)
    saved = model.save_pretrained(str(tmp_path / "art"))
    spec = json.loads((saved / "promptlearn.json").read_text())["spec"]
    assert spec["soft_prompt"] == {"type": "lstm", "hidden_size": 16, "dropout": 0.0, "seed": 4}
    assert spec["base_model"] == str(tiny_model_dirs["bert"].resolve())
    loaded = load_prompt_model(saved)
    assert type(loaded.soft_prompt).__name__ == "ReparamPrompt" and loaded.soft_prompt.encoder == "lstm"
    torch.testing.assert_close(_logits(loaded), _logits(model), atol=0, rtol=0)


def test_cli_revision_is_recorded_in_results_and_artifact(tiny_model_dirs, toy_data_root, tmp_path):
    cfg = _compose_toy(tiny_model_dirs["bert"], toy_data_root, **{"model.revision": "v1.2", "save_model": "true",
                                                                   "strategy": "fixed_lm", "strategy.max_steps": 1,
                                                                   "strategy.k_shot": 2, "strategy.eval_every": 1})
    res = run_experiment(cfg, output_dir=tmp_path / "run")
    assert res["spec"]["revision"] == "v1.2"
    spec = json.loads((tmp_path / "run" / "model" / "promptlearn.json").read_text())["spec"]
    assert spec["revision"] == "v1.2" and spec["strategy"] == "fixed_lm"
    assert spec["soft_prompt"]["type"] == "embedding" and spec["template"]["text"].startswith("{soft*4} ")
    # the saved spec alone rebuilds the model the CLI built (same spec, same scores)
    loaded = load_prompt_model(tmp_path / "run" / "model")
    assert loaded.spec.to_dict() == {**res["spec"], "base_model": str(tiny_model_dirs["bert"].resolve())}


@pytest.mark.parametrize("text,space", [("{mask}: {text_a}", False), ("{text_a} It was {mask} .", True),
                                        ("{text_a} ?{mask} , {sep}{text_a}", False)])
def test_label_word_tokens_agree_between_cli_and_python(roberta_tokenizer, tiny_model_dirs, toy_data_root, text, space):
    cli_model = build(_compose_toy(tiny_model_dirs["roberta"], toy_data_root, template=f'"{text}"'))["model"]
    mlm = tiny_mlm("roberta", len(roberta_tokenizer))
    py_model = PromptModel(mlm, Template(text, roberta_tokenizer), Verbalizer({"negative": "bad", "positive": "great"},
                                                                               roberta_tokenizer))
    assert cli_model.verbalizer.prefix_space is space and py_model.verbalizer.prefix_space is space
    assert cli_model.verbalizer.token_ids.tolist() == py_model.verbalizer.token_ids.tolist()
    assert [p for _, _, p in cli_model.verbalizer.splits] == [p for _, _, p in py_model.verbalizer.splits]
    assert all(p[0].startswith("Ġ") is space for _, _, p in py_model.verbalizer.splits)


@pytest.mark.parametrize("encoder", [None, "embedding", "mlp", "deep"])
def test_build_model_from_spec_is_the_same_model(bert_tokenizer, tiny_model_dirs, encoder):
    from transformers import AutoModelForMaskedLM

    mlm = AutoModelForMaskedLM.from_pretrained(tiny_model_dirs["bert"]).eval()
    text = "{soft*2} {text_a} It was {mask}." if encoder in ("embedding", "mlp") else "{text_a} It was {mask}."
    template = Template(text, bert_tokenizer, max_length=32)
    prompt = build_soft_prompt(template.soft_spec, mlm, encoder, seed=3, **({"num_prefix": 2} if encoder == "deep"
                                                                           else {})) if encoder else None
    model = PromptModel(mlm, template, Verbalizer({"neg": ["bad", "awful"], "pos": "great"}, bert_tokenizer,
                                                  aggregation="max"), soft_prompt=prompt)
    spec = ModelSpec.from_dict(json.loads(json.dumps(model.spec.to_dict())))  # through JSON, as saved
    rebuilt = build_model(spec)  # loads the LM from spec.base_model; seeded prompts rebuild identically
    assert rebuilt.spec == model.spec
    torch.testing.assert_close(_logits(rebuilt), _logits(model), atol=1e-6, rtol=1e-6)


def test_classifier_spec_round_trip(bert_tokenizer, tiny_model_dirs, toy_data_root, tmp_path):
    cfg = _compose_toy(tiny_model_dirs["bert"], toy_data_root, strategy="finetune")
    model = build(cfg)["model"]
    assert model.spec.kind == "classifier" and model.spec.verbalizer is None
    assert model.spec.template["text"] == "{text_a|shortenable}"
    saved = model.save_pretrained(str(tmp_path / "clf"))
    assert json.loads((saved / "promptlearn.json").read_text())["lm_saved"] is True
    loaded = load_prompt_model(saved)
    torch.testing.assert_close(_logits(loaded), _logits(model), atol=1e-6, rtol=1e-6)


def test_artifacts_of_promptlearn_0_1_still_load(bert_tokenizer, tiny_model_dirs, tmp_path):
    """The promptlearn/1 format (0.1.0) is read and upgraded to a spec."""
    d = tmp_path / "v1"
    d.mkdir()
    (d / "promptlearn.json").write_text(json.dumps({
        "format": "promptlearn/1", "kind": "prompt", "base_model": str(tiny_model_dirs["bert"]), "base_revision": None,
        "lm_saved": False, "template": {"text": "{text_a} It was {mask}.", "max_length": 32, "truncate": "tail",
                                        "name": "old", "require_mask": True},
        "verbalizer": {"label_words": {"neg": ["bad"], "pos": ["great"]}, "labels": ["neg", "pos"],
                       "aggregation": "mean", "multi_token": "mean", "prefix_space": False, "calibration": [0.1, -0.1]}}))
    model = load_prompt_model(d)
    assert model.spec.verbalizer["type"] == "manual" and model.verbalizer.calibrated
    assert model.template.text == "{text_a} It was {mask}."
