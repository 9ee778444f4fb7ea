"""The soft verbalizer: a head on the mask's hidden state, initialised from the label words' LM-head rows."""

import json

import pytest
import torch

from promptlearn.data import PromptCollator
from promptlearn.model_base import BaseModel
from promptlearn.prompt_model import PromptModel
from promptlearn.strategies import parameter_groups
from promptlearn.template import Template
from promptlearn.trainer import train
from promptlearn.verbalizers import SoftVerbalizer, Verbalizer, VerbalizerError, build_verbalizer

from conftest import PLUGINS, cli, tiny_mlm  # noqa: F401

ROWS = [{"text_a": "the movie was great ."}, {"text_a": "a boring plot and bad acting"}, {"text_a": "i love it"}]
WORDS = {"neg": "bad", "pos": "great", "mid": "fine"}


def _batch(template, rows=ROWS):
    return PromptCollator(template.tokenizer.pad_token_id)([template.encode(r) for r in rows])


@pytest.mark.parametrize("kind", ["bert", "roberta", "albert", "electra", "distilbert"])
def test_untrained_soft_head_scores_like_the_manual_verbalizer(kind, bert_tokenizer, roberta_tokenizer):
    tok = roberta_tokenizer if kind == "roberta" else bert_tokenizer
    mlm = tiny_mlm(kind, len(tok))
    template = Template("{text_a} It was {mask} .", tok, max_length=24)
    manual = PromptModel(mlm, template, Verbalizer(WORDS, tok)).eval()
    soft = PromptModel(mlm, template, SoftVerbalizer(WORDS, tok, mlm, template=template)).eval()
    batch = _batch(template)
    if kind in ("roberta", "distilbert"):
        batch.pop("token_type_ids", None)
    with torch.no_grad():
        out = soft(**batch)
        torch.testing.assert_close(out.logits, manual(**batch).logits, atol=1e-5, rtol=1e-5)
    assert out.hidden is not None and out.token_logits is None


def test_several_words_average_their_rows(bert_tokenizer):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    v = SoftVerbalizer({"neg": ["bad", "okay"], "pos": "great"}, bert_tokenizer, mlm)
    w = mlm.get_output_embeddings().weight
    ids = bert_tokenizer.convert_tokens_to_ids
    expected = (w[ids("bad")] + (w[ids("ok")] + w[ids("##ay")]) / 2) / 2
    torch.testing.assert_close(v.head.weight[0], expected.detach())
    with pytest.raises(VerbalizerError, match="unknown"):
        SoftVerbalizer({"neg": "qqqq", "pos": "great"}, bert_tokenizer, mlm)


def _few(tok):
    from datasets import Dataset

    from promptlearn.sampler import FewShotSplit

    rows = [{"text_a": t, "label": l, "idx": i} for i, (t, l) in enumerate(
        [("great fun", 1), ("bad plot", 0), ("good film", 1), ("awful story", 0)] * 2)]
    return FewShotSplit(train=Dataset.from_list(rows), dev=Dataset.from_list(rows[:4]), train_ids=list(range(8)),
                        dev_ids=list(range(4)), checksum="x")


@pytest.mark.parametrize("strategy,lm_changes", [("fixed_lm", False), ("fixed_prompt", True), ("prompt_lm", True)])
def test_the_head_trains_and_the_lm_only_when_the_strategy_says(strategy, lm_changes, bert_tokenizer, tmp_path):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    text = ("{soft*2} " if strategy != "fixed_prompt" else "") + "{text_a} It was {mask} ."
    template = Template(text, bert_tokenizer, max_length=24)
    model = PromptModel(mlm, template, SoftVerbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer, mlm,
                                                      template=template))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, _few(bert_tokenizer), {"name": strategy, "max_steps": 4, "eval_every": 2, "batch_size": 4,
                                        "lr": 1e-2 if lm_changes else 0.0, "prompt_lr": 1e-2},
          {"seed": 1, "progress": False}, torch.device("cpu"))
    after = model.state_dict()
    assert not torch.equal(before["verbalizer.head.weight"], after["verbalizer.head.weight"])
    lm_keys = [k for k in before if k.startswith("mlm.")]
    assert any(not torch.equal(before[k], after[k]) for k in lm_keys) == lm_changes
    assert parameter_groups(model)["verbalizer"] == list(model.verbalizer.parameters())


