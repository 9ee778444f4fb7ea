"""Tests for promptlearn.task: every conf/task YAML against its MANIFEST, custom tasks, errors."""

from __future__ import annotations

import functools
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pytest
from omegaconf import OmegaConf

from promptlearn import task as task_module
from promptlearn.task import TaskConfigError, TaskData, load_task

REPO = Path(__file__).resolve().parents[1]
TASK_CONF = REPO / "conf" / "task"
DATA = Path(os.environ.get("PROMPTLEARN_DATA") or REPO.parent / "shared" / "data")
needs_data = pytest.mark.skipif(
    not DATA.exists(), reason=f"local data not found at {DATA} (set PROMPTLEARN_DATA to run these tests)"
)
TASK_NAMES = sorted(p.stem for p in TASK_CONF.glob("*.yaml"))


@dataclass
class Expect:
    """Expected counts for one task, taken from its MANIFEST.txt.

    ``quotes`` are verbatim excerpts of the MANIFEST that the numbers come from (checked to
    be present). ``counts`` maps a split -- or "train+test" for splits carved out of one
    source -- to class counts; ``sizes`` gives the size of derived splits.
    """

    data_dir: str
    quotes: list[str]
    counts: dict[str, dict[str, int]]
    sizes: dict[str, int] = field(default_factory=dict)


EXPECTED = {
    "sst2": Expect(
        "SST-2",
        ["train 67,349 (pos 37,569 / neg 29,780); dev 872 (pos 444 / neg 428)"],
        {"train": {"positive": 37569, "negative": 29780}, "test": {"positive": 444, "negative": 428}},
    ),
    "sst5": Expect(
        "SST-5",
        ["train 8,544 {0:1092,1:2218,2:1624,3:2322,4:1288}", "test 2,210 {0:279,1:633,2:389,3:510,4:399}"],
        {
            "train": {"very_negative": 1092, "negative": 2218, "neutral": 1624, "positive": 2322, "very_positive": 1288},
            "test": {"very_negative": 279, "negative": 633, "neutral": 389, "positive": 510, "very_positive": 399},
        },
    ),
    "mr": Expect(
        "MR",
        ["rt-polarity.pos 5331 (0 blank); rt-polarity.neg 5331 (0 blank); total 10662"],
        {"train+test": {"positive": 5331, "negative": 5331}},
        {"test": 2000, "train": 8662},
    ),
    "mpqa": Expect(
        "MPQA",
        ["mpqa.pos 3312 (1 blank); mpqa.neg 7294 (2 blank); total 10606"],
        {"train+test": {"positive": 3312, "negative": 7294}},
        {"test": 2000, "train": 8606},
    ),
    "subj": Expect(
        "Subj",
        ["subj.subjective 5000 (0 blank); subj.objective 5000 (0 blank); total 10000"],
        {"train+test": {"subjective": 5000, "objective": 5000}},
        {"test": 2000, "train": 8000},
    ),
    "trec": Expect(
        "TREC",
        [
            "train 5452 {'ABBR': 86, 'DESC': 1162, 'ENTY': 1250, 'HUM': 1223, 'LOC': 835, 'NUM': 896}",
            "test 500 {'ABBR': 9, 'DESC': 138, 'ENTY': 94, 'HUM': 65, 'LOC': 81, 'NUM': 113}",
        ],
        {
            "train": {"abbreviation": 86, "description": 1162, "entity": 1250, "human": 1223, "location": 835, "number": 896},
            "test": {"abbreviation": 9, "description": 138, "entity": 94, "human": 65, "location": 81, "number": 113},
        },
    ),
    "agnews": Expect(
        "AGNews",
        ["test 7600 {'3': 1900, '4': 1900, '2': 1900, '1': 1900}"],
        {"train+test": {"world": 1900, "sports": 1900, "business": 1900, "tech": 1900}},
        {"train": 500, "test": 7100},
    ),
    "snli": Expect(
        "SNLI",
        [
            "dev: 9842 labels {'neutral': 3235, 'entailment': 3329, 'contradiction': 3278}",
            "test: 9824 labels {'neutral': 3219, 'entailment': 3368, 'contradiction': 3237}",
        ],
        {
            "train": {"neutral": 3235, "entailment": 3329, "contradiction": 3278},
            "test": {"neutral": 3219, "entailment": 3368, "contradiction": 3237},
        },
    ),
    "qnli": Expect(
        "QNLI",
        ["dev 5463 {'entailment': 2702, 'not_entailment': 2761}"],
        {"train+test": {"entailment": 2702, "not_entailment": 2761}},
        {"train": 500, "test": 4963},
    ),
    "rte": Expect(
        "RTE",
        [
            "train 2490 {'not_entailment': 1241, 'entailment': 1249}; val 277 {'not_entailment': 131, 'entailment': 146}",
            "fewglue_train32 32 {'not_entailment': 19, 'entailment': 13}",
        ],
        {
            "train": {"not_entailment": 1241, "entailment": 1249},
            "test": {"not_entailment": 131, "entailment": 146},
            "fewglue": {"not_entailment": 19, "entailment": 13},
        },
    ),
    "cb": Expect(
        "CB",
        [
            "train 250 {'entailment': 115, 'contradiction': 119, 'neutral': 16}; "
            "val 56 {'contradiction': 28, 'neutral': 5, 'entailment': 23}",
            "fewglue_train32 32 {'entailment': 19, 'contradiction': 10, 'neutral': 3}",
        ],
        {
            "train": {"entailment": 115, "contradiction": 119, "neutral": 16},
            "test": {"contradiction": 28, "neutral": 5, "entailment": 23},
            "fewglue": {"entailment": 19, "contradiction": 10, "neutral": 3},
        },
    ),
    "boolq": Expect(
        "BoolQ",
        ["val 3270 {'false': 1237, 'true': 2033}", "fewglue_train32 32 {'False': 14, 'True': 18}"],
        {"train+test": {"false": 1237, "true": 2033}, "fewglue": {"false": 14, "true": 18}},
        {"train": 500, "test": 2770},
    ),
}


