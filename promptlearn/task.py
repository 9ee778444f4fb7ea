"""Tasks: declarative descriptions of few-shot classification datasets.

A task is pure data -- a YAML file in ``conf/task/<name>.yaml`` (Hydra config
group ``task``).  :func:`load_task` turns such a config into a :class:`TaskData`:
typed ``datasets`` splits (``train`` = the few-shot *pool*, ``test``), the class
names, the default template, the verbalizer and the reported metric.

Every loaded split has exactly the columns named in ``fields`` (strings,
stripped of surrounding whitespace), ``label`` (a ``ClassLabel`` whose names are
``labels``) and ``idx`` (int64, the row's stable position in its source
file(s), unique within the split and kept when a split is carved out of
another).  The full schema is documented in ``conf/task/sst2.yaml`` and in the
"Tasks" section of the README.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from omegaconf import OmegaConf
from pandas.errors import ParserWarning

from .errors import PromptlearnError
from .metrics import METRICS  # the one metric registry
from .verbalizers import VerbalizerError
from .verbalizers.manual import YAML_HINT as _YAML_HINT, check_label_words

logger = logging.getLogger(__name__)

FORMATS = ("tsv", "csv", "jsonl", "lines", "regex", "parallel")
ENV_VAR = "PROMPTLEARN_DATA"
#: ``<repo>/../shared/data`` -- used when no data root is configured.
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"

_REQUIRED_KEYS = ("name", "labels", "fields", "template", "verbalizer")
_KNOWN_KEYS = frozenset(
    {
        "name", "data_dir", "data_root", "hub", "format", "files", "encoding",
        "header", "columns", "delimiter", "quoting", "pattern", "skip_blank",
        "fields", "label_column", "labels", "label_map", "drop_labels", "derive",
        "template", "verbalizer", "metric", "max_length", "description", "patterns",
    }
)
_HUB_SOURCE_KEYS = frozenset({"path", "name", "splits", "revision"})
_QUOTING = {"none": csv.QUOTE_NONE, "minimal": csv.QUOTE_MINIMAL}


class TaskConfigError(PromptlearnError, ValueError):
    """A task YAML is malformed or inconsistent with its data files."""


class TaskDataNotFound(TaskConfigError, FileNotFoundError):
    """A task's data directory or file does not exist."""


@dataclass
class TaskData:
    """A loaded task.

    Attributes:
        name: task name (``name`` in the YAML).
        labels: ordered class names; class index = position in this list.
        splits: at least ``train`` (the few-shot pool to sample from) and ``test``.
        template: default template string.
        verbalizer: class name -> list of label words (same order as ``labels``).
        metric: reported metric, ``accuracy`` or ``f1_macro``.
        max_length: maximum sequence length in tokens.
        fields: template field names present as columns in every split.
        config: the effective task config as a plain dict.
        source: where the data came from (a directory or ``hub:<path>/<name>``).
    """

    name: str
    labels: list[str]
    splits: datasets.DatasetDict
    template: str
    verbalizer: dict[str, list[str]]
    metric: str
    max_length: int
    fields: list[str]
    config: dict[str, Any]
    source: str = ""
    patterns: list[Any] = field(default_factory=list)  # promptlearn.patterns.Pattern entries (PET's PVPs)
    pattern: Any = None  # the Pattern a run selected (pattern=...), whose template/verbalizer are set above

    @property
    def num_labels(self) -> int:
        return len(self.labels)


# --------------------------------------------------------------------------- API


