"""Calibration (calibrate=content_free|support): the prior, what it removes, and that it is recorded and saved."""

import json

import pytest
import torch
from datasets import Dataset

from promptlearn import PromptModel, Template, Verbalizer
from promptlearn.calibration import calibrate, content_free_inputs, support_set
from promptlearn.data import PromptCollator

from conftest import tiny_mlm

TEXTS = ["the movie was great", "a boring plot", "i love this film", "awful acting , really bad", "it was fine",
         "no , that film was awful", "maybe it is fine ?", "they hate the story ."]


def _model(tok, bias=0.0):
    mlm = tiny_mlm("bert", len(tok))
    verbalizer = Verbalizer({"neg": ["bad", "terrible"], "pos": "great"}, tok)
    with torch.no_grad():  # a constant bias towards one label word, whatever the input
        mlm.get_output_embeddings().bias[tok.convert_tokens_to_ids("great")] += bias
    return PromptModel(mlm, Template("{text_a} It was {mask} .", tok, max_length=32), verbalizer).eval()


def _scores(model, texts=TEXTS):
    batch = PromptCollator(model.template.tokenizer.pad_token_id)([model.template.encode({"text_a": t}) for t in texts])
    with torch.no_grad():
        return model(**batch).logits


def test_content_free_prior_is_the_mean_probability_on_content_free_inputs(bert_tokenizer):
    model = _model(bert_tokenizer)
    cf = content_free_inputs(model.template)
    assert cf["text_a"] == ["N/A", "", "[MASK]"]
    info = calibrate(model, "content_free", "cpu")
    batch = PromptCollator(bert_tokenizer.pad_token_id)([model.template.encode(r) for r in cf])
    model.verbalizer.reset_calibration()
    with torch.no_grad():
        p = torch.softmax(model(**batch).token_logits, -1).mean(0)  # mean label-token probability
    assert info["n"] == 3 and info["prior"] == pytest.approx(p.tolist(), abs=1e-5)


@pytest.mark.parametrize("mode,size,atol", [("support", 1, 1e-4), ("support", 5, 2e-2), ("content_free", 3, 2e-2)])
def test_calibration_turns_a_constant_bias_model_balanced(bert_tokenizer, mode, size, atol):
    """A +8 logit bias on 'great' makes every prediction 'pos'; calibrated, the biased model scores like the
    unbiased one -- exactly with one calibration input, and up to the spread of the inputs' normalisers with
    several (the prior is a mean of probabilities, Zhao et al. 2021)."""
    pool = Dataset.from_dict({"text_a": TEXTS, "label": [1, 0, 1, 0, 1, 0, 0, 0], "idx": list(range(8))})
    plain, biased = _model(bert_tokenizer), _model(bert_tokenizer, bias=8.0)
    assert (_scores(biased).argmax(-1) == 1).all()
    for m in (plain, biased):
        calibrate(m, mode, "cpu", pool=pool, size=size, seed=0)
    torch.testing.assert_close(_scores(biased), _scores(plain), atol=atol, rtol=0)
    assert _scores(biased).argmax(-1).tolist() == _scores(plain).argmax(-1).tolist()
    assert len(set(_scores(biased).argmax(-1).tolist())) == 2


def test_support_set_reads_no_labels_and_skips_the_few_shot_examples():
    pool = Dataset.from_dict({"text_a": [f"t{i}" for i in range(50)], "label": [i % 2 for i in range(50)],
                              "idx": list(range(100, 150))})
    s = support_set(pool, 20, seed=3, exclude=range(100, 110))
    assert "label" not in s.column_names and len(s) == 20
    assert not set(s["idx"]) & set(range(100, 110))
    assert s["idx"] == support_set(pool, 20, seed=3, exclude=range(100, 110))["idx"]  # seeded


def test_cli_calibration_is_recorded_and_saved(tiny_model_dirs, toy_data_root, tmp_path):
    from promptlearn.run import run_experiment
    from promptlearn.serialization import load_prompt_model
    from test_spec import _compose_toy

    cfg = _compose_toy(tiny_model_dirs["bert"], toy_data_root, calibrate="support", calibrate_size=7,
                       save_model="true")
    res = run_experiment(cfg, output_dir=tmp_path / "run")
    cal = res["calibration"]
    assert cal["mode"] == "support" and cal["n"] == 7 and sum(cal["prior"]) == pytest.approx(1.0, abs=1e-4)
    assert res["spec"]["calibration"] == "support"
    plain = run_experiment(_compose_toy(tiny_model_dirs["bert"], toy_data_root), output_dir=tmp_path / "plain")
    assert plain["calibration"] is None
    rows = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    loaded = load_prompt_model(tmp_path / "run" / "model")
    assert loaded.verbalizer.calibrated and loaded.spec.calibration == "support"
    from promptlearn.task import load_task

    test = load_task(cfg["task"], data_root=toy_data_root).splits["test"]
    again = _scores(loaded, test["text_a"])
    torch.testing.assert_close(again, torch.tensor([r["scores"] for r in rows]), atol=1e-5, rtol=1e-5)
