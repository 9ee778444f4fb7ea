"""Template search (promptlearn.search): AutoPrompt trigger search and LM-BFF's T5 generation, on tiny random models."""

import json
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from promptlearn.errors import ConfigError
from promptlearn.prompt_model import PromptModel
from promptlearn.sampler import sample_few_shot
from promptlearn.search import check_search_options, search_templates, write_patterns
from promptlearn.template import Template, TemplateError
from promptlearn.template_search import SearchContext, score_templates
from promptlearn.template_search.autoprompt import AutoPrompt, TriggerTemplate
from promptlearn.template_search.t5 import (T5Generation, aggregated_beam_search, fill_shape, sentinel_ids,
                                            shape_markers, split_spans)
from promptlearn.verbalizers import Verbalizer

from conftest import PLUGINS, ROOT, WORDS, cli, tiny_mlm


def tiny_t5_dir(d, n_sentinels=4, seed=0):
    """A randomly initialised 2-layer T5 and a WordLevel tokenizer with T5's sentinels <extra_id_N> and </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    vocab = {t: i for i, t in enumerate(dict.fromkeys(["<pad>", "</s>", "<unk>"] + WORDS))}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.decoder = decoders.WordPiece(prefix="##")  # words joined by spaces
    t.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                     special_tokens=[("</s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                  additional_special_tokens=[f"<extra_id_{i}>" for i in range(n_sentinels)])
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                   decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                   eos_token_id=tok.eos_token_id)
    T5ForConditionalGeneration(cfg).eval().save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return tiny_t5_dir(tmp_path_factory.mktemp("tiny_t5"))


@pytest.fixture(scope="module")
def toy(toy_data_root):
    from omegaconf import OmegaConf

    from promptlearn.task import load_task

    task = load_task(OmegaConf.load(PLUGINS / "conf" / "task" / "toy.yaml"), data_root=toy_data_root)
    return task, sample_few_shot(task.splits["train"], k=4, seed=13)


def _ctx(bert_tokenizer, toy, seed=1):
    task, few = toy
    tok = bert_tokenizer
    model = PromptModel(tiny_mlm("bert", len(tok), seed=seed).eval(), Template(task.template, tok, max_length=32),
                        Verbalizer(task.verbalizer, tok, labels=task.labels))
    return SearchContext(model=model, task=task, few=few, device=torch.device("cpu"), batch_size=8)


def _autoprompt(task, **options):
    opts, method = check_search_options({"method": "autoprompt", **options})
    method.check(task)
    return method


# ---------------------------------------------------------------------------------------------- AutoPrompt
def test_trigger_search_lowers_the_train_loss(bert_tokenizer, toy):
    ctx = _ctx(bert_tokenizer, toy)
    method = _autoprompt(ctx.task, iterations=3, top_k=5, candidate_batch=4)
    found = method.search(ctx)
    start = method.history[0]
    assert start["triggers"] == ["the", "the", "the"]
    kept = [h for h in method.history[1:] if not h.get("converged")]
    assert kept, method.history  # at least one flip lowered the loss
    losses = [start["train_loss"]] + [h["best_loss"] for h in kept]
    assert all(b < a for a, b in zip(losses, losses[1:]))  # every kept flip lowers the few-shot train loss
    assert min(f["scores"]["train_loss"] for f in found) < start["train_loss"] - 1e-4
    # the written templates are plain templates with the found words, and the run's own scoring path gives
    # exactly the loss and accuracies the search computed on the trigger ids
    scored, rejected = score_templates(ctx, [f["template"] for f in found])
    assert not rejected and len(scored) == len(found)
    for f, s in zip(found, scored):
        assert f["template"] == "{text_a|shortenable} " + " ".join(f["triggers"]) + " {mask}."
        assert "{soft" not in f["template"] and "[T]" not in f["template"]
        for key in ("train_loss", "train_accuracy", "dev_accuracy"):
            assert s["scores"][key] == pytest.approx(f["scores"][key], abs=1e-5), key
    assert [f["scores"]["dev_accuracy"] for f in found] == sorted((f["scores"]["dev_accuracy"] for f in found),
                                                                   reverse=True)


def test_candidates_are_scored_in_batches(bert_tokenizer, toy):
    """7 trigger variants, 3 per forward, the 8 few-shot train examples in one data batch: 3 forwards of 24, 24
    and 8 rows; each variant's batched loss is the loss its written template gets through the pipeline."""
    from promptlearn import pipeline
    from promptlearn.data import encode_dataset
    from promptlearn.template_search.base import _losses

    ctx = _ctx(bert_tokenizer, toy)
    method = _autoprompt(ctx.task, candidate_batch=3)
    tok = bert_tokenizer
    encoded = encode_dataset(ctx.few.train, method.trigger_template.encoder(tok, 32))
    words = ["movie", "film", "fun", "boring", "plot", "story", "news"]
    variants = torch.tensor([tok.convert_tokens_to_ids([w, words[(i + 1) % 7], "the"]) for i, w in enumerate(words)])
    rows = []
    handle = ctx.model.mlm.register_forward_pre_hook(lambda m, a, kw: rows.append(int(kw["input_ids"].shape[0])),
                                                     with_kwargs=True)
    try:
        r = method.score_triggers(ctx, encoded, variants)
    finally:
        handle.remove()
    assert rows == [24, 24, 8]
    assert r["logits"].shape == (8, 7, 2) and r["loss"].shape == (7,)
    for m, v in enumerate(variants):
        text = method.trigger_template.render(tok.convert_ids_to_tokens(v.tolist()))
        model = PromptModel(ctx.model.mlm, Template(text, tok, max_length=32), ctx.model.verbalizer)
        s = pipeline.score(model, ctx.few.train, "few_train", "cpu", batch_size=8)
        assert _losses(s.logits, s.labels) == pytest.approx(float(r["loss"][m]), abs=1e-5)
        assert s.metrics["accuracy"] == pytest.approx(float(r["accuracy"][m]))
    assert len(set(np.round(r["loss"], 6))) > 1  # the variants differ


