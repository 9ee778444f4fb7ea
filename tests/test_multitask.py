"""Mixed-task batches over one frozen LM (promptlearn.multitask): every example gets exactly its own task model's scores."""

import json

import pytest
import torch

from promptlearn.data import PromptCollator
from promptlearn.errors import ConfigError
from promptlearn.multitask import BaseModelMismatch, MultiTaskModel, RowError
from promptlearn.prompt_model import PromptModel
from promptlearn.soft_prompt import build_soft_prompt
from promptlearn.template import Template
from promptlearn.verbalizers import SoftVerbalizer, Verbalizer

import numpy as np

from conftest import DATA, tiny_mlm

TEXTS = ["the movie was great .", "a boring plot and bad acting , really awful", "i love this film",
         "no , that film was awful", "maybe it is fine ?", "they hate the story ."]
PAIRS = [("is it good", "yes it is"), ("the plot is boring", "it was fun"), ("i love it", "they hate it")]


def _tasks(tok, mlm):
    """Six tasks on one LM: every prompt type, different soft-token counts, prefix lengths and class counts."""
    def model(text, labels, encoder=None, materialize=False, soft_head=False, **opts):
        template = Template(text, tok, max_length=40)
        prompt = None
        if encoder is not None:
            prompt = build_soft_prompt(template.soft_spec, mlm, encoder, seed=len(text), **opts)
            if materialize:
                prompt = prompt.plain()
        verbalizer = SoftVerbalizer(labels, tok, mlm, template=template) if soft_head else Verbalizer(labels, tok)
        m = PromptModel(mlm, template, verbalizer, soft_prompt=prompt).eval()
        if soft_head:  # a trained-looking head, not the label-word initialisation
            with torch.no_grad():
                for p in m.verbalizer.parameters():
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.1)
        return m

    return {
        "emb": model("{soft*2} {text_a} {soft:It was|id=p} {mask} {soft|id=q} .", {"neg": "bad", "pos": "great"},
                     "embedding"),
        "lstm": model("{soft*3} {text_a} It was {mask} .", {"neg": "terrible", "mid": "fine", "pos": "good"}, "lstm"),
        "mlp": model("{text_a} {soft*4} {mask} .", {"no": "boring", "yes": "fun"}, "mlp", materialize=True),
        "deep5": model("{text_a} It was {mask} .", {"neg": ["bad", "awful"], "pos": "great"}, "deep", num_prefix=5),
        "deep2": model("{soft} {text_a} ? {mask} , {text_b}", {"no": "bad", "maybe": "fine", "yes": "yes"}, "deep",
                       num_prefix=2, prefix_projection=True, prefix_hidden_size=8),
        "hard": model("{mask} : {text_a}", {"w": "awful", "s": "sports", "b": "business", "t": "tech"},
                      soft_head=True),
    }


def _rows():
    rows = []
    for i in range(6):
        for task in ("emb", "lstm", "mlp", "deep5", "hard"):
            rows.append({"task": task, "text_a": TEXTS[(i + len(task)) % len(TEXTS)]})
        a, b = PAIRS[i % len(PAIRS)]
        rows.append({"task": "deep2", "text_a": a, "text_b": b})
    return rows


def _own_scores(model, rows):
    """The task's own PromptModel on its own rows (its own batch)."""
    batch = PromptCollator(model.template.tokenizer.pad_token_id)([model.template.encode(r) for r in rows])
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_mixed_batch_equals_each_tasks_own_model(kind, bert_tokenizer, roberta_tokenizer):
    tok = roberta_tokenizer if kind == "roberta" else bert_tokenizer
    mlm = tiny_mlm(kind, len(tok))
    tasks = _tasks(tok, mlm)
    multi = MultiTaskModel(tasks).eval()
    rows = _rows()
    encoded, kept, bad = multi.encode(rows)
    assert not bad and kept == sorted(kept, key=lambda i: [*tasks].index(rows[i]["task"]))
    # one forward over all 36 rows of six tasks, in a shuffled order
    perm = torch.randperm(len(kept), generator=torch.Generator().manual_seed(0)).tolist()
    batch = PromptCollator(tok.pad_token_id)([encoded[j] for j in perm])
    assert set(batch["task_ids"].tolist()) == set(range(6))
    with torch.no_grad():
        mixed = multi(**batch).logits
    for name, model in tasks.items():
        mine = [p for p, j in enumerate(perm) if rows[kept[j]]["task"] == name]
        own = _own_scores(model, [rows[kept[perm[p]]] for p in mine])
        c = len(model.labels)
        torch.testing.assert_close(mixed[mine, :c], own, atol=1e-5, rtol=1e-5)
        assert torch.isinf(mixed[mine, c:]).all()
    # predict: length-sorted batches of 4 through the one batcher and inference loop, back in input order
    out = multi.predict(rows, batch_size=4)
    for name, model in tasks.items():
        idx = [i for i, r in enumerate(rows) if r["task"] == name]
        probs = torch.softmax(_own_scores(model, [rows[i] for i in idx]), -1)
        for i, p in zip(idx, probs):
            assert out[i]["task"] == name and out[i]["label"] == model.labels[int(p.argmax())]
            assert list(out[i]["probs"]) == model.labels
            torch.testing.assert_close(torch.tensor(list(out[i]["probs"].values())), p, atol=1e-5, rtol=1e-5)


