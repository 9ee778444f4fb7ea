"""LM-BFF style few-shot sampling: K examples per class for train and for dev.

The sample depends only on ``seed``, ``k``, ``dev_k`` and the set of (``idx``,
label) pairs in the pool -- not on the pool's row order nor on global random
state -- so a run can be reproduced (and checked via ``checksum``) anywhere.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass

import datasets
import numpy as np

__all__ = ["FewShotSplit", "sample_few_shot"]


@dataclass(frozen=True)
class FewShotSplit:
    """A sampled few-shot train/dev pair.

    Attributes:
        train: K examples per class, shuffled with the seed.
        dev: ``dev_k`` examples per class (fewer for classes that ran short), disjoint from train.
        train_ids: ``idx`` of the train rows, in ``train`` order.
        dev_ids: ``idx`` of the dev rows, in ``dev`` order.
        checksum: sha256 hex of k, dev_k, seed and the sorted train and dev ids.
    """

    train: datasets.Dataset
    dev: datasets.Dataset
    train_ids: list[int]
    dev_ids: list[int]
    checksum: str


def sample_few_shot(
    dataset: datasets.Dataset,
    k: int,
    seed: int,
    label_column: str = "label",
    dev_k: int | None = None,
) -> FewShotSplit:
    """Sample ``k`` train and ``dev_k`` (default ``k``) dev examples per class from ``dataset``.

    Rows are identified by their ``idx`` column (row position if there is none).
    Classes are the ``ClassLabel`` names of ``label_column`` when it has that type
    (so a class absent from the pool is detected), else the distinct values present.

    Raises:
        ValueError: ``k``/``dev_k`` negative, ``idx`` not unique, or a class with fewer than ``k`` examples.

    Warns:
        UserWarning: a class with fewer than ``k + dev_k`` examples; its dev part gets the remainder.
    """
    dev_k = k if dev_k is None else dev_k
    if k < 0 or dev_k < 0:
        raise ValueError(f"k and dev_k must be >= 0, got k={k}, dev_k={dev_k}")
    ids = [int(i) for i in dataset["idx"][:]] if "idx" in dataset.column_names else list(range(len(dataset)))
    if len(set(ids)) != len(ids):
        raise ValueError("the `idx` column must be unique within the dataset to sample from it")
    labels = dataset[label_column][:]  # [:] materialises a datasets>=4 Column as a list, fast
    feature = dataset.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        classes, names = list(range(feature.num_classes)), list(feature.names)
    else:
        classes = sorted(set(labels))
        names = [str(c) for c in classes]

    by_class: dict[object, list[int]] = {c: [] for c in classes}
    for i, lab in zip(ids, labels):
        by_class[lab].append(i)

    rng = np.random.default_rng(seed)
    train_ids: list[int] = []
    dev_ids: list[int] = []
    if k or dev_k:
        for c, name in zip(classes, names):
            pool = sorted(by_class[c])
            if len(pool) < k:
                raise ValueError(
                    f"class '{name}' has only {len(pool)} examples in the pool, fewer than k={k}; "
                    f"use a smaller k or a larger pool"
                )
            chosen = [pool[j] for j in rng.permutation(len(pool))]
            train_ids += chosen[:k]
            dev = chosen[k : k + dev_k]
            if len(dev) < dev_k:
                warnings.warn(
                    f"class '{name}' has only {len(pool)} examples (< k + dev_k = {k + dev_k}); "
                    f"dev gets {len(dev)} instead of {dev_k} of them",
                    stacklevel=2,
                )
            dev_ids += dev
        train_ids = [train_ids[j] for j in rng.permutation(len(train_ids))]
        dev_ids = [dev_ids[j] for j in rng.permutation(len(dev_ids))]

    row_of = {i: row for row, i in enumerate(ids)}
    payload = {"k": k, "dev_k": dev_k, "seed": seed, "train": sorted(train_ids), "dev": sorted(dev_ids)}
    return FewShotSplit(
        train=dataset.select([row_of[i] for i in train_ids]),
        dev=dataset.select([row_of[i] for i in dev_ids]),
        train_ids=train_ids,
        dev_ids=dev_ids,
        checksum=hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest(),
    )