def task_cfg(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(TASK_CONF / f"{name}.yaml"))


@functools.lru_cache(maxsize=None)
def loaded(name: str) -> TaskData:
    return load_task(OmegaConf.load(TASK_CONF / f"{name}.yaml"), data_root=DATA)


def class_counts(td: TaskData, splits: str) -> dict[str, int]:
    total: Counter = Counter()
    for split in splits.split("+"):
        total.update(td.labels[i] for i in td.splits[split]["label"][:])
    return dict(total)


# ------------------------------------------------------------------ shipped tasks


def test_every_task_has_expectations() -> None:
    assert set(TASK_NAMES) == set(EXPECTED)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_yaml_is_well_formed(name: str) -> None:
    text = (TASK_CONF / f"{name}.yaml").read_text()
    assert text.startswith("# @package task")
    cfg = task_cfg(name)
    assert cfg["name"] == name
    spec = task_module._TaskSpec.from_config(cfg)
    assert spec.template.count("{mask}") == 1
    slots = {m.split("|")[0] for m in re.findall(r"\{([^{}]+)\}", spec.template)}
    assert slots - {"mask", "sep"} <= set(spec.fields), f"template uses fields not in `fields`: {slots}"
    assert list(spec.verbalizer) == spec.labels


@needs_data
def test_manifest_quotes_are_verbatim() -> None:
    for name, exp in EXPECTED.items():
        manifest = (DATA / exp.data_dir / "MANIFEST.txt").read_text()
        for quote in exp.quotes:
            assert quote in manifest, f"{name}: {quote!r} not in {exp.data_dir}/MANIFEST.txt"


@needs_data
@pytest.mark.parametrize("name", TASK_NAMES)
def test_split_sizes_and_label_counts_match_manifest(name: str) -> None:
    td, exp = loaded(name), EXPECTED[name]
    assert td.config["data_dir"] == exp.data_dir
    expected_splits = {s for key in exp.counts for s in key.split("+")}
    assert set(td.splits) == expected_splits
    for key, counts in exp.counts.items():
        assert class_counts(td, key) == counts, f"{name}/{key}"
    for split, size in exp.sizes.items():
        assert len(td.splits[split]) == size, f"{name}/{split}"


@needs_data
@pytest.mark.parametrize("name", TASK_NAMES)
def test_columns_labels_and_idx(name: str) -> None:
    td = loaded(name)
    assert list(td.verbalizer) == td.labels and td.metric in ("accuracy", "f1_macro")
    for split, ds in td.splits.items():
        assert ds.column_names == [*td.fields, "label", "idx"], split
        assert ds.features["label"].names == td.labels
        labels, idx = ds["label"][:], ds["idx"][:]
        assert min(labels) >= 0 and max(labels) < td.num_labels
        assert len(set(idx)) == len(idx), f"{name}/{split}: idx not unique"
        assert all(isinstance(ds[0][f], str) for f in td.fields)
    if "train+test" in EXPECTED[name].counts:  # carved from one source: disjoint, together complete
        train, test = set(td.splits["train"]["idx"][:]), set(td.splits["test"]["idx"][:])
        assert not train & test
        assert train | test == set(range(len(train) + len(test)))


