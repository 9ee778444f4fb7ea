"""LM-BFF demonstrations: one mask (the query's) survives any truncation, the query never demonstrates itself,
draws are seeded, test-time sets are averaged, training re-samples per epoch, the CLI runs them."""

import json

import numpy as np
import pytest
import torch
from datasets import Dataset

from promptlearn import pipeline
from promptlearn.data import Batches, encode_dataset
from promptlearn.demonstrations import Demonstrations, demo_template_text, render_demo
from promptlearn.prompt_model import PromptModel
from promptlearn.template import Template
from promptlearn.verbalizers import Verbalizer

from conftest import PLUGINS, cli, tiny_mlm

QUERY = "{text_a|shortenable} It was {mask} ."
TEXTS = ["the movie was great", "a good film", "really fun", "i love the acting", "the movie was terrible",
         "a bad film", "really boring", "i hate the acting"]
LABELS = [1, 1, 1, 1, 0, 0, 0, 0]


def _support():
    return Dataset.from_dict({"text_a": TEXTS, "label": LABELS, "idx": list(range(100, 108))})


def _demos(tok, max_length=64, **opts):
    query = Template(QUERY, tok, max_length=max_length)
    return query, Demonstrations(query, ["bad", "great"], _support(), seed=13, **opts)


def test_demo_text_has_the_label_word_in_place_of_the_mask(bert_tokenizer):
    query, _ = _demos(bert_tokenizer)
    assert render_demo(query, {"text_a": "a fine film"}, "great") == "a fine film It was great ."
    assert demo_template_text(QUERY, 2) == QUERY + " {sep}{demo_0|cutfirst} {demo_1|cutfirst}"
    pair = "{text_a}? {mask}, {sep}{text_b}"
    assert demo_template_text(pair, 3).endswith("{text_b} {demo_0|cutfirst} {demo_1|cutfirst} {demo_2|cutfirst}")


@pytest.mark.parametrize("max_length", [64, 24, 14])
def test_one_mask_the_querys_even_when_truncation_cuts(max_length, bert_tokenizer):
    """Long queries and demonstrations at small max_length: demonstrations are cut first (from their front),
    the query only when they are gone, and the one mask is always the query's."""
    _, demos = _demos(bert_tokenizer)
    full = Template(demo_template_text(QUERY, demos.n_demos), bert_tokenizer, max_length=max_length)
    data = Dataset.from_dict({"text_a": [TEXTS[0] * 3, "ok"], "label": [1, 0], "idx": [1, 2]})
    rows = demos.apply(data, 0)
    for row in rows:
        enc = full.encode(row)
        ids = enc["input_ids"]
        assert len(ids) <= max_length and ids.count(bert_tokenizer.mask_token_id) == 1
        sep = ids.index(bert_tokenizer.sep_token_id)
        assert enc["mask_pos"] < sep  # the mask is in the query segment, before the demonstrations
        demo_part = bert_tokenizer.decode(ids[sep + 1:])
        if max_length == 64:
            assert "great" in demo_part and "bad" in demo_part  # both demonstrations kept their label words
    short = full.encode(rows[1])
    assert bert_tokenizer.decode(short["input_ids"]).startswith("[CLS] ok it was [MASK]")  # the query is intact


def test_the_query_never_demonstrates_itself_and_draws_are_seeded(bert_tokenizer):
    _, demos = _demos(bert_tokenizer)
    support = _support()
    for s in range(20):  # scoring the support set itself: every row would be a candidate for itself
        rows = demos.apply(support, s)
        for row in rows:
            own = render_demo(demos.template, row, ["bad", "great"][row["label"]])
            assert own not in (row["demo_0"], row["demo_1"])
    # same seed and set -> same demonstrations; another set -> others (somewhere)
    a, b = demos.apply(support, 3), demos.apply(support, 3)
    assert a["demo_0"] == b["demo_0"] and a["demo_1"] == b["demo_1"]
    others = [demos.apply(support, s)["demo_1"] for s in range(4, 10)]
    assert any(o != a["demo_1"] for o in others)
    # one demonstration per class, with that class's label word
    row = demos.apply(Dataset.from_dict({"text_a": ["x"], "label": [0], "idx": [0]}), 0)[0]
    assert row["demo_0"].endswith("It was bad .") and row["demo_1"].endswith("It was great .")
    # independent of batching: one example alone gets the same demonstrations as inside the dataset
    alone = demos.apply(support.select([5]), 3)[0]
    assert alone["demo_0"] == a[5]["demo_0"] and alone["demo_1"] == a[5]["demo_1"]