def test_bad_rows_get_errors_and_the_good_rows_their_scores(bert_tokenizer):
    tok = bert_tokenizer
    mlm = tiny_mlm("bert", len(tok))
    tasks = _tasks(tok, mlm)
    multi = MultiTaskModel({k: tasks[k] for k in ("emb", "deep2", "hard")}).eval()
    rows = [{"task": "emb", "text_a": TEXTS[0]}, {"task": "sst-2", "text_a": "x"}, {"task": "deep2", "text_a": "a"},
            {"text_a": "no task"}, "just a string", {"task": "hard", "text_a": TEXTS[1]},
            {"task": "emb", "text_a": ["not", "text"]}, {"task": "deep2", "text_a": "a", "text_b": "b"}]
    out = multi.predict(rows, batch_size=2, errors="record", where=lambda i: f"line {i + 1}")
    errors = {i: r["error"] for i, r in enumerate(out) if "error" in r}
    assert sorted(errors) == [1, 2, 3, 4, 6]
    assert errors[1].startswith("line 2: unknown task 'sst-2'") and "['emb', 'deep2', 'hard']" in errors[1]
    assert errors[2].startswith("line 3: task 'deep2' needs field 'text_b'") and "fix: add \"text_b\"" in errors[2]
    assert "no 'task' field" in errors[3] and "not an object" in errors[4] and "is a list" in errors[6]
    for i in (0, 5, 7):
        name = rows[i]["task"]
        p = torch.softmax(_own_scores(tasks[name], [rows[i]]), -1)[0]
        assert out[i]["label"] == tasks[name].labels[int(p.argmax())]
        torch.testing.assert_close(torch.tensor(list(out[i]["probs"].values())), p, atol=1e-5, rtol=1e-5)
    with pytest.raises(RowError, match="input row 1: unknown task 'sst-2'"):
        multi.predict(rows)


def test_refuses_other_base_models(bert_tokenizer):
    tok = bert_tokenizer
    mlm, other = tiny_mlm("bert", len(tok), seed=0), tiny_mlm("bert", len(tok), seed=1)
    template = Template("{text_a} It was {mask} .", tok)
    a = PromptModel(mlm, template, Verbalizer({"n": "bad", "p": "great"}, tok), base_model="bert-a")
    b = PromptModel(other, template, Verbalizer({"n": "bad", "p": "great"}, tok), base_model="bert-b")
    with pytest.raises(BaseModelMismatch, match="task 'b' was trained on base model 'bert-b'.*task 'a' on 'bert-a'"):
        MultiTaskModel({"a": a, "b": b})
    b.base_model = "bert-a"  # the same name, other weights
    with pytest.raises(BaseModelMismatch, match="name the same base model 'bert-a' but their LMs' weights differ"):
        MultiTaskModel({"a": a, "b": b})
    twin = tiny_mlm("bert", len(tok), seed=0)  # a second copy of the same weights is accepted
    c = PromptModel(twin, template, Verbalizer({"n": "bad", "p": "great"}, tok), base_model="bert-a")
    assert MultiTaskModel({"a": a, "c": c}).tasks == ["a", "c"]
    exact = PromptModel(mlm, template, Verbalizer({"n": "bad", "p": "greatly"}, tok), base_model="bert-a")
    assert exact.verbalizer.input == "word_logprobs"  # 'greatly' = gre ##at ##ly: three masks
    with pytest.raises(ConfigError, match="task 'x': its verbalizer scores multi-token words exactly"):
        MultiTaskModel({"a": a, "x": exact})
    with pytest.raises(ConfigError, match="its LM was trained"):
        a.trained = ("lm",)
        MultiTaskModel({"a": a, "c": c})