@needs_data
@pytest.mark.parametrize("name", ["mr", "agnews", "trec"])
def test_loading_is_deterministic(name: str) -> None:
    again = load_task(task_cfg(name), data_root=DATA)  # plain dict instead of DictConfig
    first = loaded(name)
    for split in first.splits:
        assert again.splits[split]["idx"][:] == first.splits[split]["idx"][:]
        assert again.splits[split][:5] == first.splits[split][:5]


@needs_data
def test_derived_split_depends_on_seed() -> None:
    cfg = task_cfg("mr")
    cfg["derive"]["test"]["seed"] = 7
    other = load_task(cfg, data_root=DATA)
    assert len(other.splits["test"]) == 2000
    assert set(other.splits["test"]["idx"][:]) != set(loaded("mr").splits["test"]["idx"][:])


@needs_data
def test_spot_check_parsed_text() -> None:
    sst2 = loaded("sst2").splits["test"][0]
    assert sst2["text_a"] == "it 's a charming and often affecting journey ." and sst2["label"] == 1
    trec = loaded("trec").splits["train"][0]  # "DESC:manner How did serfdom develop in and then leave Russia ?"
    assert trec["text_a"] == "How did serfdom develop in and then leave Russia ?" and trec["label"] == 0
    agnews = loaded("agnews").splits["test"][0]
    assert agnews["text_a"] == "Fears for T N pension after talks" and agnews["label"] == 2
    boolq = loaded("boolq").splits["fewglue"][0]
    assert boolq["question"] == "is ghost in the shell based on the anime" and boolq["label"] == 0  # JSON false


@needs_data
def test_hydra_compose_task_group() -> None:
    hydra = pytest.importorskip("hydra")
    with hydra.initialize_config_dir(config_dir=str(TASK_CONF.parent), version_base=None):
        cfg = hydra.compose(overrides=["+task=cb", f"task.data_dir={DATA / 'CB'}"])
    td = load_task(cfg.task, data_root="/nonexistent")  # absolute data_dir wins
    assert td.name == "cb" and len(td.splits["test"]) == 56


# ------------------------------------------------------------------ custom tasks

# Must stay identical to the example in README.md ("Your own task").
CUSTOM_YAML = """\
# @package task
name: mytask
data_dir: /data/my_reviews          # absolute, or relative to the data root
format: csv                         # header row: id,review,sentiment
files:
  all: reviews.csv
derive:                             # no test file: hold out 20% (seeded) as test
  test: {from: all, size: 0.2, seed: 42, rest: train}
fields:
  text_a: review                    # template field -> CSV column
label_column: sentiment
labels: [negative, positive]
label_map: {neg: negative, pos: positive, "0": negative, "1": positive}
template: "{text_a|shortenable} All in all, it was {mask}."
verbalizer:
  negative: bad
  positive: [good, great]           # several label words per class
metric: accuracy
max_length: 128
"""

REVIEWS = """\
id,review,sentiment
1,"Great phone, battery lasts for days.",pos
2,"Broke after a week; ""premium"" my foot.",neg
3,NA,neg
4,  Works as advertised. ,1
5,"Screen is dim,
and the speaker is tinny.",0
"""


def write_reviews(directory: Path, n_copies: int = 4) -> None:
    header, body = REVIEWS.split("\n", 1)
    (directory / "reviews.csv").write_text(header + "\n" + body * n_copies)


def test_docs_example_matches_test() -> None:
    assert CUSTOM_YAML in (REPO / "README.md").read_text(), "the README's custom-task example differs from CUSTOM_YAML"


def test_custom_csv_task(tmp_path: Path) -> None:
    write_reviews(tmp_path)
    cfg = OmegaConf.create(CUSTOM_YAML)
    cfg.data_dir = str(tmp_path)
    td = load_task(cfg)
    assert set(td.splits) == {"train", "test"}
    assert (len(td.splits["train"]), len(td.splits["test"])) == (16, 4)
    assert td.verbalizer == {"negative": ["bad"], "positive": ["good", "great"]}
    rows = {r["idx"]: r for split in td.splits.values() for r in split}
    assert rows[1]["text_a"] == 'Broke after a week; "premium" my foot.' and rows[1]["label"] == 0
    assert rows[2]["text_a"] == "NA"  # not turned into a missing value
    assert rows[3]["text_a"] == "Works as advertised." and rows[3]["label"] == 1
    assert rows[4]["text_a"] == "Screen is dim,\nand the speaker is tinny."


