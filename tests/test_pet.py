"""PET and iPET (promptlearn.methods), pattern-verbalizer pairs as data (promptlearn.patterns), distillation."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from conftest import PLUGINS, ROOT, cli

from promptlearn import pipeline
from promptlearn.errors import ConfigError


def _compose(model_dir, data_root, method="pet", task="toy_pet", **over):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        first = [f"strategy={over.pop('strategy')}"] if "strategy" in over else []
        overrides = [f"hydra.searchpath=[file://{PLUGINS / 'conf'}]", f"+task={task}", f"method={method}", *first,
                     f"model.name_or_path={model_dir}", f"data_root={data_root}", "progress=false",
                     "strategy.k_shot=3", "strategy.eval_every=2", "strategy.lr=1e-3", "eval_batch_size=8"]
        if method != "single":
            overrides += ["method.pattern_steps=2", "method.repetitions=1", "method.distill_steps=2",
                          "method.distill_eval_every=1", "method.distill_lr=1e-3"]
        overrides += [f"{k}={v}" for k, v in over.items()]
        cfg = compose("config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


# ------------------------------------------------------------------------------------------- merging, loss
def test_merge_logits_uniform_and_weighted_by_hand():
    from promptlearn.methods.pet import merge_logits

    a = np.array([[0.0, 1.0], [2.0, -1.0]])
    b = np.array([[3.0, -3.0], [0.5, 0.5]])
    np.testing.assert_allclose(merge_logits([a, b]), [[1.5, -1.0], [1.25, -0.25]])
    # wmean: weights = accuracies before training, 0.25 and 0.75
    np.testing.assert_allclose(merge_logits([a, b], [0.25, 0.75]),
                               [[0.25 * 0 + 0.75 * 3, 0.25 * 1 + 0.75 * -3], [0.25 * 2 + 0.75 * 0.5, 0.25 * -1 + 0.75 * .5]])
    np.testing.assert_allclose(merge_logits([a, b], [0.0, 0.0]), merge_logits([a, b]))  # all zero: uniform
    with pytest.raises(ValueError):
        merge_logits([a, b], [1.0])


def test_distillation_loss_is_pets_kl_with_temperature():
    from promptlearn.strategies.distill import distillation_loss, soft_targets

    merged = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    student = torch.tensor([[0.5, 0.2, 0.1], [-1.0, 2.0, 0.3]])
    T = 2.0
    q = soft_targets(merged, T)
    hand_q = np.exp(merged / T) / np.exp(merged / T).sum(-1, keepdims=True)
    np.testing.assert_allclose(q, hand_q, rtol=1e-6)
    logp = torch.log_softmax(student / T, -1).numpy()
    hand = (hand_q * (np.log(hand_q) - logp)).sum(-1).mean() * T ** 2  # KL(q || p) * T^2, batch mean
    got = distillation_loss(student, torch.from_numpy(q), T)
    assert got.item() == pytest.approx(hand, rel=1e-5)
    # the student that reproduces the targets (logits = merged: same softmax at any T) has zero loss
    assert distillation_loss(torch.tensor(merged, dtype=torch.float32), torch.from_numpy(q), T).item() == \
        pytest.approx(0.0, abs=1e-6)


def test_collator_carries_float_soft_labels():
    from promptlearn.data import PromptCollator

    batch = PromptCollator(0)([{"input_ids": [2, 5, 3], "mask_pos": 1, "soft_labels": [0.25, 0.75]},
                               {"input_ids": [2, 3], "mask_pos": 0, "soft_labels": [1.0, 0.0]}])
    assert batch["soft_labels"].dtype == torch.float32 and batch["soft_labels"].tolist() == [[0.25, 0.75], [1.0, 0.0]]
    assert "labels" not in batch


# ------------------------------------------------------------------------------------------- iPET sets
def test_ipet_examples_grow_by_the_factor_per_generation():
    from promptlearn.methods.ipet import new_examples_per_label

    counts = [8, 8]  # K = 8 per class
    for g, total in ((0, 16 * 5), (1, 16 * 25), (2, 16 * 125)):  # generation g+1 trains on n * 5^(g+1)
        new = new_examples_per_label(counts, 5, g)
        assert sum(new) + 16 == total and new[0] == new[1]
    assert new_examples_per_label([4, 12], 2, 0) == [4, 12]  # split by the few-shot prior
    assert new_examples_per_label([4, 12], 3, 1) == [32, 96]


def test_ipet_train_set_is_labelled_by_the_merged_other_models():
    from promptlearn.methods.ipet import generate_ipet_train_set

    rng_logits = np.random.default_rng(0)
    idx = np.arange(100, 160)
    others = [rng_logits.normal(size=(60, 3)) for _ in range(4)]
    s = generate_ipet_train_set(others, None, idx, [5, 7, 3], 0.5, random.Random(1), np.random.RandomState(1))
    assert len(s["labellers"]) == 2 and len(s["idx"]) == 15
    assert np.bincount(s["label"], minlength=3).tolist() == [5, 7, 3]
    merged = np.mean([others[i] for i in s["labellers"]], 0)
    row = {int(i): r for i, r in zip(idx, merged)}
    assert all(int(np.argmax(row[int(i)])) == lab for i, lab in zip(s["idx"], s["label"]))  # argmax of the merge
    # a class the labellers never predict gets no examples (recorded), others are upsampled
    sure = [np.tile([5.0, 0.0, 0.0], (60, 1)).astype(float)]
    s = generate_ipet_train_set(sure, None, idx, [70, 2, 2], 1.0, random.Random(0), np.random.RandomState(0))
    assert s["classes_never_predicted"] == [1, 2] and len(s["idx"]) == 70 and set(s["label"].tolist()) == {0}


# ------------------------------------------------------------------------------------------- patterns
def test_pattern_selection_by_index_and_name_and_one_line_errors(tmp_path):
    from promptlearn.patterns import load_patterns_file, parse_patterns, select_pattern

    pats = parse_patterns([{"name": "a", "template": "{text_a} It was {mask}."},
                           {"name": "b", "template": "Just {mask}! {text_a}", "verbalizer": {"neg": "bad", "pos": "good"},
                            "scores": [0.5]}], ["neg", "pos"], "task 't'")
    assert select_pattern(pats, 1).name == "b" and select_pattern(pats, "1").name == "b"
    assert select_pattern(pats, "a").template == "{text_a} It was {mask}."
    assert select_pattern(pats, "b").verbalizer == {"neg": ["bad"], "pos": ["good"]}
    for bad, words in ((5, "pattern=5: task has 2 patterns (0=a, 1=b)"), ("c", "pattern='c': no pattern of that name")):
        with pytest.raises(ConfigError) as e:
            select_pattern(pats, bad, "task")
        assert words in str(e.value) and "fix:" in str(e.value) and "\n" not in str(e.value)
    for entries, words in (([{"name": "a", "template": "{text_a} no mask"}], "patterns[0] (a)"),
                           ([{"name": "a", "template": "{mask}"}, {"name": "a", "template": "{mask} x"}],
                            "patterns[1]: name 'a' is also"),
                           ([{"name": "x", "template": "{mask}", "verbalizer": {"neg": "bad"}}], "patterns[0]: verbalizer"),
                           ([{"template": "{mask}"}], "patterns[0]: `name`")):
        with pytest.raises(ConfigError) as e:
            parse_patterns(entries, ["neg", "pos"], "task 't'")
        assert words in str(e.value).splitlines()[0]  # (a template error adds the template and a caret below)
    f = tmp_path / "found.yaml"
    f.write_text("patterns:\n  - {name: s0, template: '{text_a} so {mask}.', source: search, scores: {dev: 0.5}}\n")
    assert [p.name for p in load_patterns_file(f, ["neg", "pos"])] == ["s0"]


def test_every_shipped_task_lists_valid_patterns():
    import yaml

    from promptlearn.task import _TaskSpec

    for path in sorted((ROOT / "conf" / "task").glob("*.yaml")):
        spec = _TaskSpec.from_config(yaml.safe_load(path.read_text()))
        assert len(spec.patterns) >= 4, path.name  # several PVPs per task (PET's, or LM-BFF's + variants)


def test_pattern_sets_template_and_label_words_of_a_run(tiny_model_dirs, toy_data_root, tmp_path):
    from promptlearn.run import build

    cfg = _compose(tiny_model_dirs["bert"], toy_data_root, method="single", strategy="fixed_prompt",
                   pattern="just")
    b = build(cfg)
    assert b["template"].text == "Just {mask} ! {text_a|shortenable}"
    assert b["verbalizer"].label_words == {"negative": ["awful"], "positive": ["good"]}
    b = build({**cfg, "pattern": 0})  # a pattern without words keeps the task's
    assert b["verbalizer"].label_words == {"negative": ["bad"], "positive": ["great"]}
    b = build({**cfg, "pattern": None})
    assert b["template"].text == "{text_a|shortenable} It was {mask} ."
    with pytest.raises(ConfigError, match="both set the template"):
        build({**cfg, "template": "{text_a} {mask}"})


def test_cli_bad_pattern_is_one_clean_line(tiny_model_dirs, toy_data_root, tmp_path):
    r = cli(f"hydra.searchpath=[file://{PLUGINS / 'conf'}]", "+task=toy_pet", f"data_root={toy_data_root}",
            f"model.name_or_path={tiny_model_dirs['bert']}", "pattern=7", f"hydra.run.dir={tmp_path}/r")
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "pattern=7: task 'toy_pet' has 3 patterns (0=it-was, 1=just, 2=all-in-all)" in err[0]


# ------------------------------------------------------------------------------------------- MLM auxiliary loss
def test_mlm_weight_is_the_fraction_of_the_loss_that_is_mlm(tiny_model_dirs, toy_data_root):
    from promptlearn.run import build
    from promptlearn.data import Batches, encode_dataset
    from promptlearn.strategies import get_strategy

    cfg = _compose(tiny_model_dirs["bert"], toy_data_root, method="single", strategy="fixed_prompt")
    b = build(cfg)
    model, task = b["model"], b["task"]
    few = pipeline.sample(task, 3, 42)
    s = get_strategy({**cfg["strategy"], "mlm_weight": 0.25})
    s.training_data(few, task, cfg)
    assert "label" not in s._mlm_pool.column_names and len(s._mlm_pool) == len(task.splits["train"]) - 12
    batch = next(iter(Batches(encode_dataset(few.train, model.template), 4, 0, order="sequential")))
    mlm_batch = {"input_ids": batch["input_ids"].clone(), "attention_mask": batch["attention_mask"],
                 "labels": torch.where(batch["attention_mask"].bool(), batch["input_ids"], -100)}
    s._mlm_batches = iter([mlm_batch])
    model.eval()
    got = s.training_loss(model, batch)
    ce = torch.nn.functional.cross_entropy(model(**batch).logits, batch["labels"])
    mlm = model.mlm(**mlm_batch).loss
    assert got.item() == pytest.approx((0.75 * ce + 0.25 * mlm).item(), rel=1e-5)
    with pytest.raises(ConfigError, match="trains the LM"):
        get_strategy({"name": "fixed_lm", "mlm_weight": 0.1}).training_data(few, task, cfg)


# ------------------------------------------------------------------------------------------- PET end to end
@pytest.fixture()
def spy_unlabeled(monkeypatch):
    """Every dataset scored or distilled on: the unlabelled pool must never carry a label column."""
    seen = {"scored": [], "distilled": []}
    score_dataset = pipeline.score_dataset

    def spy(model, dataset, *a, desc="scoring", **k):
        seen["scored"].append((desc, list(dataset.column_names)))
        return score_dataset(model, dataset, *a, desc=desc, **k)

    monkeypatch.setattr(pipeline, "score_dataset", spy)
    from promptlearn.strategies.distill import Distill

    training_data = Distill.training_data

    def spy_td(self, few, task=None, cfg=None):
        out = training_data(self, few, task, cfg)
        seen["distilled"].append(list(out.train.column_names))
        return out

    monkeypatch.setattr(Distill, "training_data", spy_td)
    return seen


def test_pet_trains_merges_distils_and_resumes(tiny_model_dirs, toy_data_root, tmp_path, spy_unlabeled, monkeypatch):
    from promptlearn.methods.pet import run_pet
    from promptlearn.methods import run_method
    from promptlearn.model_base import BaseModel

    cfg = _compose(tiny_model_dirs["bert"], toy_data_root, **{"method.patterns": "[0,just]", "method.repetitions": 2,
                                                             "method.unlabeled_size": 10})
    out = tmp_path / "pet"
    res = run_pet(cfg, out)
    dirs = sorted(p.name for p in (out / "g0").iterdir())
    assert dirs == ["p0-r0", "p0-r1", "p1-r0", "p1-r1"]
    for d in dirs:
        r = json.loads((out / "g0" / d / "results.json").read_text())
        assert sorted(x.name for x in (out / "g0" / d / "scores").iterdir()) == ["few_dev.npz", "test.npz",
                                                                                "unlabeled.npz"]
        assert r["scores"]["unlabeled"]["n"] == 10 and r["scores"]["unlabeled"]["examples_per_s"] > 0
    # repetitions: other seeds, one few-shot sample
    rs = {d: json.loads((out / "g0" / d / "results.json").read_text()) for d in dirs}
    assert rs["p0-r0"]["seed"] == 42 and rs["p0-r1"]["seed"] == 43
    assert rs["p0-r0"]["checksums"]["few_shot"] == rs["p0-r1"]["checksums"]["few_shot"]
    # the merged soft labels are PET's wmean of the saved logits, weights = accuracy before training
    soft = np.load(out / "soft_labels.npz")
    before = json.loads((out / "before_training.json").read_text())
    w = [before["it-was"]["accuracy"]] * 2 + [before["just"]["accuracy"]] * 2
    logits = [pipeline.load_scores(out / "g0" / d / "scores" / "unlabeled.npz").logits for d in dirs]
    hand = sum(wi * li for wi, li in zip(w, logits)) / sum(w) if sum(w) else np.mean(logits, 0)
    np.testing.assert_allclose(soft["logits"], hand, rtol=1e-5, atol=1e-6)
    # the unlabelled pool never had a label column, neither when scored nor when distilled on
    unl = [cols for desc, cols in spy_unlabeled["scored"] if desc == "scoring unlabeled"]
    assert len(unl) == 4 and all("label" not in cols for cols in unl)
    assert spy_unlabeled["distilled"] and all("label" not in c and "soft_labels" in c for c in spy_unlabeled["distilled"])
    # results: distilled, ensemble, pattern models (mean)
    assert res["metrics"] == res["distilled"]["metrics"] and res["distilled"]["train_examples"] == 10
    assert res["ensemble"]["reduction"] == "wmean" and res["ensemble"]["pattern_models"]["accuracy"]["n"] == 4
    assert res["unlabeled"]["scoring"]["models"] == 4 and res["unlabeled"]["scoring"]["examples_per_s"] > 0
    test = [pipeline.load_scores(out / "g0" / d / "scores" / "test.npz") for d in dirs]
    ens = (sum(wi * t.logits for wi, t in zip(w, test)) / sum(w)).argmax(-1) if sum(w) else \
        np.mean([t.logits for t in test], 0).argmax(-1)
    assert res["ensemble"]["metrics"]["accuracy"] == pytest.approx(float((ens == test[0].labels).mean()))

    # the final classifier saves, loads and predicts like any promptlearn model
    final = BaseModel.from_pretrained(str(out / "final" / "model"))
    assert final.kind == "classifier" and final.spec.strategy == "distill"
    texts = ["the movie was great", "a bad film"]
    a, b = final.predict(texts), BaseModel.from_pretrained(str(out / "final" / "model")).predict(texts)
    assert [x["label"] for x in a] == [x["label"] for x in b]
    assert all(abs(x["probs"][c] - y["probs"][c]) < 1e-6 for x, y in zip(a, b) for c in x["probs"])
    test_final = pipeline.load_scores(out / "final" / "scores" / "test.npz")
    from promptlearn.task import load_task
    from omegaconf import OmegaConf

    toy = load_task(OmegaConf.load(PLUGINS / "conf" / "task" / "toy_pet.yaml"), data_root=toy_data_root)
    rows = toy.splits["test"]
    pred = final.predict([{"text_a": t} for t in rows["text_a"][:4]])
    np.testing.assert_allclose([[p["probs"][c] for c in final.labels] for p in pred],
                               np.exp(test_final.logits[:4]), atol=1e-5)

    # resume: nothing is retrained; a removed pattern model alone is
    import promptlearn.trainer as trainer

    calls = []
    real_train = trainer.train
    monkeypatch.setattr(trainer, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    again = run_method(cfg, out)
    assert calls == [] and len(again["resumed"]) == 4 and again["metrics"] == res["metrics"]
    (out / "g0" / "p1-r1" / "results.json").unlink()
    third = run_method(cfg, out)
    assert len(calls) == 1 and sorted(third["resumed"]) == sorted(str(out / "g0" / d) for d in dirs[:3])


def test_ipet_generations_grow_and_distil(tiny_model_dirs, toy_data_root, tmp_path, spy_unlabeled):
    from promptlearn.methods.ipet import run_ipet

    cfg = _compose(tiny_model_dirs["bert"], toy_data_root, method="ipet", **{
        "method.patterns": "[0,1,2]", "method.generations": 3, "method.scale_factor": 2, "method.logits_percentage": 0.5})
    out = tmp_path / "ipet"
    res = run_ipet(cfg, out)
    n = 6  # K=3 x 2 classes
    # targets: n * 2^g in generation g, per class by the few-shot prior; a class the (random, tiny) labellers never
    # predict gets none, so each model trains on the few-shot set plus exactly the examples written for it
    assert [g["next_generation"]["per_label"] for g in res["generations"][:2]] == [[3, 3], [9, 9]]
    assert "next_generation" not in res["generations"][2]
    for g in (1, 2):
        made = res["generations"][g - 1]["next_generation"]["models"]
        for key, m in made.items():
            got = json.loads((out / f"g{g}" / key / "results.json").read_text())["train"]["train_examples"]
            assert got == n + m["n"] and m["n"] == sum(m["per_label"])
            short = set(m["classes_never_predicted"])
            assert m["per_label"] == [0 if c in short else (3 if g == 1 else 9) for c in range(2)]
    nxt = res["generations"][0]["next_generation"]
    for key, m in nxt["models"].items():
        assert key not in m["labelled_by"] and len(m["labelled_by"]) == 1  # round(2 * 0.5) of the OTHER models
        z = np.load(out / "g0" / "next-gen" / f"{key}.npz")
        assert len(z["idx"]) == m["n"] and set(z["label"].tolist()) <= {0, 1}
    assert sorted(p.name for p in out.iterdir()) == ["before_training.json", "final", "g0", "g1", "g2", "results.json",
                                                     "soft_labels.npz"]
    assert all("label" not in cols for desc, cols in spy_unlabeled["scored"] if desc == "scoring unlabeled")
    assert res["method"] == "ipet" and "accuracy" in res["metrics"]


def test_cli_method_pet_smoke(tiny_model_dirs, toy_data_root, tmp_path):
    r = cli(f"hydra.searchpath=[file://{PLUGINS / 'conf'}]", "+task=toy_pet", f"data_root={toy_data_root}",
            f"model.name_or_path={tiny_model_dirs['bert']}", "method=pet", "method.repetitions=1",
            "method.pattern_steps=2", "method.distill_steps=2", "method.patterns=[0,1]", "strategy.k_shot=3",
            "strategy.eval_every=1", f"hydra.run.dir={tmp_path}/pet", "progress=false", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "pet" / "results.json").read_text())
    assert res["method"] == "pet"
    assert (tmp_path / "pet" / "final" / "model").is_dir() and len(res["pattern_models"]) == 2
    assert "distilled" in r.stdout and "ensemble" in r.stdout
    bad = cli(f"hydra.searchpath=[file://{PLUGINS / 'conf'}]", "+task=toy_pet", f"data_root={toy_data_root}",
              f"model.name_or_path={tiny_model_dirs['bert']}", "method=pet", "method.reduction=median",
              f"hydra.run.dir={tmp_path}/bad")
    assert bad.returncode == 2 and "method.reduction='median' is not one of mean|wmean" in bad.stderr