def test_from_pretrained_loads_the_base_once_and_checks_it(tiny_model_dirs, tmp_path):
    from promptlearn.backbone import load_backbone

    tok, mlm = load_backbone(str(tiny_model_dirs["bert"]))
    tasks = _tasks(tok, mlm)
    dirs = {}
    for name in ("emb", "lstm", "deep2"):
        tasks[name].base_model = str(tiny_model_dirs["bert"])
        dirs[name] = tasks[name].save_pretrained(tmp_path / name, materialize=name == "lstm")
    multi = MultiTaskModel.from_pretrained(dirs)
    assert len({id(m.mlm) for m in multi.members.values()}) == 1
    rows = [r for r in _rows() if r["task"] in dirs]
    out = multi.predict(rows, batch_size=5)
    for i, r in enumerate(rows):
        p = torch.softmax(_own_scores(tasks[r["task"]], [r]), -1)[0]
        torch.testing.assert_close(torch.tensor(list(out[i]["probs"].values())), p, atol=1e-5, rtol=1e-5)
    # a prompt saved on other weights than the base it names is refused
    cfg = json.loads((tmp_path / "emb" / "promptlearn.json").read_text())
    cfg["lm_fingerprint"] = "0" * 32
    (tmp_path / "emb" / "promptlearn.json").write_text(json.dumps(cfg))
    with pytest.raises(BaseModelMismatch, match="task 'emb': its artifact was saved on base-model weights"):
        MultiTaskModel.from_pretrained(dirs)
    cfg["spec"]["base_model"] = "/elsewhere/bert"
    (tmp_path / "emb" / "promptlearn.json").write_text(json.dumps(cfg))
    with pytest.raises(BaseModelMismatch, match="task 'lstm' .* was trained on base model .* but task 'emb'"):
        MultiTaskModel.from_pretrained(dirs)


def test_predict_cli_mixed_jsonl(tiny_model_dirs, tmp_path):
    """python -m promptlearn.predict: mixed tasks from one JSONL file, input order, per-line errors, exit 1."""
    import os
    import subprocess
    import sys

    from promptlearn.backbone import load_backbone

    from conftest import ROOT

    tok, mlm = load_backbone(str(tiny_model_dirs["bert"]))
    tasks = _tasks(tok, mlm)
    for name in ("emb", "deep2"):
        tasks[name].base_model = str(tiny_model_dirs["bert"])
        tasks[name].save_pretrained(tmp_path / name)
    rows = [{"task": "emb", "text_a": TEXTS[0], "id": "a"}, {"task": "deep2", "text_a": "is it", "text_b": "yes"},
            {"task": "trec", "text_a": "what ?"}, {"task": "deep2", "text_a": "no b"}, {"task": "emb", "text_a": TEXTS[2]}]
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, "{not json")
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n\n")
    (tmp_path / "models.yaml").write_text("emb: emb\n")
    cmd = [sys.executable, "-m", "promptlearn.predict", "--models", str(tmp_path / "models.yaml"), "--model",
           f"deep2={tmp_path / 'deep2'}", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl"),
           "--batch-size", "2", "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "predicted 3 of 6 rows (emb: 2, deep2: 1)" in proc.stderr and "3 row(s) have errors" in proc.stderr
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4, 5, 6]
    assert out[0]["id"] == "a" and out[2]["error"].startswith("line 3: unknown task 'trec'")
    assert out[3]["error"].startswith("line 4: not valid JSON") and "line 5: task 'deep2' needs field 'text_b'" in out[4]["error"]
    for o, r in ((out[0], rows[0]), (out[1], rows[1]), (out[5], rows[4])):
        p = torch.softmax(_own_scores(tasks[r["task"]], [r]), -1)[0]
        assert o["task"] == r["task"] and o["label"] == tasks[r["task"]].labels[int(p.argmax())]
        torch.testing.assert_close(torch.tensor(list(o["probs"].values())), p, atol=1e-5, rtol=1e-5)
    # models that cannot be served together: one message, exit 2, no output
    cfg = json.loads((tmp_path / "emb" / "promptlearn.json").read_text())
    cfg["spec"]["base_model"] = "/elsewhere/bert"
    (tmp_path / "emb" / "promptlearn.json").write_text(json.dumps(cfg))
    (tmp_path / "out.jsonl").unlink()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: task 'deep2'") and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_multitask_training_mixes_tasks_in_batches_over_a_frozen_lm(bert_tokenizer):
    """A mixed batch's loss gives each task's prompt and verbalizer exactly the gradient of that task's own loss
    (scaled by its share of the batch); the one trainer trains a MultiTaskModel and leaves the LM unchanged."""
    import torch.nn.functional as F

    from promptlearn.trainer import train

    tok = bert_tokenizer
    mlm = tiny_mlm("bert", len(tok))
    lm_before = {k: v.clone() for k, v in mlm.state_dict().items()}

    def member(text, encoder, **opts):
        template = Template(text, tok, max_length=32)
        prompt = build_soft_prompt(template.soft_spec, mlm, encoder, seed=1, **opts)
        return PromptModel(mlm, template, SoftVerbalizer({"neg": "bad", "pos": "great"}, tok, mlm, template=template),
                           soft_prompt=prompt)

    multi = MultiTaskModel({"a": member("{soft*2} {text_a} It was {mask} .", "lstm"),
                            "b": member("{text_a} ? {mask} .", "deep", num_prefix=3, prefix_projection=True,
                                        prefix_hidden_size=8)})
    rows = [{"task": "a" if i % 3 else "b", "text_a": t, "label": i % 2} for i, t in enumerate(TEXTS * 2)]
    enc = multi.encode_split(rows)
    batch = PromptCollator(tok.pad_token_id)([enc[i] for i in range(len(enc))])
    params = {n: [*multi.members[n].soft_prompt.parameters(), *multi.members[n].verbalizer.parameters()] for n in "ab"}
    loss = F.cross_entropy(multi(**batch).logits, batch["labels"])
    mixed = dict(zip("ab", (torch.autograd.grad(loss, params[n], retain_graph=True) for n in "ab")))
    for n in "ab":
        mine = [r for r in rows if r["task"] == n]
        b = PromptCollator(tok.pad_token_id)([multi.members[n].template.encode(r) for r in mine])
        own_loss = F.cross_entropy(multi.members[n](**b).logits, torch.tensor([r["label"] for r in mine]))
        share = len(mine) / len(rows)
        for g_mixed, g_own in zip(mixed[n], torch.autograd.grad(own_loss, params[n])):
            torch.testing.assert_close(g_mixed, share * g_own, atol=1e-6, rtol=1e-4)
        assert any(g.abs().sum() > 0 for g in mixed[n])
    few = type("Few", (), {"train": rows, "dev": rows})()
    strategy = dict(name="fixed_lm", prompt_lr=1e-2, lr=0.0, batch_size=4, max_steps=6, eval_every=3)
    info = train(multi, few, strategy, dict(seed=7, progress=False), torch.device("cpu"), main_metric="accuracy")
    assert info["trainable_params"] == sum(p.numel() for n in "ab" for p in params[n])
    assert info["train_examples"] == 12 and len(info["log"]) == 2
    assert all(torch.equal(v, lm_before[k]) for k, v in mlm.state_dict().items())
    assert multi.members["b"].trained == ("prompt", "verbalizer") and multi.members["b"].strategy == "fixed_lm"