def load_task(task_cfg: Mapping[str, Any] | Any, data_root: str | os.PathLike | None = None) -> TaskData:
    """Load the task described by ``task_cfg`` (a dict or an OmegaConf ``DictConfig``).

    Local files are looked up in ``<data root>/<data_dir>`` (or ``data_dir`` itself
    when absolute). The data root is, in order: the ``data_root`` argument,
    ``task_cfg.data_root``, ``$PROMPTLEARN_DATA``, ``DEFAULT_DATA_ROOT`` if it
    exists. If the task directory does not exist the ``hub`` dataset is used
    (keys in ``hub`` other than path/name/splits/revision override the task's
    own keys); without ``hub`` a ``FileNotFoundError`` lists the paths tried.
    """
    cfg = _to_dict(task_cfg)
    name = str(cfg.get("name") or "<unnamed>")
    unknown = sorted(set(cfg) - _KNOWN_KEYS)
    if unknown:
        warnings.warn(f"Task '{name}': ignoring unknown key(s) {unknown}; known keys: {sorted(_KNOWN_KEYS)}")

    task_dir, tried = _find_task_dir(cfg, data_root)
    if task_dir is not None:
        spec = _TaskSpec.from_config(cfg)
        logger.info("Loading task '%s' from %s", name, task_dir)
        raw = {split: _read_split(spec, task_dir, split, files) for split, files in spec.files.items()}
        source, class_names = str(task_dir), {}
    elif cfg.get("hub"):
        hub = cfg["hub"]
        cfg = {**cfg, **{k: v for k, v in hub.items() if k not in _HUB_SOURCE_KEYS}}
        spec = _TaskSpec.from_config(cfg, need_files=False)
        logger.warning("Task '%s': no local data (tried %s); loading '%s' from the Hugging Face Hub",
                       name, "; ".join(tried), hub.get("path"))
        raw, class_names = _read_hub(spec, hub)
        source = f"hub:{hub['path']}" + (f"/{hub['name']}" if hub.get("name") else "")
    else:
        raise TaskDataNotFound(
            f"Task '{name}': no data found and no `hub` configured. Tried: {'; '.join(tried)}. "
            f"Fix: pass data_root=/path/to/data (command line: data_root=/path/to/data), "
            f"set the environment variable {ENV_VAR}=/path/to/data, "
            f"or point task.data_dir at an absolute directory."
        )

    splits = {
        split: _finalize(spec, ds, split, class_names.get(split)) for split, ds in raw.items()
    }
    splits = _derive(spec, splits)
    return TaskData(
        name=spec.name,
        labels=spec.labels,
        splits=datasets.DatasetDict(splits),
        template=spec.template,
        verbalizer=spec.verbalizer,
        metric=spec.metric,
        max_length=spec.max_length,
        fields=list(spec.fields),
        config=cfg,
        source=source,
        patterns=spec.patterns,
    )


# ------------------------------------------------------------------ validation


def _to_dict(task_cfg: Any) -> dict[str, Any]:
    """Plain-dict copy of a dict or OmegaConf config (interpolations resolved)."""
    if OmegaConf.is_config(task_cfg):
        return OmegaConf.to_container(task_cfg, resolve=True)  # type: ignore[return-value]
    if not isinstance(task_cfg, Mapping):
        raise TypeError(f"task config must be a mapping or DictConfig, got {type(task_cfg).__name__}")
    return {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in task_cfg.items()}