def test_tfidf_filter_prefers_similar_examples(bert_tokenizer):
    _, demos = _demos(bert_tokenizer, filter="tfidf", top_fraction=0.25)
    q = Dataset.from_dict({"text_a": ["i love the acting a lot"], "label": [1], "idx": [0]})
    picks = {demos.apply(q, s)[0]["demo_1"] for s in range(10)}
    assert picks == {"i love the acting It was great ."}  # the top 25% of 4 candidates is the most similar one


def test_tfidf_draws_do_not_depend_on_the_other_scored_examples(bert_tokenizer):
    """TF-IDF is fitted on the support set alone: an example gets the same demonstrations scored alone or
    among other examples (before, the idf came from the scored rows too)."""
    _, demos = _demos(bert_tokenizer, filter="tfidf", top_fraction=0.5)
    texts = ["a film fun", "the acting", "boring boring movie", "great great great", "i hate it", "fun"] * 5
    q = Dataset.from_dict({"text_a": texts, "label": [1] * len(texts), "idx": list(range(len(texts)))})
    for s in range(3):
        together = demos.apply(q, s)
        for j in (0, 2, 5):
            alone = demos.apply(q.select([j]), s)[0]
            assert alone["demo_0"] == together[j]["demo_0"] and alone["demo_1"] == together[j]["demo_1"]


def test_scores_are_averaged_over_sets(bert_tokenizer):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    _, demos = _demos(bert_tokenizer, num_sets=3)
    template = Template(demo_template_text(QUERY, demos.n_demos), bert_tokenizer, max_length=48)
    model = PromptModel(mlm, template, Verbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer)).eval()
    data = Dataset.from_dict({"text_a": ["a fine film", "boring and bad"], "label": [1, 0], "idx": [1, 2]})
    avg = pipeline.score(model, data, "test", "cpu", transform=demos.eval_sets)
    each = [pipeline.score(model, d, "test", "cpu").logits for d in demos.eval_sets(data)]
    np.testing.assert_allclose(avg.logits, np.mean(each, 0), rtol=1e-6)
    assert not np.allclose(each[0], each[1])  # the sets really differ


@pytest.mark.parametrize("filter", ["none", "tfidf"])
def test_demonstrations_are_saved_with_the_model_and_predict_uses_them(filter, bert_tokenizer, tmp_path):
    """The spec records the demonstrations (support rows included); a reloaded model's predict appends the
    same demonstrations and averages the same sets as the run's scoring."""
    from promptlearn.model_base import BaseModel

    mlm = tiny_mlm("bert", len(bert_tokenizer))
    (tmp_path / "lm").mkdir()
    mlm.save_pretrained(tmp_path / "lm")
    bert_tokenizer.save_pretrained(tmp_path / "lm")
    _, demos = _demos(bert_tokenizer, num_sets=3, filter=filter)
    template = Template(demo_template_text(QUERY, demos.n_demos), bert_tokenizer, max_length=48)
    model = PromptModel(mlm, template, Verbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer),
                        base_model=str(tmp_path / "lm")).eval()
    model.use_demonstrations(demos)
    texts = ["a fine film", "boring and bad", "really fun acting"]
    queries = Dataset.from_dict({"text_a": texts})
    want = pipeline.score(model, queries, "x", "cpu", transform=demos.eval_sets).logits
    model.save_pretrained(tmp_path / "saved")
    again = BaseModel.from_pretrained(tmp_path / "saved")
    assert again.spec.demonstrations == model.spec.demonstrations
    assert again.demonstrations.support_demo == demos.support_demo and again.demonstrations.num_sets == 3
    got = again.predict(texts)
    probs = torch.softmax(torch.from_numpy(want), -1)
    for g, p in zip(got, probs):
        assert g["probs"]["neg"] == pytest.approx(float(p[0]), abs=1e-6)
    if filter == "none":  # the JSONL command line serves it on its own (a mixed batch cannot add demonstrations)
        from promptlearn.multitask import MultiTaskModel, NotShareable
        from promptlearn.predict import main as predict_main

        with pytest.raises(NotShareable, match="demonstrations"):
            MultiTaskModel({"t": again})
        (tmp_path / "in.jsonl").write_text("".join(f'{{"text_a": "{t}"}}\n' for t in texts))
        assert predict_main(["--model", f"t={tmp_path / 'saved'}", "--input", str(tmp_path / "in.jsonl"),
                             "--output", str(tmp_path / "out.jsonl"), "--no-progress"]) == 0
        for line, p in zip((tmp_path / "out.jsonl").read_text().splitlines(), probs):
            assert json.loads(line)["probs"]["neg"] == pytest.approx(float(p[0]), abs=1e-6)
    plain = PromptModel(mlm, template, Verbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer)).eval()
    with pytest.raises(Exception, match="demo_0"):
        plain.predict(texts)  # without demonstrations the demo slots are fields the caller must fill
    with pytest.raises(Exception, match="no slot"):
        PromptModel(mlm, Template(QUERY, bert_tokenizer), Verbalizer({"neg": "bad", "pos": "great"},
                                                                      bert_tokenizer)).use_demonstrations(demos)


