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


def _support(model, rows=ROWS):
    """What the pipeline's refine stage hands the verbalizer: its inputs and the mean vocabulary log-prior."""
    batch, x = _inputs(model, rows)
    with torch.no_grad():
        vocab = torch.log_softmax(model.vocab_logits(**batch).float(), -1).mean(0)
    return x, vocab


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
    x, vocab = _support(model)
    report = model.verbalizer.refine(x, vocab)
    kept = model.verbalizer.label_words
    assert "awful" not in kept["neg"] and "fine" not in kept["pos"]
    assert kept["neg"][0] == "bad"  # the class name survives although its prior is tiny
    assert "boring" in kept["neg"] and "love" in kept["pos"]
    assert sum(report["words_after"].values()) == sum(report["words_before"].values()) - len(report["dropped"])
    assert model.verbalizer.refined and model.verbalizer.refine(x, vocab) == {"skipped": "already refined"}
    with torch.no_grad():  # the model scores with the refined words
        batch, _ = _inputs(model)
        assert model(**batch).logits.shape == (3, 2)


def test_frequency_refinement_is_kpts_vocabulary_rule(bert_tokenizer):
    """KPT's rule: the cut_off fraction of the *vocabulary* with the lowest support prior is rare, and a word
    with any rare sub-token goes.  So the number dropped is not fixed, and a multi-token word whose pieces are
    frequent survives (its joint probability is far below any single token's, which must not matter)."""
    tok = bert_tokenizer
    words = {"neg": ["okay", "awful", "boring"], "pos": ["good", "fine", "love"]}  # okay -> ok ##ay
    assert len(tok("okay", add_special_tokens=False)["input_ids"]) == 2
    model = _model(tok, words=words, cut_off=0.5)
    ids = [tok.convert_tokens_to_ids(t) for t in ("ok", "##ay", "boring", "good", "love", "awful", "fine")]
    vocab = torch.zeros(len(tok))
    vocab[ids[:5]] = 5.0  # frequent
    vocab[ids[5:]] = -5.0  # rare
    vocab[torch.arange(len(tok)) % 3 == 0] -= 1.0  # the rest spread out, so the rare set is the bottom half
    report = model.verbalizer.refine(torch.zeros(1), vocab)
    assert set(report["dropped"]) == {"awful", "fine"}
    assert model.verbalizer.label_words == {"neg": ["bad", "okay", "boring"], "pos": ["great", "good", "love"]}
    quantile = report["vocab_quantile_of_kept"]  # the share of the vocabulary below a word's rarest piece
    assert all(quantile[w] >= 0.5 for w in ("okay", "boring", "good", "love"))
    # a word is dropped when any one of its pieces is rare
    model = _model(tok, words=words, cut_off=0.5)
    vocab[tok.convert_tokens_to_ids("##ay")] = -5.0
    assert "okay" in model.verbalizer.refine(torch.zeros(1), vocab)["dropped"]
    # refining after calibration would leave a prior over the dropped words
    model = _model(tok, words=words)
    model.verbalizer.calibrate(_inputs(model)[1], "custom")
    with pytest.raises(VerbalizerError, match="refine first"):
        model.verbalizer.refine(torch.zeros(1), vocab)


def test_word_lists_refuse_yaml_booleans_and_numbers(tmp_path):
    bad = tmp_path / "w.yaml"
    bad.write_text("neg: [bad, no, off]\npos: [good, yes, on]\n")  # YAML 1.1: no/off/yes/on are booleans
    with pytest.raises(VerbalizerError, match=r"class 'neg', word 2 is False .*quote it, e.g. \"false\""):
        load_word_list(bad)
    bad.write_text("neg: [bad, 7]\npos: [good]\n")
    with pytest.raises(VerbalizerError, match="word 2 is 7"):
        load_word_list(bad)
    bad.write_text('neg: [bad, "no"]\npos: [good, "yes"]\n')
    assert load_word_list(bad) == {"neg": ["bad", "no"], "pos": ["good", "yes"]}


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
    batch, _ = _inputs(model)
    model.verbalizer.refine(*_support(model))
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


def test_propose_words_proposes_whole_words_for_sentencepiece(tmp_path):
    """For a SentencePiece tokenizer only word-initial pieces (``▁great``) are words; ``ing`` / ``great``
    (continuations) are not, and every proposal tokenises back to the single ranked token."""
    from test_label_search import _sentencepiece_tokenizer

    tok = _sentencepiece_tokenizer()
    mlm = tiny_mlm("albert", len(tok))
    for method in ("embedding", "context"):
        out = propose_words(mlm, tok, {"neg": ["terrible"], "pos": ["good"]}, top=5, method=method, min_chars=2)
        proposed = [w for ws in out.values() for w, _ in ws]
        assert proposed and set(proposed) <= {"great", "movie", "it", "was"}
        for w in proposed:
            assert tok.convert_ids_to_tokens(tok(w, add_special_tokens=False)["input_ids"])[0] == "▁" + w


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