def test_custom_task_through_hydra_config_dir(tmp_path: Path) -> None:
    hydra = pytest.importorskip("hydra")
    conf = tmp_path / "conf"
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "mytask.yaml").write_text(CUSTOM_YAML)
    write_reviews(tmp_path)
    with hydra.initialize_config_dir(config_dir=str(conf), version_base=None):
        cfg = hydra.compose(overrides=["+task=mytask", f"task.data_dir={tmp_path}"])
    td = load_task(cfg.task)
    assert td.name == "mytask" and len(td.splits["train"]) + len(td.splits["test"]) == 20


def test_custom_tsv_no_header_two_files(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text('q1\t"quoted" s1\tyes\nq2\ts2\tno\n')
    (tmp_path / "b.tsv").write_text("q3\ts3\tyes\n")
    (tmp_path / "t.tsv").write_text("q4\ts4\tno\n")
    cfg = {
        "name": "pairs", "data_dir": str(tmp_path), "format": "tsv", "header": False,
        "columns": ["q", "s", "y"], "files": {"train": ["a.tsv", "b.tsv"], "test": "t.tsv"},
        "fields": {"question": "q", "text_b": "s"}, "label_column": "y", "labels": ["no", "yes"],
        "template": "{question}? {mask}, {text_b}", "verbalizer": {"no": "No", "yes": "Yes"},
    }
    td = load_task(cfg)
    train = td.splits["train"]
    assert train["question"][:] == ["q1", "q2", "q3"] and train["idx"][:] == [0, 1, 2]
    assert train[0]["text_b"] == '"quoted" s1' and train["label"][:] == [1, 0, 1]
    assert td.fields == ["question", "text_b"] and td.max_length == 128 and td.metric == "accuracy"


def test_custom_lines_regex_parallel_jsonl(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine\n\nlovely\n")
    (tmp_path / "bad.txt").write_text("awful\n")
    base = {"labels": ["bad", "good"], "template": "{text_a} {mask}", "verbalizer": {"bad": "bad", "good": "good"},
            "data_dir": str(tmp_path)}
    lines = load_task({**base, "name": "l", "format": "lines", "skip_blank": True, "fields": {"text_a": "text"},
                       "files": {"train": {"good": "good.txt", "bad": "bad.txt"}, "test": {"bad": "bad.txt"}}})
    assert lines.splits["train"]["text_a"][:] == ["fine", "lovely", "awful"]
    assert lines.splits["train"]["idx"][:] == [0, 2, 3]  # line positions survive skip_blank

    (tmp_path / "r.txt").write_text("1|great stuff\n0|meh\n")
    regex = load_task({**base, "name": "r", "format": "regex", "pattern": r"^(?P<y>\d)\|(?P<s>.*)$",
                       "label_column": "y", "label_map": {0: "bad", 1: "good"}, "fields": {"text_a": "s"},
                       "files": {"train": "r.txt", "test": "r.txt"}})
    assert regex.splits["test"]["text_a"][:] == ["great stuff", "meh"] and regex.splits["test"]["label"][:] == [1, 0]

    for f, text in {"a": "x\ny\n", "b": "p\nq\n", "y": "good\nbad\n"}.items():
        (tmp_path / f).write_text(text)
    par = load_task({**base, "name": "p", "format": "parallel", "fields": {"text_a": "a", "text_b": "b"},
                     "label_column": "y", "files": {"train": {"a": "a", "b": "b", "y": "y"}, "test": {"a": "a", "b": "b", "y": "y"}}})
    assert par.splits["train"][1] == {"text_a": "y", "text_b": "q", "label": 0, "idx": 1}

    for name, labels in {"bools.jsonl": [True, False], "strings.jsonl": ["true", "false"]}.items():
        rows = [{"t": "ok", "label": labels[0], "idx": 99}, {"t": "no", "label": labels[1], "idx": 98}]
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    js = load_task({**base, "name": "j", "format": "jsonl", "labels": [False, True], "fields": {"text_a": "t"},
                    "verbalizer": {False: "No", True: "Yes"}, "files": {"train": "bools.jsonl", "test": "strings.jsonl"}})
    assert js.labels == ["false", "true"]
    for split in ("train", "test"):  # JSON booleans and "true"/"false" strings both normalise
        assert js.splits[split]["label"][:] == [1, 0] and js.splits[split]["idx"][:] == [0, 1]


def test_hub_fallback_applies_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    fake = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["a", "b", "c"], "label": [0, 1, -1]}, features=features),
        "validation": datasets.Dataset.from_dict({"sentence": ["d"], "label": [1]}, features=features),
    })
    calls = []
    monkeypatch.setattr(task_module.datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or fake)
    cfg = {
        "name": "hubby", "data_dir": "Missing", "files": {"all": "x.tsv"},
        "derive": {"test": {"from": "all", "size": 1, "rest": "train"}},
        "fields": {"text_a": "text"}, "labels": ["negative", "positive"], "template": "{text_a} {mask}",
        "verbalizer": {"negative": "bad", "positive": "good"},
        "hub": {"path": "some/dataset", "name": "cfg", "splits": {"train": "train", "test": "validation"},
                "derive": None, "fields": {"text_a": "sentence"}, "drop_labels": [-1],
                "label_map": {"neg": "negative", "pos": "positive"}},
    }
    td = load_task(cfg, data_root=tmp_path)
    assert calls == [(("some/dataset", "cfg"), {"revision": None})]
    assert td.source == "hub:some/dataset/cfg"
    assert td.splits["train"]["text_a"][:] == ["a", "b"] and td.splits["train"]["label"][:] == [0, 1]
    assert td.splits["test"]["label"][:] == [1]


