"""Strategies train exactly the parameters they name; training is deterministic and resumable."""

from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from promptlearn.classifier import ClassifierModel, plain_template
from promptlearn.prompt_model import PromptModel
from promptlearn.serialization import load_prompt_model, predict, save_prompt_model
from promptlearn.template import Template
from promptlearn.strategies import get_strategy
from promptlearn.trainer import NonFiniteLossError, count_parameters, train
from promptlearn.verbalizers import Verbalizer

from conftest import tiny_mlm

POS = ["the movie was great", "a good film", "really fun", "i love the acting", "great story", "fun and good"]
NEG = ["the movie was terrible", "a bad film", "really boring", "i hate the acting", "awful plot", "boring and bad"]


def few_shot():
    rows = [{"text_a": t, "label": 1} for t in POS] + [{"text_a": t, "label": 0} for t in NEG]
    for i, r in enumerate(rows):
        r["idx"] = i
    ds = Dataset.from_list(rows)
    return SimpleNamespace(train=ds, dev=ds, checksum="x")


def make_model(tok, text="{soft*2} {text_a} It was {mask}.", seed=0):
    torch.manual_seed(seed)
    mlm = tiny_mlm("bert", len(tok), seed=seed)
    return PromptModel(mlm, Template(text, tok, max_length=32), Verbalizer({"neg": "bad", "pos": "great"}, tok))


STRATEGIES = {
    "fixed_lm": dict(name="fixed_lm", prompt_lr=1e-2, lr=0.0),
    "fixed_prompt": dict(name="fixed_prompt", lr=1e-3),
    "prompt_lm": dict(name="prompt_lm", lr=1e-3, prompt_lr=1e-2),
}


def configure_trainable(model, strategy):
    return get_strategy(strategy).configure(model)


def run(model, strategy, tmp_path=None, steps=4, **cfg):
    s = dict(STRATEGIES[strategy] if isinstance(strategy, str) else strategy, batch_size=4, max_steps=steps,
             eval_every=2)
    return train(model, few_shot(), s, dict(seed=7, progress=False, **cfg), torch.device("cpu"),
                 output_dir=tmp_path)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_trainable_sets_per_strategy(bert_tokenizer):
    model = make_model(bert_tokenizer)
    n_soft = model.soft_prompt.embedding.numel()
    _, total = count_parameters(model)
    configure_trainable(model, STRATEGIES["fixed_lm"])
    assert count_parameters(model) == (n_soft, total)
    configure_trainable(model, STRATEGIES["fixed_prompt"])
    assert count_parameters(model) == (total - n_soft, total)
    configure_trainable(model, STRATEGIES["prompt_lm"])
    assert count_parameters(model) == (total, total)
    hard = make_model(bert_tokenizer, "{text_a} It was {mask}.")
    with pytest.raises(ValueError, match="trains nothing"):
        configure_trainable(hard, STRATEGIES["fixed_lm"])


def test_fixed_lm_changes_only_prompt(bert_tokenizer):
    model = make_model(bert_tokenizer)
    lm_before, soft_before = snapshot(model.mlm), model.soft_prompt.embedding.detach().clone()
    info = run(model, "fixed_lm", steps=1)
    assert info["steps"] == 1
    for k, v in snapshot(model.mlm).items():
        assert torch.equal(v, lm_before[k]), f"LM weight {k} changed under fixed_lm"
    assert not torch.equal(model.soft_prompt.embedding, soft_before)


def test_fixed_prompt_changes_lm(bert_tokenizer):
    model = make_model(bert_tokenizer, "{text_a} It was {mask}.")
    before = snapshot(model.mlm)
    run(model, "fixed_prompt", steps=2)
    assert any(not torch.equal(v, before[k]) for k, v in snapshot(model.mlm).items())


