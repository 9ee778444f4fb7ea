"""Label-word search finds words planted in a toy model, and its YAML is accepted by the run command."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from promptlearn.errors import ConfigError
from promptlearn.label_search import candidate_tokens, check_search_options, rank_and_prune, search_label_words
from promptlearn.prompt_model import PromptModel
from promptlearn.sampler import sample_few_shot
from promptlearn.template import Template
from promptlearn.verbalizers import Verbalizer

from conftest import PLUGINS, ROOT, cli, tiny_mlm

POS = ["the movie was great", "a good film", "really fun", "i love the acting", "great story", "fun and good"]
NEG = ["the movie was terrible", "a bad film", "really boring", "i hate the acting", "awful plot", "boring and bad"]
PLANTED = {"negative": "maybe", "positive": "yes"}  # the words the toy model is taught to put at the mask


@pytest.fixture(scope="module")
def planted_model_dir(bert_tokenizer, tmp_path_factory):
    """A tiny BERT trained for a few seconds to predict 'yes' at the mask of positive reviews and 'maybe' of
    negative ones (the toy task's template), so the right answer of the search is known."""
    torch.manual_seed(0)
    mlm = tiny_mlm("bert", len(bert_tokenizer)).train()
    template = Template("{text_a|shortenable} It was {mask} .", bert_tokenizer, max_length=32)
    rows = [(t, PLANTED["positive"]) for t in POS] + [(t, PLANTED["negative"]) for t in NEG]
    enc = [template.encode({"text_a": t}) for t, _ in rows]
    from promptlearn.data import PromptCollator

    batch = PromptCollator(bert_tokenizer.pad_token_id)(enc)
    target = torch.tensor(bert_tokenizer.convert_tokens_to_ids([w for _, w in rows]))
    opt = torch.optim.Adam(mlm.parameters(), lr=3e-3)
    for _ in range(150):
        logits = mlm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     token_type_ids=batch["token_type_ids"]).logits
        loss = torch.nn.functional.cross_entropy(logits[torch.arange(len(rows)), batch["mask_pos"]], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    d = tmp_path_factory.mktemp("planted")
    mlm.eval().save_pretrained(d)
    bert_tokenizer.save_pretrained(d)
    return d


def _sentencepiece_tokenizer():
    """An ALBERT-like (SentencePiece/Metaspace) tokenizer: ``▁great`` starts a word, ``great`` continues one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]", "▁", "▁great", "great", "▁movie", "ing", "▁it",
              "▁was", "▁terrible", "▁.", ".", "▁good", "good", "▁9", "▁a"]
    t = Tokenizer(models.Unigram([(p, -float(i)) for i, p in enumerate(pieces)], unk_id=1))
    t.pre_tokenizer, t.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", pad_token="<pad>", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


@pytest.mark.parametrize("kind,prefix_space", [("bert", False), ("roberta", True), ("roberta", False),
                                                ("sentencepiece", False)])
def test_candidates_are_whole_words_that_tokenise_back(kind, prefix_space, bert_tokenizer, roberta_tokenizer):
    tok = {"bert": bert_tokenizer, "roberta": roberta_tokenizer, "sentencepiece": _sentencepiece_tokenizer()}[kind]
    ids, words = candidate_tokens(tok, prefix_space=prefix_space)
    assert len(ids) == len(words) > 3
    special = set(tok.all_special_ids)
    for i, w in zip(ids.tolist(), words):
        assert w.isalpha() and len(w) >= 2 and i not in special
        # the written word is exactly the searched token for the manual verbalizer (same leading-space rule)
        v = Verbalizer({"a": w, "b": words[0] if w != words[0] else words[1]}, tok, labels=["a", "b"],
                       prefix_space=prefix_space)
        assert v.words_ids[0] == [i]
    if kind == "bert":
        assert "great" in words and not any("#" in w for w in words)
    if kind == "roberta":  # with a space: only Ġ tokens; without: only the tokens that start a text
        assert all(tok.convert_ids_to_tokens(i).startswith("Ġ") == prefix_space for i in ids.tolist())
    if kind == "sentencepiece":  # the continuation pieces great/good/ing are not words
        assert sorted(words) == ["good", "great", "it", "movie", "terrible", "was"]
        assert tok.convert_ids_to_tokens(ids.tolist()) == ["▁great", "▁movie", "▁it", "▁was", "▁terrible",
                                                           "▁good"]


def test_rank_and_prune_keeps_words_distinct_and_chooses_on_dev():
    """4 classes, 6 candidate words.  Word 0 is the most probable word for classes 0 and 1 alike, so the
    assignment must give it to one of them; train prefers (0, 1, 2, 3) and (1, 0, 2, 3) equally, dev breaks it."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 3)
    lp = rng.normal(-8, 0.1, (12, 6))
    lp[y == 0, 0], lp[y == 0, 1] = -1.0, -2.0  # class 0: word 0, then word 1
    lp[y == 1, 0], lp[y == 1, 1] = -1.0, -2.0  # class 1: the same order (word 0 is no cue at all)
    lp[y == 2, 2], lp[y == 3, 3] = -1.0, -1.0
    y_dev = np.repeat(np.arange(4), 2)
    dev = rng.normal(-8, 0.1, (8, 6))
    dev[y_dev == 0, 1], dev[y_dev == 1, 0] = -1.0, -1.0  # on dev word 1 marks class 0 and word 0 class 1
    dev[y_dev == 2, 2], dev[y_dev == 3, 3] = -1.0, -1.0
    ranked, rows = rank_and_prune(lp, y, dev, y_dev, 4, "lmbff", top_k=3, beam=10)
    assert ranked[0][:2] == [0, 1] and ranked[1][:2] == [0, 1]
    assert all(len(set(r["cols"])) == 4 for r in rows)
    best = rows[0]
    assert best["cols"] == [1, 0, 2, 3] and best["dev_acc"] == 1.0
    assert [r["dev_acc"] for r in rows] == sorted((r["dev_acc"] for r in rows), reverse=True)
    # the task's metric chooses on dev (macro-F1 for TREC/CB): rows carry it and are sorted by it
    from sklearn.metrics import f1_score

    _, rows_f1 = rank_and_prune(lp, y, dev, y_dev, 4, "lmbff", top_k=3, beam=10, metric="f1_macro")
    for r in rows_f1:
        assert r["dev_score"] == pytest.approx(f1_score(y_dev, dev[:, r["cols"]].argmax(-1), average="macro"))
    assert [r["dev_score"] for r in rows_f1] == sorted((r["dev_score"] for r in rows_f1), reverse=True)
    assert rows_f1[0]["cols"] == [1, 0, 2, 3]


def test_petal_prefers_class_specific_words_to_frequent_ones():
    """Word 0 is the most probable word everywhere (a 'the'); words 1 and 2 are each a little more probable in
    one class.  LM-BFF's mean log-probability ranks word 0 first for both classes, PETAL's ratio does not."""
    y = np.array([0, 0, 1, 1])
    lp = np.full((4, 3), -6.0)
    lp[:, 0] = -1.0
    lp[y == 0, 1], lp[y == 1, 2] = -3.0, -3.0
    ranked, _ = rank_and_prune(lp, y, lp, y, 2, "lmbff", top_k=3, beam=5)
    assert ranked[0][0] == 0 and ranked[1][0] == 0
    ranked, rows = rank_and_prune(lp, y, lp, y, 2, "petal", top_k=3, beam=5)
    assert ranked[0][0] == 1 and ranked[1][0] == 2 and rows[0]["cols"] == [1, 2] and rows[0]["dev_acc"] == 1.0


def test_search_options_are_checked():
    assert check_search_options({})["top_k"] == 30  # defaults from conf/label_search.yaml
    for bad, msg in [({"topk": 3}, "search.topk is not a label-search option"),
                     ({"beam": 0}, "search.beam=0 is below its minimum 1"),
                     ({"top_k": "x"}, "search.top_k='x' is not an integer"),
                     ({"name": "../x"}, "search.name='../x' is not a plain file name")]:
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace(".", r"\.")):
            check_search_options(bad)