def test_data_root_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for root in ("arg", "cfg", "env"):
        (tmp_path / root / "T").mkdir(parents=True)
        (tmp_path / root / "T" / "d.csv").write_text(f"text,label\n{root},a\nx,b\n")
    cfg = {"name": "t", "data_dir": "T", "format": "csv", "files": {"train": "d.csv", "test": "d.csv"},
           "fields": {"text_a": "text"}, "labels": ["a", "b"], "template": "{text_a} {mask}",
           "verbalizer": {"a": "A", "b": "B"}}
    monkeypatch.setenv("PROMPTLEARN_DATA", str(tmp_path / "env"))
    assert load_task(cfg).splits["test"][0]["text_a"] == "env"
    assert load_task({**cfg, "data_root": str(tmp_path / "cfg")}).splits["test"][0]["text_a"] == "cfg"
    got = load_task({**cfg, "data_root": str(tmp_path / "cfg")}, data_root=tmp_path / "arg")
    assert got.splits["test"][0]["text_a"] == "arg" and got.source == str(tmp_path / "arg" / "T")


# ------------------------------------------------------------------ error messages


def base_cfg(tmp_path: Path, **overrides) -> dict:
    (tmp_path / "d.csv").write_text("text,label\nhello,pos\nbye,neg\n")
    cfg = {"name": "errtask", "data_dir": str(tmp_path), "format": "csv",
           "files": {"train": "d.csv", "test": "d.csv"}, "fields": {"text_a": "text"},
           "labels": ["neg", "pos"], "template": "{text_a} {mask}", "verbalizer": {"neg": "bad", "pos": "good"}}
    return {**cfg, **overrides}


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Task 'errtask', split 'test': file not found: .*nothere\.csv"):
        load_task(base_cfg(tmp_path, files={"train": "d.csv", "test": "nothere.csv"}))


def test_error_no_data_no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMPTLEARN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        load_task(base_cfg(tmp_path, data_dir="NoSuchDir"))
    msg = str(err.value)
    assert "errtask" in msg and str(tmp_path / "NoSuchDir") in msg and "PROMPTLEARN_DATA" in msg and "data_root" in msg


