"""Tests for promptlearn.sampler (synthetic data; no files needed)."""

from __future__ import annotations

import warnings
from collections import Counter

import datasets
import pytest

from promptlearn.sampler import sample_few_shot

NAMES = ["neg", "neu", "pos"]


def make_pool(counts: dict[int, int], idx_start: int = 100) -> datasets.Dataset:
    """A pool with ``counts[c]`` rows of class c, interleaved, with non-positional idx."""
    labels = [c for c, n in counts.items() for _ in range(n)]
    labels = labels[::2] + labels[1::2]  # mix the classes
    return datasets.Dataset.from_dict(
        {
            "text_a": [f"example {i}" for i in range(len(labels))],
            "label": labels,
            "idx": [idx_start + 3 * i for i in range(len(labels))],
        },
        features=datasets.Features(
            {
                "text_a": datasets.Value("string"),
                "label": datasets.ClassLabel(names=NAMES),
                "idx": datasets.Value("int64"),
            }
        ),
    )


POOL = make_pool({0: 40, 1: 35, 2: 50})


def test_k_per_class_and_disjoint() -> None:
    s = sample_few_shot(POOL, k=8, seed=13)
    assert Counter(s.train["label"]) == {0: 8, 1: 8, 2: 8}
    assert Counter(s.dev["label"]) == {0: 8, 1: 8, 2: 8}
    assert not set(s.train_ids) & set(s.dev_ids)
    assert list(s.train["idx"]) == s.train_ids and list(s.dev["idx"]) == s.dev_ids
    assert len(set(s.train_ids)) == 24


def test_dev_k_and_label_column() -> None:
    pool = POOL.rename_column("label", "y")
    s = sample_few_shot(pool, k=4, seed=1, label_column="y", dev_k=2)
    assert Counter(s.train["y"]) == {0: 4, 1: 4, 2: 4}
    assert Counter(s.dev["y"]) == {0: 2, 1: 2, 2: 2}


def test_deterministic_and_seed_dependent() -> None:
    a = sample_few_shot(POOL, k=8, seed=13)
    b = sample_few_shot(POOL, k=8, seed=13)
    c = sample_few_shot(POOL, k=8, seed=21)
    assert (a.train_ids, a.dev_ids, a.checksum) == (b.train_ids, b.dev_ids, b.checksum)
    assert set(a.train_ids) != set(c.train_ids)
    assert a.checksum != c.checksum
    assert len(a.checksum) == 64 and int(a.checksum, 16) >= 0
    assert sample_few_shot(POOL, k=4, seed=13).checksum != a.checksum  # k is part of the checksum


def test_independent_of_row_order_and_global_state() -> None:
    import random

    import numpy as np

    a = sample_few_shot(POOL, k=8, seed=5)
    random.seed(0)
    np.random.seed(0)
    shuffled = POOL.shuffle(seed=123)
    b = sample_few_shot(shuffled, k=8, seed=5)
    assert (a.train_ids, a.dev_ids, a.checksum) == (b.train_ids, b.dev_ids, b.checksum)


def test_train_is_shuffled() -> None:
    s = sample_few_shot(POOL, k=8, seed=13)
    labels = list(s.train["label"])
    assert labels != sorted(labels)  # not grouped by class


def test_zero_shot() -> None:
    s = sample_few_shot(POOL, k=0, seed=13)
    assert len(s.train) == 0 and len(s.dev) == 0 and s.train_ids == [] and s.dev_ids == []
    assert s.train.column_names == POOL.column_names
    assert s.checksum == sample_few_shot(POOL, k=0, seed=13).checksum


def test_fewer_than_2k_warns_and_fills_dev_with_rest() -> None:
    pool = make_pool({0: 40, 1: 11, 2: 50})
    with pytest.warns(UserWarning, match="class 'neu' has only 11 examples"):
        s = sample_few_shot(pool, k=8, seed=13)
    assert Counter(s.train["label"]) == {0: 8, 1: 8, 2: 8}
    assert Counter(s.dev["label"]) == {0: 8, 1: 3, 2: 8}


def test_no_warning_with_enough_examples() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample_few_shot(make_pool({0: 16, 1: 16, 2: 16}), k=8, seed=13)


def test_fewer_than_k_raises() -> None:
    with pytest.raises(ValueError, match="class 'neu' has only 5 examples.*k=8"):
        sample_few_shot(make_pool({0: 40, 1: 5, 2: 50}), k=8, seed=13)


def test_absent_class_raises() -> None:
    with pytest.raises(ValueError, match="class 'pos' has only 0 examples"):
        sample_few_shot(make_pool({0: 40, 1: 40}), k=2, seed=13)


def test_plain_int_labels_and_no_idx_column() -> None:
    pool = datasets.Dataset.from_dict({"text": [str(i) for i in range(30)], "label": [i % 3 for i in range(30)]})
    s = sample_few_shot(pool, k=3, seed=0)
    assert Counter(s.train["label"]) == {0: 3, 1: 3, 2: 3}
    assert all(pool[i]["label"] == lab for i, lab in zip(s.train_ids, s.train["label"]))


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        sample_few_shot(POOL, k=-1, seed=0)
    dup = POOL.remove_columns("idx").add_column("idx", [1] * len(POOL))
    with pytest.raises(ValueError, match="unique"):
        sample_few_shot(dup, k=1, seed=0)