def test_trigger_template_errors_are_one_line():
    for text, msg in [("{text_a} {mask}.", "no trigger marker"), ("{text_a} [T][T] {mask}.", "touches other text"),
                      ("{text_a} [T] {soft} {mask}.", "soft tokens"), ("{review} [T] {mask}.", "not a field"),
                      ("{text_a} [T] {mask} {mask}.", "exactly one {mask}")]:
        with pytest.raises((ConfigError, TemplateError), match=msg.replace("{", r"\{").replace("}", r"\}")):
            TriggerTemplate(text, ["text_a"])
    t = TriggerTemplate("{text_a|shortenable} [T] [T] {mask}.", ["text_a"])
    assert t.render(["a", "b"]) == "{text_a|shortenable} a b {mask}." and t.after_space == [True, True]


def test_search_options_are_checked():
    opts, method = check_search_options({})
    assert opts["method"] == "autoprompt" and isinstance(method, AutoPrompt) and method.options["top_k"] == 10
    assert isinstance(check_search_options({"method": "t5"})[1], T5Generation)
    for bad, msg in [({"method": "magic"}, "unknown template-search method 'magic'"),
                     ({"top_k": 0}, "search.top_k=0 is below its minimum 1"),
                     ({"beam": 5}, "search.beam is not an option of search.method=autoprompt (an option of another"),
                     ({"method": "t5", "top_k": 3}, "search.top_k is not an option of search.method=t5"),
                     ({"bogus": 1}, "search.bogus is not an option"),
                     ({"name": "../x"}, "search.name='../x' is not a plain file name")]:
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(".", r"\.")):
            check_search_options(bad)
    # another method's option at its default value (as Hydra composes conf/search.yaml) is ignored
    assert check_search_options({"method": "t5", "top_k": 10})[0]["method"] == "t5"


