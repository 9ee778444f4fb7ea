"""The knowledgeable (KPT) verbalizer: word lists, length / shared / frequency refinement, learned weights,
save/load; and the word-proposal command."""

import json

import pytest
import torch

from promptlearn.data import PromptCollator
from promptlearn.model_base import BaseModel
from promptlearn.propose_words import propose_words
from promptlearn.prompt_model import PromptModel
from promptlearn.template import Template
from promptlearn.trainer import train
from promptlearn.verbalizers import KnowledgeableVerbalizer, VerbalizerError, build_verbalizer
from promptlearn.verbalizers.knowledgeable import WORDS_DIR, load_word_list

from conftest import PLUGINS, cli, tiny_mlm

ROWS = [{"text_a": "the movie was great ."}, {"text_a": "a boring plot and bad acting"}, {"text_a": "i love it"}]
LIST = {"neg": ["awful", "boring", "terrible", "xqzvbn", "fun"], "pos": ["good", "fun", "fine", "love"]}


def _model(tok, words=LIST, bias=None, **opts):
    mlm = tiny_mlm("bert", len(tok))
    if bias:
        with torch.no_grad():
            for w, b in bias.items():
                mlm.get_output_embeddings().bias[tok.convert_tokens_to_ids(w)] += b
    template = Template("{text_a} It was {mask} .", tok, max_length=24)
    v = KnowledgeableVerbalizer({"neg": "bad", "pos": "great"}, tok, labels=["neg", "pos"], words=words,
                                template=template, **opts)
    return PromptModel(mlm, template, v).eval()


def _inputs(model, rows=ROWS):
    batch = PromptCollator(model.template.tokenizer.pad_token_id)([model.template.encode(r) for r in rows])
    with torch.no_grad():
        return batch, model(**batch).verbalizer_input


def test_length_and_shared_refinement_at_construction(bert_tokenizer):
    v = _model(bert_tokenizer, max_subtokens=3).verbalizer
    assert v.label_words["neg"][0] == "bad" and v.label_words["pos"][0] == "great"  # the label words come first
    assert "xqzvbn" not in v.label_words["neg"] and "xqzvbn" in v.dropped["too_long"] + v.dropped["unknown"]
    assert "fun" not in v.label_words["neg"] + v.label_words["pos"] and "fun" in v.dropped["shared"]
    assert v.label_words["neg"] == ["bad", "awful", "boring", "terrible"]


def test_frequency_refinement_drops_rarely_predicted_words_and_keeps_the_names(bert_tokenizer):
    # the tiny model never predicts 'awful' / 'fine' (a -30 bias) and often predicts 'boring' / 'love'
    model = _model(bert_tokenizer, bias={"awful": -30.0, "fine": -30.0, "bad": -30.0, "boring": 5.0, "love": 5.0},
                   cut_off=0.5)
    _, x = _inputs(model)
    report = model.verbalizer.refine(x)
    kept = model.verbalizer.label_words
    assert "awful" not in kept["neg"] and "fine" not in kept["pos"]
    assert kept["neg"][0] == "bad"  # the class name survives although its prior is tiny
    assert "boring" in kept["neg"] and "love" in kept["pos"]
    assert sum(report["words_after"].values()) == sum(report["words_before"].values()) - len(report["dropped"])
    assert model.verbalizer.refined and model.verbalizer.refine(x) == {"skipped": "already refined"}
    with torch.no_grad():  # the model scores with the refined words
        batch, _ = _inputs(model)
        assert model(**batch).logits.shape == (3, 2)


def test_learned_weights_start_as_the_mean_and_train_while_the_lm_stays(bert_tokenizer):
    from datasets import Dataset

    from promptlearn.sampler import FewShotSplit

    plain = _model(bert_tokenizer)
    weighted = _model(bert_tokenizer, learn_weights=True)
    batch, _ = _inputs(plain)
    with torch.no_grad():
        torch.testing.assert_close(weighted(**batch).logits, plain(**batch).logits)
    rows = [{"text_a": t, "label": l, "idx": i} for i, (t, l) in
            enumerate([("great fun", 1), ("bad plot", 0), ("good film", 1), ("awful story", 0)] * 2)]
    few = FewShotSplit(train=Dataset.from_list(rows), dev=Dataset.from_list(rows[:4]), train_ids=list(range(8)),
                       dev_ids=list(range(4)), checksum="x")
    before = {k: v.clone() for k, v in weighted.state_dict().items()}
    train(weighted, few, {"name": "fixed_lm", "trains": ["verbalizer"], "max_steps": 4, "eval_every": 2,
                          "batch_size": 4, "prompt_lr": 0.5}, {"seed": 1, "progress": False}, torch.device("cpu"))
    after = weighted.state_dict()
    assert not torch.equal(before["verbalizer.word_weight"], after["verbalizer.word_weight"])
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("mlm."))