def test_soft_templates_are_refused(bert_tokenizer):
    from promptlearn.prompt_model import PromptModel

    tok = bert_tokenizer
    model = PromptModel(tiny_mlm("bert", len(tok)), Template("{soft*2} {text_a} It was {mask} .", tok, max_length=24),
                        Verbalizer({"neg": "bad", "pos": "good"}, tok, labels=["neg", "pos"]))
    with pytest.raises(ConfigError, match="soft tokens or deep prompts"):
        search_label_words(model, None, ["neg", "pos"], "cpu")


@pytest.mark.parametrize("criterion", ["lmbff", "petal"])
def test_search_finds_the_planted_words(criterion, planted_model_dir, toy_data_root):
    from omegaconf import OmegaConf

    from promptlearn.backbone import load_backbone
    from promptlearn.task import load_task

    task = load_task(OmegaConf.load(PLUGINS / "conf" / "task" / "toy.yaml"), data_root=toy_data_root)
    tok, mlm = load_backbone(str(planted_model_dir))
    template = Template(task.template, tok, max_length=32)
    model = PromptModel(mlm, template, Verbalizer(task.verbalizer, tok, labels=task.labels))
    few = sample_few_shot(task.splits["train"], k=4, seed=13)
    res = search_label_words(model, few, task.labels, "cpu", criterion=criterion, top_k=10, beam=20)
    assert res["label_words"] == PLANTED
    assert res["dev_acc"] == 1.0 and res["assignments"][0]["words"] == [PLANTED["negative"], PLANTED["positive"]]


