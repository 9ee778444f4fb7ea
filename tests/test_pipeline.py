"""Pipeline stages: score works on any split (labelled or not) and writes logits later stages can read."""

import json

import numpy as np
import pytest

from promptlearn import pipeline
from promptlearn.run import run_experiment
from promptlearn.task import load_task

from test_spec import _compose_toy


def test_score_splits_write_readable_logits_and_the_unlabeled_pool_has_no_labels(tiny_model_dirs, toy_data_root,
                                                                                 tmp_path):
    cfg = _compose_toy(tiny_model_dirs["bert"], toy_data_root, strategy="fixed_prompt", **{
        "strategy.max_steps": 2, "strategy.eval_every": 1, "strategy.k_shot": 3,
        "score_splits": "[unlabeled,few_dev,train]"})
    res = run_experiment(cfg, output_dir=tmp_path / "run")
    scores_dir = tmp_path / "run" / "scores"
    assert sorted(p.name for p in scores_dir.iterdir()) == ["few_dev.npz", "test.npz", "train.npz", "unlabeled.npz"]
    unl = pipeline.load_scores(scores_dir / "unlabeled.npz")
    train = pipeline.load_scores(scores_dir / "train.npz")
    few = pipeline.load_scores(scores_dir / "few_dev.npz")
    assert unl.labels is None and res["scores"]["unlabeled"]["metrics"] is None
    assert len(unl.idx) == len(train.idx) - 2 * 3 * 2  # the pool minus K train + K dev per class (2 classes)
    assert not set(unl.idx.tolist()) & set(few.idx.tolist())
    # the same example gets the same logits in every split it appears in
    row = {int(i): r for i, r in zip(train.idx, train.logits)}
    for i, r in zip(unl.idx, unl.logits):
        np.testing.assert_allclose(r, row[int(i)], atol=1e-5)
    test = pipeline.load_scores(scores_dir / "test.npz")
    preds = [json.loads(x)["pred"] for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert test.preds.tolist() == preds and test.label_names == ["negative", "positive"]


def test_unlabeled_split_never_exposes_labels(toy_data_root):
    from omegaconf import OmegaConf

    from conftest import PLUGINS
    from promptlearn.sampler import sample_few_shot

    task = load_task(OmegaConf.load(PLUGINS / "conf" / "task" / "toy.yaml"), data_root=toy_data_root)
    few = sample_few_shot(task.splits["train"], k=2, seed=1)
    unl = pipeline.resolve_split(task, "unlabeled", few)
    assert "label" not in unl.column_names
    assert len(unl) == len(task.splits["train"]) - 8
    with pytest.raises(ValueError, match="few-shot"):
        pipeline.resolve_split(task, "few_train", None)
    with pytest.raises(ValueError, match="unknown split 'nope'"):
        pipeline.resolve_split(task, "nope", few)