def test_save_load_round_trip_keeps_refined_words_weights_and_prior(bert_tokenizer, tmp_path):
    from promptlearn.calibration import calibrate

    model = _model(bert_tokenizer, learn_weights=True, bias={"boring": 5.0})
    (tmp_path / "lm").mkdir()
    model.mlm.save_pretrained(tmp_path / "lm")
    bert_tokenizer.save_pretrained(tmp_path / "lm")
    model.base_model = str(tmp_path / "lm")
    batch, x = _inputs(model)
    model.verbalizer.refine(x)
    with torch.no_grad():
        model.verbalizer.word_weight.normal_()
    calibrate(model, "content_free", "cpu")
    model.mark_trained("fixed_lm", ["verbalizer"])
    with torch.no_grad():
        before = model(**batch).logits
    model.save_pretrained(tmp_path / "saved")
    again = BaseModel.from_pretrained(tmp_path / "saved")
    assert again.verbalizer.label_words == model.verbalizer.label_words and again.verbalizer.refined
    with torch.no_grad():
        assert torch.equal(again(**batch).logits, before)


def test_word_lists_ship_with_a_note_and_match_the_tasks():
    from omegaconf import OmegaConf

    for name, task in (("sentiment", "sst2"), ("sst5", "sst5"), ("agnews", "agnews"), ("trec", "trec")):
        path = WORDS_DIR / f"{name}.yaml"
        assert "How it was made" in path.read_text()
        labels = OmegaConf.load(WORDS_DIR.parents[1] / "task" / f"{task}.yaml").labels
        words = load_word_list(name, list(labels))
        assert all(len(ws) >= 9 for ws in words.values())
    with pytest.raises(VerbalizerError, match="missing"):
        load_word_list("sentiment", ["negative", "neutral", "positive"])
    with pytest.raises(VerbalizerError, match="not found"):
        load_word_list("no_such_list", None)


def test_build_from_config_needs_words(bert_tokenizer):
    with pytest.raises(VerbalizerError, match="words"):
        build_verbalizer({"type": "kpt", "label_words": None}, bert_tokenizer, ["neg", "pos"])


def test_propose_words_finds_a_planted_neighbour(bert_tokenizer):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    ids = bert_tokenizer.convert_tokens_to_ids
    with torch.no_grad():  # 'awful' made a near copy of 'bad', 'fine' of 'great' (tied input/output rows)
        w = mlm.get_output_embeddings().weight
        w[ids("awful")] = w[ids("bad")] + 0.01 * torch.randn_like(w[0])
        w[ids("fine")] = w[ids("great")] + 0.01 * torch.randn_like(w[0])
    out = propose_words(mlm, bert_tokenizer, {"neg": ["bad"], "pos": ["great"]}, top=5, method="embedding")
    assert out["neg"][0][0] == "awful" and out["pos"][0][0] == "fine"
    ctx = propose_words(mlm, bert_tokenizer, {"neg": ["bad"], "pos": ["great"]}, top=5, method="context")
    proposed = [w for ws in ctx.values() for w, _ in ws]
    assert len(proposed) == len(set(proposed)) == 10 and not {"bad", "great"} & set(proposed)
    assert all(w.isalpha() and not w.startswith("##") for w in proposed)


def test_cli_kpt_with_support_calibration(tiny_model_dirs, toy_data_root, tmp_path):
    words = tmp_path / "toy_words.yaml"
    words.write_text("negative: [bad, awful, boring, terrible]\npositive: [great, good, fun, love]\n")
    out = tmp_path / "run"
    proc = cli("--config-dir", PLUGINS / "conf", "+task=toy", f"model.name_or_path={tiny_model_dirs['bert']}",
               f"data_root={toy_data_root}", "verbalizer=kpt", f"verbalizer.words={words}", "calibrate=support",
               "calibrate_size=10", "progress=false", "save_model=true", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["refinement"]["n"] == 10 and res["calibration"]["mode"] == "support"
    assert res["verbalizer_config"]["refined"] is True
    kept = sum(res["refinement"]["words_after"].values())
    assert kept < sum(res["refinement"]["words_before"].values())
    assert (out / "model" / "promptlearn.json").exists()