def test_search_scores_are_what_the_run_scores(bert_tokenizer, toy_data_root):
    """On a random tiny model (accuracies far from 0 and 1), the train/dev accuracy of every top assignment
    equals what the run's own scoring path gives a manual verbalizer with those words."""
    from omegaconf import OmegaConf

    from promptlearn import pipeline
    from promptlearn.task import load_task

    task = load_task(OmegaConf.load(PLUGINS / "conf" / "task" / "toy.yaml"), data_root=toy_data_root)
    tok, mlm = bert_tokenizer, tiny_mlm("bert", len(bert_tokenizer), seed=3).eval()
    template = Template(task.template, tok, max_length=32)
    few = sample_few_shot(task.splits["train"], k=4, seed=21)
    model = PromptModel(mlm, template, Verbalizer(task.verbalizer, tok, labels=task.labels))
    res = search_label_words(model, few, task.labels, "cpu", top_k=8, beam=10)
    accs = set()
    for row in res["assignments"][:4]:
        words = dict(zip(task.labels, row["words"]))
        run_model = PromptModel(mlm, template, Verbalizer(words, tok, labels=task.labels))
        for split, key in ((few.train, "train_acc"), (few.dev, "dev_acc")):
            got = pipeline.score(run_model, split, "x", "cpu", batch_size=4, progress=False).metrics["accuracy"]
            assert got == pytest.approx(row[key])
        accs.add(row["dev_acc"])
    assert accs - {0.0, 1.0}  # not a trivial case


def test_cli_writes_a_verbalizer_the_run_command_accepts(planted_model_dir, toy_data_root, tmp_path):
    conf = tmp_path / "conf"
    (conf / "task").mkdir(parents=True)
    shutil.copy(PLUGINS / "conf" / "task" / "toy.yaml", conf / "task" / "toy.yaml")
    out = tmp_path / "search"
    proc = subprocess.run([sys.executable, "-m", "promptlearn.label_search", "--config-dir", str(conf), "+task=toy",
                           f"model.name_or_path={planted_model_dir}", f"data_root={toy_data_root}",
                           "search.k_shot=4", "search.top_k=10", f"search.config_dir={conf}", f"hydra.run.dir={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "search.json").read_text())
    assert res["label_words"] == PLANTED and (conf / "verbalizer" / "searched.yaml").exists()
    assert "verbalizer=searched" in proc.stdout
    run = tmp_path / "run"
    proc = cli("--config-dir", conf, "+task=toy", f"model.name_or_path={planted_model_dir}",
               f"data_root={toy_data_root}", "verbalizer=searched", "progress=false", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["verbalizer"] == {c: [w] for c, w in PLANTED.items()}
    assert results["metrics"]["accuracy"] > 0.8  # the planted words separate the toy test set too


def test_bad_criterion_is_one_clean_error(planted_model_dir, toy_data_root, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "promptlearn.label_search", "--config-dir", str(PLUGINS / "conf"),
                           "+task=toy", f"model.name_or_path={planted_model_dir}", f"data_root={toy_data_root}",
                           "search.k_shot=4", "search.criterion=magic", f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "search.criterion='magic'" in proc.stderr and "Traceback" not in proc.stderr