def _norm_label(value: Any) -> str | None:
    """Canonical string form of a raw label value (``True`` -> ``"true"``, ``1.0`` -> ``"1"``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


@dataclass
class _TaskSpec:
    """Validated, normalised view of a task config."""

    name: str
    format: str
    files: dict[str, Any]
    encoding: str
    fields: dict[str, str]
    label_column: str
    labels: list[str]
    lookup: dict[str, int]
    drop_labels: frozenset[str]
    derive: dict[str, dict[str, Any]]
    template: str
    verbalizer: dict[str, list[str]]
    metric: str
    max_length: int
    cfg: dict[str, Any]
    patterns: list[Any]

    @classmethod
    def from_config(cls, cfg: dict[str, Any], need_files: bool = True) -> _TaskSpec:
        name = str(cfg.get("name") or "<unnamed>")

        def fail(msg: str) -> TaskConfigError:
            return TaskConfigError(f"Task '{name}': {msg}")

        missing = [k for k in _REQUIRED_KEYS if cfg.get(k) in (None, "", [], {})]
        if missing:
            raise fail(f"missing required key(s) {missing}")
        fmt = str(cfg.get("format", "tsv"))
        if fmt not in FORMATS:
            raise fail(f"unknown format '{fmt}'; choose one of {list(FORMATS)}")
        files = cfg.get("files") or {}
        if need_files and not files:
            raise fail("no `files` given (mapping split name -> file(s) inside data_dir)")
        if fmt in ("lines", "parallel"):
            for split, spec in files.items():
                if not isinstance(spec, Mapping):
                    what = "label -> file" if fmt == "lines" else "column -> file"
                    raise fail(f"format '{fmt}' needs files.{split} to be a mapping {what}, got {spec!r}")
        if fmt == "regex" and not cfg.get("pattern"):
            raise fail("format 'regex' needs a `pattern` with named groups, e.g. '^(?P<label>\\S+) (?P<text_a>.*)$'")

        labels = [_norm_label(x) for x in _as_list(cfg["labels"])]
        if len(labels) < 2 or len(set(labels)) != len(labels) or None in labels:
            raise fail(f"`labels` must list at least two distinct class names, got {labels}")
        lookup = {lab: i for i, lab in enumerate(labels)}
        for raw, target in (cfg.get("label_map") or {}).items():
            target_n = _norm_label(target)
            if target_n not in lookup:
                raise fail(f"label_map maps {raw!r} to {target!r}, which is not in labels {labels} {_YAML_HINT}")
            lookup[_norm_label(raw)] = labels.index(target_n)

        fields = cfg["fields"]
        if not isinstance(fields, Mapping):
            raise fail(f"`fields` must map template field names to source columns, got {fields!r}")
        fields = {str(k): str(v) for k, v in fields.items()}
        reserved = {"label", "idx"} & set(fields)
        if reserved:
            raise fail(f"field name(s) {sorted(reserved)} are reserved; choose other names")

        verbalizer_cfg = cfg["verbalizer"]
        if not isinstance(verbalizer_cfg, Mapping):
            raise fail("`verbalizer` must map each class name to a label word or a list of words")
        try:  # the same label-word check the verbalizer runs
            verbalizer = check_label_words({_norm_label(k): _as_list(v) for k, v in verbalizer_cfg.items()}, labels)
        except VerbalizerError as exc:
            raise fail(str(exc)) from None

        metric = str(cfg.get("metric", "accuracy"))
        if metric not in METRICS:
            raise fail(f"unknown metric '{metric}'; choose one of {list(METRICS)}")
        from .errors import ConfigError
        from .patterns import parse_patterns

        try:
            patterns = parse_patterns(cfg.get("patterns"), labels, f"Task '{name}'")
        except ConfigError as exc:
            raise TaskConfigError(str(exc)) from None
        derive = cfg.get("derive") or {}
        for target, rule in derive.items():
            if not isinstance(rule, Mapping) or "from" not in rule or "size" not in rule:
                raise fail(f"derive.{target} must be a mapping with `from`, `size` (and optional `seed`, `rest`), got {rule!r}")
        return cls(
            name=name,
            format=fmt,
            files=dict(files),
            encoding=str(cfg.get("encoding", "utf-8")),
            fields=fields,
            label_column=str(cfg.get("label_column", "label")),
            labels=labels,
            lookup=lookup,
            drop_labels=frozenset(_norm_label(x) for x in _as_list(cfg.get("drop_labels"))),
            derive=dict(derive),
            template=str(cfg["template"]),
            verbalizer={lab: [str(w) for w in verbalizer[lab]] for lab in labels},
            metric=metric,
            max_length=int(cfg.get("max_length", 128)),
            cfg=cfg,
            patterns=patterns,
        )


def _find_task_dir(cfg: dict[str, Any], data_root: str | os.PathLike | None) -> tuple[Path | None, list[str]]:
    """Return the existing local task directory (or None) and a description of the paths tried."""
    data_dir = cfg.get("data_dir")
    if not data_dir:
        return None, ["(no data_dir configured)"]
    data_dir = Path(str(data_dir)).expanduser()
    if data_dir.is_absolute():
        candidate, origin = data_dir, "absolute data_dir"
    else:
        roots = [
            ("data_root argument", data_root),
            ("task.data_root", cfg.get("data_root")),
            (f"${ENV_VAR}", os.environ.get(ENV_VAR)),
        ]
        origin, root = next(((o, r) for o, r in roots if r), ("default data root", None))
        if root is None:
            if not DEFAULT_DATA_ROOT.is_dir():
                return None, [f"{DEFAULT_DATA_ROOT} (default data root, does not exist)"]
            root = DEFAULT_DATA_ROOT
        candidate = Path(str(root)).expanduser() / data_dir
    if candidate.is_dir():
        return candidate, [f"{candidate} ({origin})"]
    return None, [f"{candidate} ({origin}, not a directory)"]


# --------------------------------------------------------------------- reading


def _read_split(spec: _TaskSpec, task_dir: Path, split: str, files: Any) -> datasets.Dataset:
    """Read all files of one source split into a Dataset of raw columns plus ``idx``."""
    if spec.format == "parallel":
        return _read_parallel(spec, task_dir, split, files)
    if spec.format == "lines":
        # {label: file or [files]} -> text + constant label column.
        items = [(_norm_label(lab), p) for lab, paths in files.items() for p in _as_list(paths)]
    else:
        items = [(None, p) for p in _as_list(files)]
    parts, offset = [], 0
    for label, rel in items:
        rel, options = (rel.get("path"), {k: v for k, v in rel.items() if k != "path"}) if isinstance(rel, Mapping) \
            else (rel, {})
        path = _resolve(spec, task_dir, split, rel)
        ds = _read_file(spec, path, options)
        n_rows = len(ds)
        if "idx" in ds.column_names:  # e.g. SuperGLUE jsonl: replaced by the row position
            ds = ds.remove_columns("idx")
        ds = ds.add_column("idx", np.arange(offset, offset + n_rows, dtype=np.int64))
        if spec.format in ("lines", "regex"):
            n_blank = n_rows - sum(1 for t in ds["text"][:] if _is_not_blank(t))
            if n_blank and spec.cfg.get("skip_blank", True):
                ds = ds.filter(_is_not_blank, input_columns="text")
                logger.info("Task '%s': %s: dropped %d blank line(s) (skip_blank: true)", spec.name, path, n_blank)
            elif n_blank:
                warnings.warn(f"Task '{spec.name}': {path} has {n_blank} blank line(s), kept as empty examples "
                              "because the task sets skip_blank: false", stacklevel=2)
        if spec.format == "regex":
            ds = ds.map(
                _match_lines,
                fn_kwargs={"pattern": re.compile(str(spec.cfg["pattern"])), "offset": offset,
                           "path": str(path), "task": spec.name},
                batched=True,
                remove_columns=["text"],
                desc=f"parsing {path.name}",
            )
        if label is not None:
            ds = ds.add_column("label", [label] * len(ds))
        parts.append(ds)
        offset += n_rows
    if not parts:
        raise TaskConfigError(f"Task '{spec.name}': files.{split} lists no files")
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _resolve(spec: _TaskSpec, task_dir: Path, split: str, rel: Any) -> Path:
    path = Path(str(rel)).expanduser()
    path = path if path.is_absolute() else task_dir / path
    if not path.is_file():
        raise TaskDataNotFound(f"Task '{spec.name}', split '{split}': file not found: {path}")
    return path


def _read_file(spec: _TaskSpec, path: Path, options: Mapping[str, Any] | None = None) -> datasets.Dataset:
    """Read one file with ``datasets`` (csv / json / text builder, results cached by datasets).

    ``options``: per-file CSV options (``header``, ``columns``, ``delimiter``, ``quoting``) given as
    ``files: {train: {path: train.csv, header: true}, test: {path: test.csv, header: false, columns: [...]}}``.
    """
    load = functools.partial(datasets.load_dataset, data_files=str(path), split="train")
    unknown = set(options or {}) - {"header", "columns", "delimiter", "quoting"}
    if unknown:
        raise TaskConfigError(f"Task '{spec.name}': file {path.name}: unknown per-file option(s) {sorted(unknown)}; "
                              "fix: use path, header, columns, delimiter or quoting")
    with open(path, "rb") as f:
        empty = not f.read(65536).strip()
    if empty:
        raise TaskConfigError(f"Task '{spec.name}': {path} is empty; fix: point files: at the file with the data")
    try:
        if spec.format in ("tsv", "csv"):
            kwargs = _csv_kwargs(spec, path, options or {})
            _check_rows(spec, path, kwargs)
            with warnings.catch_warnings():  # a row longer than the header is an error, not a silent shift
                warnings.simplefilter("error", ParserWarning)
                return load("csv", **kwargs)
        if spec.format == "jsonl":
            return load("json", encoding=spec.encoding)
        return load("text", encoding=spec.encoding)  # lines / regex / parallel: one row per line
    except TaskConfigError:
        raise
    except Exception as err:  # add the task and file to the datasets/pandas/pyarrow error
        cause = err.__cause__ or err
        raise TaskConfigError(
            f"Task '{spec.name}': cannot read {path} as {spec.format}: {type(cause).__name__}: {cause}. "
            f"Check format/encoding/delimiter/quoting/header/columns in the task YAML."
        ) from err


def _check_rows(spec: _TaskSpec, path: Path, kwargs: Mapping[str, Any]) -> None:
    """Every data row has as many cells as there are columns, and there is at least one data row."""
    n_cols, n_rows = len(kwargs["names"]), 0
    with open(path, encoding=spec.encoding, newline="") as f:
        reader = csv.reader(f, delimiter=kwargs["sep"], quoting=kwargs["quoting"])
        for i, row in enumerate(reader):
            if i == 0 and kwargs["header"] == 0 or not row:  # the header; blank lines are skipped
                continue
            n_rows += 1
            if len(row) < n_cols:
                raise TaskConfigError(
                    f"Task '{spec.name}': {path}, line {reader.line_num}: {len(row)} cell(s) where there are {n_cols} "
                    f"columns {kwargs['names']}: {row!r}; fix: complete the row (or quote a cell that contains "
                    f"the delimiter {kwargs['sep']!r})")
    if n_rows == 0:
        raise TaskConfigError(f"Task '{spec.name}': {path} has {'a header but ' if kwargs['header'] == 0 else ''}"
                              f"no data rows; fix: point files: at the file with the data")


def _csv_kwargs(spec: _TaskSpec, path: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    cfg = {**spec.cfg, **options}
    delimiter = str(cfg.get("delimiter", "\t" if spec.format == "tsv" else ","))
    quoting_name = str(cfg.get("quoting", "none" if spec.format == "tsv" else "minimal"))
    if quoting_name not in _QUOTING:
        raise TaskConfigError(f"Task '{spec.name}': quoting must be one of {list(_QUOTING)}, got '{quoting_name}'")
    header = bool(cfg.get("header", True))
    names = [str(c) for c in _as_list(cfg.get("columns"))]
    if not names:
        if not header:
            raise TaskConfigError(f"Task '{spec.name}': header is false, so `columns` must name the columns of {path}")
        with open(path, encoding=spec.encoding, newline="") as f:
            names = next(csv.reader(f, delimiter=delimiter, quoting=_QUOTING[quoting_name]), [])
    return {
        "sep": delimiter,
        "header": 0 if header else None,  # with names given, a header row is skipped
        "names": names,
        "index_col": False,  # never use surplus leading cells as an index
        "quoting": _QUOTING[quoting_name],
        "encoding": spec.encoding,
        "keep_default_na": False,  # keep "NA", "null", "None", ... as text
        "na_filter": False,
        "converters": {c: str for c in names},  # no type inference: every cell stays a string
    }


def _match_lines(batch: dict[str, list], pattern: re.Pattern, offset: int, path: str, task: str) -> dict[str, list]:
    out: dict[str, list] = {g: [] for g in pattern.groupindex}
    for idx, line in zip(batch["idx"], batch["text"]):
        m = pattern.match(line)
        if m is None:
            raise TaskConfigError(
                f"Task '{task}': line {idx - offset + 1} of {path} does not match pattern "
                f"{pattern.pattern!r}: {line!r} (set skip_blank: true to ignore blank lines)"
            )
        for g in pattern.groupindex:
            out[g].append(m.group(g))
    return out


def _is_not_blank(text: str) -> bool:
    return bool(text.strip())


def _read_parallel(spec: _TaskSpec, task_dir: Path, split: str, files: Mapping[str, Any]) -> datasets.Dataset:
    columns = []
    for column, rel in files.items():
        ds = _read_file(spec, _resolve(spec, task_dir, split, rel))
        if str(column) != "text":
            ds = ds.rename_column("text", str(column))
        columns.append((str(column), rel, ds))
    lengths = {f"{rel} ({col})": len(ds) for col, rel, ds in columns}
    if len(set(lengths.values())) > 1:
        raise TaskConfigError(f"Task '{spec.name}', split '{split}': parallel files differ in length: {lengths}")
    ds = datasets.concatenate_datasets([d for _, _, d in columns], axis=1)
    return ds.add_column("idx", np.arange(len(ds), dtype=np.int64))


def _read_hub(spec: _TaskSpec, hub: Mapping[str, Any]) -> tuple[dict[str, datasets.Dataset], dict[str, list[str]]]:
    """Load ``hub.path``/``hub.name`` and assemble ``hub.splits`` (split -> hub split name(s))."""
    if not hub.get("path") or not hub.get("splits"):
        raise TaskConfigError(f"Task '{spec.name}': `hub` needs `path` and `splits` (split -> hub split name(s))")
    try:
        dd = datasets.load_dataset(str(hub["path"]), hub.get("name"), revision=hub.get("revision"))
    except Exception as exc:  # offline, a typo, no such dataset...
        raise TaskConfigError(
            f"Task '{spec.name}': its data is not under the data root and loading {hub['path']!r} from the Hugging "
            f"Face Hub failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); fix: data_root=/path/to/data "
            f"(the folder that holds {spec.cfg.get('data_dir')!r}) or export PROMPTLEARN_DATA=/path/to/data") from exc
    raw, class_names = {}, {}
    for split, hub_splits in hub["splits"].items():
        names = [str(s) for s in _as_list(hub_splits)]
        absent = [s for s in names if s not in dd]
        if absent:
            raise TaskConfigError(f"Task '{spec.name}': hub dataset has no split(s) {absent}; it has {list(dd)}")
        ds = datasets.concatenate_datasets([dd[s] for s in names]) if len(names) > 1 else dd[names[0]]
        raw[split] = ds.add_column("idx", np.arange(len(ds), dtype=np.int64))
        feature = ds.features.get(spec.label_column)
        if isinstance(feature, datasets.ClassLabel):  # hub labels are ints: look them up by name
            class_names[split] = list(feature.names)
    return raw, class_names


# ------------------------------------------------------------ normalise/derive


def _finalize(spec: _TaskSpec, ds: datasets.Dataset, split: str, class_names: list[str] | None) -> datasets.Dataset:
    """Keep ``fields`` (renamed), ``label`` (class index) and ``idx``; validate labels."""
    needed = [*spec.fields.values(), spec.label_column]
    absent = [c for c in dict.fromkeys(needed) if c not in ds.column_names]
    if absent:
        raise TaskConfigError(
            f"Task '{spec.name}', split '{split}': column(s) {absent} not found; available columns: "
            f"{[c for c in ds.column_names if c != 'idx']}. Fix `fields`/`label_column` (or `columns`/`pattern`)."
        )
    if spec.drop_labels:
        ds = ds.filter(_keep_label, input_columns=spec.label_column, fn_kwargs={"drop": spec.drop_labels})
    features = datasets.Features(
        {
            **{name: datasets.Value("string") for name in spec.fields},
            "label": datasets.ClassLabel(names=spec.labels),
            "idx": datasets.Value("int64"),
        }
    )
    return ds.map(
        _to_task_columns,
        fn_kwargs={
            "fields": spec.fields,
            "label_column": spec.label_column,
            "lookup": spec.lookup,
            "class_names": class_names,
            "where": f"Task '{spec.name}', split '{split}'",
        },
        batched=True,
        remove_columns=ds.column_names,
        features=features,
        desc=f"{spec.name}/{split}",
    )


def _keep_label(value: Any, drop: frozenset[str]) -> bool:
    return _norm_label(value) not in drop


def _to_task_columns(
    batch: dict[str, list],
    fields: dict[str, str],
    label_column: str,
    lookup: dict[str, int],
    class_names: list[str] | None,
    where: str,
) -> dict[str, list]:
    out: dict[str, list] = {
        name: ["" if v is None else str(v).strip() for v in batch[col]] for name, col in fields.items()
    }
    labels = []
    for idx, raw in zip(batch["idx"], batch[label_column]):
        if class_names is not None and isinstance(raw, int) and 0 <= raw < len(class_names):
            raw = class_names[raw]
        key = _norm_label(raw)
        if key is None:
            raise TaskConfigError(
                f"{where}: row idx {idx} has no label in column '{label_column}'. Unlabeled files "
                f"(e.g. GLUE/SuperGLUE test sets) cannot be used as a split."
            )
        if key not in lookup:
            raise TaskConfigError(
                f"{where}: unknown label value {key!r} in column '{label_column}' (row idx {idx}); "
                f"known values: {sorted(lookup)}. Add it to `labels` or `label_map` {_YAML_HINT}."
            )
        labels.append(lookup[key])
    out["label"] = labels
    out["idx"] = batch["idx"]
    return out


def _derive(spec: _TaskSpec, splits: dict[str, datasets.Dataset]) -> dict[str, datasets.Dataset]:
    """Apply ``derive`` rules in order: carve ``size`` seeded-random rows of ``from`` into the
    rule's split; the remaining rows become split ``rest`` (default: ``from`` itself)."""
    for target, rule in spec.derive.items():
        source, rest = str(rule["from"]), str(rule.get("rest", rule["from"]))
        if rest == target:
            raise TaskConfigError(f"Task '{spec.name}': derive.{target}.rest must differ from '{target}'")
        if source not in splits:
            raise TaskConfigError(f"Task '{spec.name}': derive.{target}.from='{source}' is not a split; have {sorted(splits)}")
        clash = [s for s in (target, rest) if s in splits and s != source]
        if clash:
            raise TaskConfigError(f"Task '{spec.name}': derive.{target} would overwrite existing split(s) {clash}")
        ds = splits.pop(source)
        size = rule["size"]
        n = round(size * len(ds)) if isinstance(size, float) and 0 < size < 1 else int(size)
        if not 0 < n < len(ds):
            raise TaskConfigError(
                f"Task '{spec.name}': derive.{target}.size={size} must be between 1 and {len(ds) - 1} "
                f"(split '{source}' has {len(ds)} rows) or a fraction in (0, 1)"
            )
        order = np.random.default_rng(int(rule.get("seed", 42))).permutation(len(ds))
        splits[target] = ds.select(np.sort(order[:n]))
        splits[rest] = ds.select(np.sort(order[n:]))
    for required in ("train", "test"):
        if required not in splits:
            raise TaskConfigError(
                f"Task '{spec.name}': no '{required}' split (have {sorted(splits)}); "
                f"name it in `files` or create it with a `derive` rule"
            )
    ordered = ["train", "test", *sorted(s for s in splits if s not in ("train", "test"))]
    return {s: splits[s] for s in ordered}