def test_prompt_lm_uses_two_learning_rates(bert_tokenizer, monkeypatch):
    model = make_model(bert_tokenizer)
    seen = {}
    orig = torch.optim.AdamW.__init__

    def spy(self, groups, *a, **k):
        seen["lrs"] = {g["name"]: g["lr"] for g in groups}
        orig(self, groups, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "__init__", spy)
    run(model, "prompt_lm", steps=1)
    assert seen["lrs"] == {"lm": 1e-3, "prompt": 1e-2}


def test_training_is_deterministic(bert_tokenizer):
    a, b = make_model(bert_tokenizer), make_model(bert_tokenizer)
    ia, ib = run(a, "prompt_lm", steps=4), run(b, "prompt_lm", steps=4)
    assert [(r["loss"], r["dev"]) for r in ia["log"]] == [(r["loss"], r["dev"]) for r in ib["log"]]
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


@pytest.mark.parametrize("interrupt_at,ck_step", [(5, 3), (3, 2)])
def test_resume_after_interrupt_matches_uninterrupted(bert_tokenizer, tmp_path, interrupt_at, ck_step):
    ref = make_model(bert_tokenizer)
    run(ref, "prompt_lm", tmp_path / "ref", steps=6)

    model = make_model(bert_tokenizer)
    calls = {"n": 0}
    real_forward = model.forward

    def flaky_forward(*a, **k):
        calls["n"] += 1
        # forwards: step 1, step 2, dev eval (3), step 3, step 4 (5): interrupt inside a step or an evaluation
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt
        return real_forward(*a, **k)

    model.forward = flaky_forward
    with pytest.raises(KeyboardInterrupt):
        run(model, "prompt_lm", tmp_path / "run", steps=6)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == ck_step  # resumes right after the last completed step

    resumed = make_model(bert_tokenizer)
    info = run(resumed, "prompt_lm", tmp_path / "run", steps=6, resume=True)
    assert info["steps"] == 6
    for (k, v), (_, w) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(v, w, atol=1e-6), k


def test_nan_loss_stops_the_run(bert_tokenizer):
    model = make_model(bert_tokenizer)
    with torch.no_grad():
        model.soft_prompt.embedding.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="loss is nan"):
        run(model, "fixed_lm", steps=2)


def test_save_load_round_trip_fixed_lm_is_prompt_only(bert_tokenizer, tmp_path):
    model = make_model(bert_tokenizer)
    run(model, "fixed_lm", steps=2)
    base = tmp_path / "base"
    model.mlm.save_pretrained(base)
    bert_tokenizer.save_pretrained(base)
    saved = save_prompt_model(model, tmp_path / "artifact", base_model=str(base))
    assert not (saved / "lm").exists()
    size = sum(f.stat().st_size for f in saved.rglob("*") if f.is_file())
    assert size < 20_000, size
    loaded = PromptModel.from_pretrained(str(saved))
    texts = ["the movie was great", "really boring"]
    a, b = model.predict(texts), loaded.predict(texts)
    assert [x["label"] for x in a] == [x["label"] for x in b]
    for x, y in zip(a, b):
        for k in x["probs"]:
            assert abs(x["probs"][k] - y["probs"][k]) < 1e-6


def test_save_load_round_trip_fixed_prompt_stores_lm(bert_tokenizer, tmp_path):
    model = make_model(bert_tokenizer, "{text_a} It was {mask}.")
    run(model, "fixed_prompt", steps=2)
    saved = model.save_pretrained(str(tmp_path / "artifact"), base_model="not-needed")
    assert (saved / "lm" / "config.json").exists()
    loaded = load_prompt_model(saved)
    r1, r2 = predict(model, "a good film"), predict(loaded, "a good film")
    assert r1["label"] == r2["label"] and abs(r1["probs"]["pos"] - r2["probs"]["pos"]) < 1e-6