def test_error_unknown_label(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("text,label\nhello,pos\nhmm,meh\n")
    with pytest.raises(TaskConfigError, match=r"unknown label value 'meh'.*row idx 1.*known values: \['neg', 'pos'\]"):
        load_task(base_cfg(tmp_path, files={"train": "d.csv", "test": "bad.csv"}))


def test_error_unlabeled_rows(tmp_path: Path) -> None:
    (tmp_path / "u.jsonl").write_text('{"text": "a"}\n')
    cfg = base_cfg(tmp_path, format="jsonl", files={"train": "u.jsonl", "test": "u.jsonl"})
    with pytest.raises(TaskConfigError, match="not found|no label"):
        load_task(cfg)
    (tmp_path / "u.jsonl").write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": null}\n')
    with pytest.raises(TaskConfigError, match="row idx 1 has no label"):
        load_task(cfg)


def test_error_regex_no_match(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text("pos hello\nthis line is wrong\n")
    cfg = base_cfg(tmp_path, format="regex", pattern=r"^(?P<label>pos|neg) (?P<text>.*)$",
                   files={"train": "r.txt", "test": "r.txt"})
    with pytest.raises(TaskConfigError, match=r"line 2 of .*r\.txt does not match.*'this line is wrong'"):
        load_task(cfg)


def test_error_missing_column(tmp_path: Path) -> None:
    with pytest.raises(TaskConfigError, match=r"column\(s\) \['review'\] not found; available columns: \['text', 'label'\]"):
        load_task(base_cfg(tmp_path, fields={"text_a": "review"}))


def test_error_config_validation(tmp_path: Path) -> None:
    with pytest.raises(TaskConfigError, match=r"missing required key\(s\) \['template'\]"):
        load_task({k: v for k, v in base_cfg(tmp_path).items() if k != "template"})
    with pytest.raises(TaskConfigError, match="unknown format 'xlsx'"):
        load_task(base_cfg(tmp_path, format="xlsx"))
    with pytest.raises(TaskConfigError, match=r"verbalizer classes .*\(missing \['pos'\]"):
        load_task(base_cfg(tmp_path, verbalizer={"neg": "bad"}))
    yaml_bool = OmegaConf.create("verbalizer: {neg: No, pos: Yes}")  # unquoted -> booleans
    with pytest.raises(TaskConfigError, match="quote such strings"):
        load_task(base_cfg(tmp_path, verbalizer=OmegaConf.to_container(yaml_bool)["verbalizer"]))
    with pytest.raises(TaskConfigError, match="label_map maps 'x' to 'neutral'"):
        load_task(base_cfg(tmp_path, label_map={"x": "neutral"}))
    with pytest.raises(TaskConfigError, match="size=5 must be between 1 and 1"):
        load_task(base_cfg(tmp_path, files={"all": "d.csv"}, derive={"test": {"from": "all", "size": 5, "rest": "train"}}))
    with pytest.raises(TaskConfigError, match=r"would overwrite existing split\(s\) \['test'\]"):
        load_task(base_cfg(tmp_path, derive={"test": {"from": "train", "size": 1}}))
    with pytest.raises(TaskConfigError, match=r"no 'test' split \(have \['train'\]\)"):
        load_task(base_cfg(tmp_path, files={"train": "d.csv"}))
    with pytest.warns(UserWarning, match=r"unknown key\(s\) \['lables'\]"):
        load_task(base_cfg(tmp_path, lables=["x"]))


def test_error_parallel_length_mismatch(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x\ny\n")
    (tmp_path / "l").write_text("pos\n")
    cfg = base_cfg(tmp_path, format="parallel", files={"train": {"text": "a", "label": "l"}, "test": {"text": "a", "label": "l"}})
    with pytest.raises(TaskConfigError, match="parallel files differ in length"):
        load_task(cfg)


def test_error_unparsable_csv(tmp_path: Path) -> None:
    (tmp_path / "broken.csv").write_text("text,label\na,pos,extra,cells\n")
    with pytest.raises(TaskConfigError, match=r"cannot read .*broken\.csv as csv"):
        load_task(base_cfg(tmp_path, files={"train": "broken.csv", "test": "d.csv"}))


def test_limit_that_leaves_out_a_class_is_said():
    """limit=N takes the first N examples; a split listing its classes in blocks (MR, MPQA, Subj) would give a
    one-class subset: the run says so (a warning), and says nothing when every class is in."""
    from datasets import Dataset

    from promptlearn.run import limit_note

    full = Dataset.from_dict({"text_a": list("abcdef"), "label": [0, 0, 0, 1, 1, 2]})
    note = limit_note(full, full.select(range(3)), ["neg", "pos", "mid"], 3)
    assert note.startswith("limit=3: the first 3 of 6 test examples have no example of class(es) ['pos', 'mid']")
    assert limit_note(full, full.select([0, 3, 5]), ["neg", "pos", "mid"], 3) is None
    assert limit_note(full, full, ["neg", "pos", "mid"], 10) is None  # the whole split