# ---------------------------------------------------------------------------------------------- T5 / LM-BFF
def test_fill_shape_and_markers(bert_tokenizer):
    assert fill_shape("{text_a} <X> {mask} <Y>", ["It was", "."]) == "{text_a} It was {mask}."
    assert fill_shape("{text_a} <X> {mask} <Y>", ["", "!"]) == "{text_a} {mask}!"
    text = fill_shape("<X> {mask} <Y> {text_a}", ["a {b}", ""])
    assert text == "a {{b}} {mask} {text_a}"
    assert Template(text, bert_tokenizer, max_length=32).fields == ["text_a"]  # braces in a span stay literal
    for shape, msg in [("{text_a} {mask}", "no span marker"), ("{text_a} <Y> {mask} <X>", "in this order"),
                       ("{text_a} <X> {mask} <X>", "twice")]:
        with pytest.raises(ConfigError, match=msg):
            shape_markers(shape)


def test_aggregated_beam_search_scores_are_summed_log_probabilities(t5_dir):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(t5_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(t5_dir).eval()
    sentinels = sentinel_ids(tok, 2, "tiny")
    enc = tok(["the movie was great <extra_id_0> good <extra_id_1>", "it was bad <extra_id_0> awful <extra_id_1>",
               "a fun film <extra_id_0> great <extra_id_1>"], padding=True, return_tensors="pt")
    out = aggregated_beam_search(model, enc["input_ids"], enc["attention_mask"], sentinels, tok.eos_token_id,
                                 beam=5, max_span_tokens=3, rows_per_forward=4, banned=[tok.pad_token_id,
                                                                                       tok.unk_token_id])
    assert 0 < len(out) <= 5 and len({tuple(t) for t, _ in out}) == len(out)
    assert [s for _, s in out] == sorted((s for _, s in out), reverse=True)
    for tokens, score in out:
        assert tokens[0] == sentinels[0] and tokens[-1] in (sentinels[2], tok.eos_token_id)
        spans = split_spans(tokens, sentinels, tok.eos_token_id)
        assert len(spans) == 2 and all(len(s) <= 3 for s in spans)
        labels = torch.tensor([tokens] * 3)
        dec = torch.cat([torch.full((3, 1), model.config.decoder_start_token_id), labels[:, :-1]], 1)
        with torch.no_grad():
            lp = torch.log_softmax(model(**enc, decoder_input_ids=dec).logits.float(), -1)
        # the forced first token <extra_id_0> is shared by every beam and not scored
        assert score == pytest.approx(float(lp[:, 1:].gather(-1, labels[:, 1:].unsqueeze(-1)).sum()), abs=1e-3)


def test_t5_generation_yields_parseable_templates_and_a_patterns_file(t5_dir, bert_tokenizer, toy, tmp_path):
    ctx = _ctx(bert_tokenizer, toy)
    opts, method = check_search_options({"method": "t5", "generator": str(t5_dir), "beam": 4, "max_span_tokens": 3})
    method.check(ctx.task)
    assert method.shapes == ["{text_a} <X> {mask} <Y>", "<X> {mask} <Y> {text_a}"]
    res = search_templates(ctx.model, ctx.task, ctx.few, method, "cpu", batch_size=8)
    rows = res["templates"]
    assert len(rows) >= 2 and {r["source"].split(": ", 1)[1] for r in rows} == set(method.shapes)
    for r in rows:
        t = Template(r["template"], bert_tokenizer, max_length=32)
        assert r["template"].count("{mask}") == 1 and r["template"].count("{text_a}") == 1
        assert t.has_mask and t.fields == ["text_a"]
        assert set(r["scores"]) >= {"dev_accuracy", "train_accuracy", "train_loss", "generator_logprob"}
    keys = [(-r["scores"]["dev_accuracy"], r["scores"]["train_loss"]) for r in rows]
    assert keys == sorted(keys)
    path = write_patterns(tmp_path / "patterns.yaml", rows, "searched-toy-t5", note="test")
    data = yaml.safe_load(path.read_text())
    assert list(data) == ["patterns"] and len(data["patterns"]) == len(rows)
    names = [e["name"] for e in data["patterns"]]
    assert len(set(names)) == len(names)
    for e in data["patterns"]:
        assert set(e) == {"name", "template", "source", "scores"}
        assert all(isinstance(v, float) for v in e["scores"].values())
        Template(e["template"], bert_tokenizer, max_length=32)


def test_t5_generator_without_sentinels_is_refused(tiny_model_dirs, bert_tokenizer, toy):
    ctx = _ctx(bert_tokenizer, toy)
    _, method = check_search_options({"method": "t5", "generator": str(tiny_model_dirs["bert"]), "beam": 2})
    with pytest.raises(ConfigError, match="no sentinel token <extra_id_0>"):
        method.check(ctx.task)  # before any weights load


# ---------------------------------------------------------------------------------------------- the command
def _search(*args, cwd=ROOT):
    import os

    return subprocess.run([sys.executable, "-m", "promptlearn.search", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))


def test_cli_autoprompt_writes_templates_the_run_command_accepts(tiny_model_dirs, toy_data_root, tmp_path):
    conf = tmp_path / "conf"
    (conf / "task").mkdir(parents=True)
    shutil.copy(PLUGINS / "conf" / "task" / "toy.yaml", conf / "task" / "toy.yaml")
    out = tmp_path / "search"
    model = tiny_model_dirs["bert"]
    proc = _search("--config-dir", conf, "+task=toy", f"model.name_or_path={model}", f"data_root={toy_data_root}",
                   "search.method=autoprompt", "search.k_shot=4", "search.iterations=2", "search.top_k=3",
                   "search.n_triggers=2", f"search.config_dir={conf}", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "search.json").read_text())
    best = res["templates"][0]["template"]
    assert best.startswith("{text_a|shortenable} ") and best.endswith(" {mask}.") and "[T]" not in best
    data = yaml.safe_load((conf / "patterns.yaml").read_text())
    assert data["patterns"][0]["template"] == best and data["patterns"][0]["source"].startswith("autoprompt")
    task_yaml = yaml.safe_load((conf / "task" / "toy_searched.yaml").read_text())
    assert task_yaml["template"] == best and task_yaml["name"] == "toy"
    # the printed follow-up command, as printed
    line = next(x for x in proc.stdout.splitlines() if x.startswith("use it:"))
    argv = shlex.split(line.split("use it:", 1)[1].replace(" ...", ""))
    assert argv[:3] == ["python", "-m", "promptlearn.run"]
    run = tmp_path / "run"
    proc = cli("--config-dir", conf, *argv[3:], f"data_root={toy_data_root}", "progress=false",
               f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["template"] == best
    # the written task config is a task the run takes as is
    run2 = tmp_path / "run2"
    proc = cli("--config-dir", conf, "+task=toy_searched", f"model.name_or_path={model}", f"data_root={toy_data_root}",
               "progress=false", f"hydra.run.dir={run2}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((run2 / "results.json").read_text())
    assert again["template"] == best and again["metrics"]["accuracy"] == results["metrics"]["accuracy"]


def test_cli_errors_are_one_clean_line(tiny_model_dirs, toy_data_root, tmp_path):
    proc = _search("--config-dir", PLUGINS / "conf", "+task=toy", f"model.name_or_path={tiny_model_dirs['bert']}",
                   f"data_root={toy_data_root}", "search.method=t5", "search.generator=/nonexistent/t5",
                   f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    err = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "/nonexistent/t5" in err[0] and "fix:" in err[0]