def test_finetune_classifier_trains_and_round_trips(bert_tokenizer, tmp_path):
    import transformers as tf

    base = tmp_path / "base"
    tiny_mlm("bert", len(bert_tokenizer)).save_pretrained(base)
    bert_tokenizer.save_pretrained(base)
    template = Template(plain_template(["text_a"]), bert_tokenizer, max_length=32, require_mask=False)
    model = ClassifierModel.from_pretrained(str(base), template, ["neg", "pos"])
    assert isinstance(model.mlm, tf.BertForSequenceClassification)
    run(model, dict(name="finetune", lr=1e-3), steps=2)
    saved = save_prompt_model(model, tmp_path / "clf")
    loaded = load_prompt_model(saved)
    assert predict(model, "great story") == predict(loaded, "great story")


@pytest.mark.parametrize("materialize", [False, True])
@pytest.mark.parametrize("encoder", ["lstm", "mlp", "deep", "deep-projected"])
def test_save_load_round_trip_prompt_encoders(bert_tokenizer, tmp_path, encoder, materialize):
    from promptlearn.soft_prompt import build_soft_prompt

    torch.manual_seed(0)
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    template = Template("{soft*2} {text_a} It was {mask}.", bert_tokenizer, max_length=32)
    opts = {"num_prefix": 3, "prefix_projection": encoder == "deep-projected"} if encoder.startswith("deep") else {}
    encoder = encoder.split("-")[0]
    sp = build_soft_prompt(template.soft_spec, mlm, encoder, seed=1, **opts)  # built in Python: no config to pass
    model = PromptModel(mlm, template, Verbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer), soft_prompt=sp)
    run(model, "fixed_lm", steps=2)
    base = tmp_path / "base"
    mlm.save_pretrained(base)
    bert_tokenizer.save_pretrained(base)
    saved = model.save_pretrained(str(tmp_path / "artifact"), base_model=str(base), materialize=materialize)
    assert not (saved / "lm").exists()
    if materialize and encoder != "deep":
        assert (saved / "prompt.safetensors").stat().st_size < 2_000  # 2 vectors of 32 floats + header
    loaded = PromptModel.from_pretrained(str(saved))
    texts = ["the movie was great", "really boring", "a good film"]
    for x, y in zip(model.predict(texts), loaded.predict(texts)):
        assert x["label"] == y["label"]
        assert all(abs(x["probs"][k] - y["probs"][k]) < 1e-6 for k in x["probs"])


@pytest.mark.parametrize("strategy", ["fixed_prompt", "prompt_lm"])
def test_training_learns_a_separable_toy_task(bert_tokenizer, strategy):
    """The loop really optimises: a toy task it can memorise reaches 100% dev (= train) accuracy."""
    model = make_model(bert_tokenizer, "{soft*2} {text_a} It was {mask}." if strategy == "prompt_lm"
                       else "{text_a} It was {mask}.")
    s = dict(STRATEGIES[strategy], lr=1e-2, batch_size=4, max_steps=100, eval_every=10)
    info = train(model, few_shot(), s, dict(seed=7, progress=False), torch.device("cpu"))
    assert info["best_dev"] == 1.0, info["log"]
    assert info["log"][-1]["loss"] < info["log"][0]["loss"]


def test_untrained_model_saves_no_lm(bert_tokenizer, tmp_path):
    model = make_model(bert_tokenizer, "{text_a} It was {mask}.")  # zero-shot: nothing was trained
    saved = model.save_pretrained(str(tmp_path / "zs"), base_model=str(tmp_path / "base"))
    assert not (saved / "lm").exists() and not (saved / "prompt.safetensors").exists()


def test_gradient_checkpointing_option_trains_the_same_loss(bert_tokenizer):
    a, b = make_model(bert_tokenizer, "{text_a} It was {mask}."), make_model(bert_tokenizer, "{text_a} It was {mask}.")
    ia = run(a, "fixed_prompt", steps=2)
    ib = run(b, dict(STRATEGIES["fixed_prompt"], gradient_checkpointing=True), steps=2)
    assert b.mlm.is_gradient_checkpointing
    assert [r["loss"] for r in ia["log"]] == pytest.approx([r["loss"] for r in ib["log"]], abs=1e-5)