def test_save_load_round_trip_is_exact(bert_tokenizer, tmp_path):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    (tmp_path / "lm").mkdir()
    mlm.save_pretrained(tmp_path / "lm")
    bert_tokenizer.save_pretrained(tmp_path / "lm")
    template = Template("{text_a} It was {mask} .", bert_tokenizer, max_length=24)
    cfg = {"type": "soft", "label_words": WORDS}
    model = PromptModel(mlm, template, build_verbalizer(cfg, bert_tokenizer, list(WORDS), template, mlm=mlm),
                        base_model=str(tmp_path / "lm")).eval()
    with torch.no_grad():
        model.verbalizer.head.weight.add_(torch.randn_like(model.verbalizer.head.weight))  # "trained"
        before = model(**_batch(template)).logits
    model.mark_trained("fixed_lm", ["verbalizer"])
    model.save_pretrained(tmp_path / "saved")
    assert '"type": "soft"' in (tmp_path / "saved" / "promptlearn.json").read_text()
    again = BaseModel.from_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved" / "lm").exists()  # the LM did not train: only the head is stored
    with torch.no_grad():
        assert torch.equal(again(**_batch(template)).logits, before)


def test_cli_trains_a_soft_head(tiny_model_dirs, toy_data_root, tmp_path):
    out = tmp_path / "run"
    proc = cli("--config-dir", PLUGINS / "conf", "+task=toy", f"model.name_or_path={tiny_model_dirs['bert']}",
               # the form: verbalizer.type=soft over the default (manual) group -- its leftover options go
               f"data_root={toy_data_root}", "verbalizer.type=soft", "strategy=fixed_lm", "strategy.max_steps=4",
               "strategy.eval_every=2", "strategy.k_shot=4", "progress=false", "save_model=true",
               f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["verbalizer_config"]["type"] == "soft" and res["spec"]["trained"] == ["prompt", "verbalizer"]
    assert (out / "model" / "verbalizer.safetensors").exists()


def test_cli_refuses_an_option_the_type_does_not_take_before_loading(tiny_model_dirs, toy_data_root, tmp_path):
    out = tmp_path / "run"
    proc = cli("--config-dir", PLUGINS / "conf", "+task=toy", f"model.name_or_path={tiny_model_dirs['bert']}",
               f"data_root={toy_data_root}", "verbalizer.type=soft", "verbalizer.aggregation=max",
               "strategy=fixed_lm", "progress=false", f"hydra.run.dir={out}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "['aggregation'] are unknown to the soft verbalizer" in proc.stderr
    assert "Traceback" not in proc.stderr and not (out / "results.json").exists()
    assert "first test example" not in proc.stderr + proc.stdout  # refused before the model was built


def test_retyping_keeps_only_explicit_options():
    from promptlearn.spec import _verbalizer_groups, retype_verbalizer_config

    manual = _verbalizer_groups()["manual"]
    assert retype_verbalizer_config({**manual, "type": "soft"}) == {"type": "soft", "label_words": None,
                                                                     "prefix_space": "auto"}
    kpt = retype_verbalizer_config({**manual, "type": "kpt", "words": "sentiment"})
    assert kpt["words"] == "sentiment" and kpt["cut_off"] == _verbalizer_groups()["kpt"]["cut_off"]
    assert retype_verbalizer_config({**manual, "type": "soft", "aggregation": "max"})["aggregation"] == "max"
    assert retype_verbalizer_config(manual) == manual  # the group of its own type: unchanged