@pytest.mark.skipif(not (DATA / "SST-2").is_dir() or not (DATA / "MR").is_dir(), reason="shared data not found")
def test_multitask_train_single_vs_multi_end_to_end(tiny_model_dirs, tmp_path):
    """promptlearn.multitask_train: single-task runs are the CLI's; the joint run uses the same few-shot samples;
    its saved per-task prompts, served together, reproduce the recorded test metrics."""
    from promptlearn.multitask_train import report, train_multitask

    overrides = [f"model.name_or_path={tiny_model_dirs['bert']}", "strategy=fixed_lm", "strategy.k_shot=4",
                 "strategy.max_steps=2", "strategy.eval_every=2", "limit=24", "progress=false", "seed=13"]
    res = train_multitask(["sst2", "mr"], overrides, tmp_path / "seed13", continue_steps=1)
    assert res["multi_train"]["steps"] == 4 and res["multi_train"]["train_examples"] == 16
    for name in ("sst2", "mr"):
        single = json.loads((tmp_path / "seed13" / "single" / name / "results.json").read_text())
        assert single["metrics"] == res["single"][name] and single["checksums"]["few_shot"] == res["checksums"][name]
    multi = MultiTaskModel.from_pretrained({n: tmp_path / "seed13" / "multi" / n / "model" for n in ("sst2", "mr")})
    from promptlearn.run import _checked
    from promptlearn.multitask_train import compose_config

    for name in ("sst2", "mr"):
        task = _checked(compose_config(name, overrides))[1]
        test = task.splits["test"].select(range(24))
        rows = [{"task": name, "text_a": t} for t in test["text_a"]]
        preds = [multi.members[name].labels.index(o["label"]) for o in multi.predict(rows, batch_size=7)]
        assert float(np.mean(np.asarray(preds) == np.asarray(test["label"]))) == res["multi"][name]["accuracy"]
        assert res["continued"][name]["n"] == 24
    table = report(tmp_path)
    assert "| sst2 (accuracy) |" in table and "multi-task + continued alone" in table
