"""Label-word search finds words planted in a toy model, and its YAML is accepted by the run command."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from promptlearn.label_search import candidate_tokens, search_label_words
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


def test_candidates_are_whole_words(bert_tokenizer, roberta_tokenizer):
    ids, words = candidate_tokens(bert_tokenizer, prefix_space=False)
    assert "great" in words and not any(w.startswith("#") for w in words)
    assert bert_tokenizer.mask_token_id not in ids.tolist()
    _, bpe_words = candidate_tokens(roberta_tokenizer, prefix_space=True)
    assert bpe_words and all(w.isalpha() for w in bpe_words)


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