def test_training_rows_change_every_epoch_and_resume_at_the_same_rows(bert_tokenizer):
    _, demos = _demos(bert_tokenizer)
    template = Template(demo_template_text(QUERY, demos.n_demos), bert_tokenizer, max_length=48)
    support = _support()

    def epoch_data(e):
        return encode_dataset(demos.train_set(support, e), template)

    b = Batches(epoch_data(0), 4, 0, order="shuffle", seed=1, epoch_data=epoch_data)
    it = iter(b)
    first_epoch = [next(it)["input_ids"] for _ in range(2)]
    state = b.state()
    later = [next(it)["input_ids"] for _ in range(4)]
    assert b.epoch >= 1
    r = Batches(epoch_data(0), 4, 0, order="shuffle", seed=1, epoch_data=epoch_data)
    r.load(state)
    again = [x["input_ids"] for _, x in zip(range(4), iter(r))]
    assert all(torch.equal(x, y) for x, y in zip(later, again))
    def rows(batches):
        return {tuple(t for t in x.tolist() if t != 0) for b in batches for x in b}

    rows0, rows1 = rows(first_epoch), rows(later[:2])
    assert rows0 != rows1  # new demonstrations in the next epoch


def test_cli_prompt_fine_tuning_with_demonstrations(tiny_model_dirs, toy_data_root, tmp_path):
    out = tmp_path / "run"
    proc = cli("--config-dir", PLUGINS / "conf", "+task=toy", f"model.name_or_path={tiny_model_dirs['bert']}",
               f"data_root={toy_data_root}", "demonstrations=lm_bff", "demonstrations.num_sets=2",
               "strategy=fixed_prompt", "strategy.max_steps=4", "strategy.eval_every=2", "strategy.k_shot=4",
               "strategy.batch_size=4", "progress=false", f"hydra.run.dir={out}", "max_length=64")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["demonstrations"]["n_demos"] == 2 and "{demo_1|cutfirst}" in res["template"]
    assert res["train"]["steps"] == 4 and res["train"]["best_step"] in (2, 4)


def test_tuning_free_in_context_and_refusals(tiny_model_dirs, toy_data_root, tmp_path):
    common = ("--config-dir", PLUGINS / "conf", "+task=toy", f"model.name_or_path={tiny_model_dirs['bert']}",
              f"data_root={toy_data_root}", "demonstrations=lm_bff", "demonstrations.k_shot=4",
              "demonstrations.num_sets=2", "progress=false", "max_length=64")
    proc = cli(*common, f"hydra.run.dir={tmp_path / 'icl'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "icl" / "results.json").read_text())
    assert res["k_shot"] == 4 and res["checksums"]["few_shot"]
    bad = cli(*common, "calibrate=content_free", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "calibrate=content_free with demonstrations" in bad.stderr
    assert "Traceback" not in bad.stderr
