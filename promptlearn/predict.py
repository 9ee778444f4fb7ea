"""Predict with saved prompt models: one JSONL file in, labels and probabilities out; tasks may be mixed.

    python -m promptlearn.predict --model sst2=runs/sst2/model --model trec=runs/trec/model \\
        --input rows.jsonl --output predictions.jsonl

Each input line is a JSON object with a ``task`` column (``--task-column``; optional when one model is given)
and the fields its task's template reads (``{"task": "sst2", "text_a": "A gorgeous film."}``).  All models are
served by one :class:`~promptlearn.multitask.MultiTaskModel` over their shared frozen base LM (loaded once):
mixed-task, length-sorted batches through the one batcher and inference loop.  Each output line is
``{"line": n, "task": ..., "label": ..., "probs": {class: p}}`` (plus the input's ``id`` if it has one), in
input order.  A line that cannot be scored (not JSON, unknown task, a missing field) gets
``{"line": n, "task": ..., "error": "line n: ...; fix: ..."}`` instead and the other lines are still scored;
the errors are counted on stderr and the exit code is 1.  Models that cannot be loaded together (different base
LMs, a model that trained its LM) exit with code 2 and one message.  ``--models models.yaml`` reads
``task: directory`` lines.  ``--model DIR`` (no ``TASK=``) serves a model under the task of the run that saved
it (``results.json`` beside a CLI run's ``model/``), else under its template's name.

One model that cannot share a frozen LM (it trained its LM, as ``fixed_prompt`` / ``finetune``; it carries a
LoRA / BitFit adapter; it scores exact multi-token words or with demonstrations) is served on its own, through
its own ``predict`` (the same batcher and inference loop), with the same per-line checks and output lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError, PromptlearnError

__all__ = ["main", "read_jsonl", "parse_models"]


def parse_models(pairs: Sequence[str], yaml_file: str | None = None) -> dict[str, str]:
    """``["sst2=DIR", ...]`` (and a YAML ``task: dir`` mapping) -> ``{task: dir}``; errors name the argument."""
    models: dict[str, str] = {}
    if yaml_file:
        import yaml

        path = Path(yaml_file)
        if not path.is_file():
            raise ConfigError(f"--models {yaml_file}: no such file; fix: a YAML file of 'task: model directory' lines")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigError(f"--models {yaml_file}: expected a mapping 'task: model directory', got "
                              f"{type(data).__name__}; fix: write lines like 'sst2: runs/sst2/model'")
        base = path.parent
        models.update({str(k): str(v if Path(v).is_absolute() else base / v) for k, v in data.items()})
    for pair in pairs:
        if Path(pair).is_dir():  # a run folder's name holds '=' (task=sst2,seed=13): the whole argument is a directory
            name, directory = _task_of(pair), pair
        else:
            name, sep, directory = pair.partition("=")
            if not sep or not name or not directory or "/" in name or "\\" in name or not Path(directory).is_dir():
                raise ConfigError(f"--model {pair!r}: no such directory"
                                  + (f" (nor {directory!r})" if sep and directory else "")
                                  + "; fix: --model TASK=DIRECTORY or --model DIRECTORY, with the directory of a "
                                  "saved model (e.g. outputs/.../model)")
        if name in models:
            raise ConfigError(f"--model {pair!r}: task {name!r} is given twice; fix: one directory per task")
        models[name] = directory
    if not models:
        raise ConfigError("no model given; fix: --model TASK=DIRECTORY (repeatable) or --models models.yaml")
    return models


def _task_of(directory: str) -> str:
    """The task a saved model serves, for ``--model DIR``: the task of the run that saved it (the CLI writes
    ``<run dir>/model`` beside ``<run dir>/results.json``), else the name its template records."""
    from .serialization import read_config

    try:
        spec = read_config(directory)["spec"]
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"--model {directory}: {exc}; fix: point it at a directory written by save_model=true or "
                          "save_pretrained()") from exc
    d = Path(directory).resolve()
    results = d.parent / "results.json"
    name = None
    if results.is_file():
        try:
            run = json.loads(results.read_text())
            saved = (run.get("saved_model") or {}).get("path")
            if saved and Path(saved).resolve() == d:
                name = run.get("task")
        except (ValueError, OSError, AttributeError):
            name = None
    name = name or (spec.template or {}).get("name")
    if not name or not isinstance(name, str) or "." in name or "=" in name:
        raise ConfigError(f"--model {directory}: no task name recorded with it (template name {name!r}); fix: "
                          f"--model TASK={directory}")
    return name


def load_one(name: str, directory: str, base_model: str | None = None) -> Any:
    """One saved model for ``name``: on the shared-LM path when it can be (a one-task MultiTaskModel, as several
    models are served), else on its own (:class:`OwnModel`); the LM is loaded once either way, and its weights are
    checked against the fingerprint the artifact recorded."""
    from .multitask import MultiTaskModel, NotShareable, check_fingerprints
    from .serialization import load_prompt_model, read_config

    try:
        cfg = read_config(directory)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"task {name!r}: {exc}; fix: point it at a directory written by save_model=true "
                          "or save_pretrained()") from exc
    model = load_prompt_model(directory, base_model=base_model)
    check_fingerprints(model.mlm, {name: cfg.get("lm_fingerprint")}, base_model or cfg["spec"].base_model)
    try:
        return MultiTaskModel({name: model})
    except NotShareable:
        return OwnModel(name, model)


class OwnModel:
    """One saved model served on its own LM (see the module's docstring); ``predict`` as MultiTaskModel's."""

    def __init__(self, name: str, model: Any):
        self.name, self.model = name, model

    def to(self, device: Any) -> "OwnModel":
        self.model.to(device)
        return self

    def eval(self) -> "OwnModel":
        self.model.eval()
        return self

    def predict(self, rows: Sequence[Any], batch_size: int = 32, task_key: str = "task", errors: str = "raise",
                progress: bool = False, where: Any = None) -> list[dict[str, Any]]:
        from .multitask import RowError, row_problem
        from .serialization import predict

        if errors not in ("raise", "record"):
            raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
        where = where or (lambda i: f"input row {i}")
        demos = getattr(self.model, "demonstrations", None)
        fields = list(demos.fields) if demos is not None else list(self.model.template.fields)
        results: list[dict[str, Any]] = [{} for _ in rows]
        good: list[int] = []
        for i, row in enumerate(rows):
            task, problem = row_problem(row, task_key, [self.name], lambda _: fields,
                                        lambda _: self.model.template.text)
            if problem is None:
                good.append(i)
            elif errors == "raise":
                raise RowError(f"{where(i)}: {problem}")
            else:
                results[i] = {"task": task, "error": f"{where(i)}: {problem}"}
        if good:
            scored = predict(self.model, [{f: rows[i][f] for f in fields} for i in good], batch_size=batch_size,
                             progress=progress)
            for i, r in zip(good, scored):
                results[i] = {"task": self.name, **r}
        return results


def read_jsonl(path: str) -> tuple[list[Any], list[int], dict[int, str]]:
    """Rows, their 1-based line numbers and ``{row index: error}`` for lines that are not JSON (blank lines skipped)."""
    rows: list[Any] = []
    lines: list[int] = []
    bad: dict[int, str] = {}
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        for n, text in enumerate(stream, 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                bad[len(rows)] = (f"line {n}: not valid JSON ({exc.msg} at column {exc.colno}); fix: one JSON object "
                                  "per line")
                row = None
            rows.append(row)
            lines.append(n)
    return rows, lines, bad


def main(argv: Sequence[str] | None = None) -> int:
    from .distributed import single_process_entry

    single_process_entry("promptlearn.predict")
    ap = argparse.ArgumentParser(prog="python -m promptlearn.predict", description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=[], metavar="TASK=DIR",
                    help="a saved model (save_model=true / save_pretrained) serving task TASK; repeatable; DIR "
                         "alone: the task of the run that saved it")
    ap.add_argument("--models", metavar="YAML", help="a YAML file of 'task: model directory' lines")
    ap.add_argument("--input", required=True, help="JSONL input ('-': stdin)")
    ap.add_argument("--output", required=True, help="JSONL output ('-': stdout)")
    ap.add_argument("--task-column", default="task", help="the input field naming each row's task (default: task)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--base-model", help="load this base LM instead of the one the models record")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        import torch

        from .multitask import MultiTaskModel

        if args.batch_size < 1:
            raise ConfigError(f"--batch-size {args.batch_size} is below its minimum 1; fix: --batch-size 32")
        models = parse_models(args.model, args.models)
        if args.input != "-" and not Path(args.input).is_file():
            raise ConfigError(f"--input {args.input}: no such file; fix: a JSONL file with one object per line")
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: this torch has no CUDA device; fix: --device cpu")
        rows, lines, bad_json = read_jsonl(args.input)
        if len(models) == 1:  # on the shared-LM path if it can be, else on its own
            (name, directory), = models.items()
            multi: Any = load_one(name, directory, base_model=args.base_model)
        else:
            multi = MultiTaskModel.from_pretrained(models, base_model=args.base_model)
        multi = multi.to(device).eval()
    except PromptlearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    good = [i for i in range(len(rows)) if i not in bad_json]
    scored = multi.predict([rows[i] for i in good], batch_size=args.batch_size, task_key=args.task_column,
                           errors="record", progress=not args.no_progress, where=lambda j: f"line {lines[good[j]]}")
    results: list[dict[str, Any]] = [{} for _ in rows]
    for i, msg in bad_json.items():
        results[i] = {"task": None, "error": msg}
    for i, r in zip(good, scored):
        results[i] = r
    n_errors = 0
    out = sys.stdout if args.output == "-" else None
    tmp = None
    if out is None:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.output).with_name(Path(args.output).name + ".tmp")
        out = open(tmp, "w", encoding="utf-8")
    with out if tmp is not None else _noclose(out):
        for i, r in enumerate(results):
            record = {"line": lines[i]}
            if isinstance(rows[i], dict) and "id" in rows[i]:
                record["id"] = rows[i]["id"]
            record.update(r)
            n_errors += "error" in r
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    if tmp is not None:
        tmp.replace(args.output)  # written atomically
    counts: dict[str, int] = {}
    for r in results:
        if "error" not in r:
            counts[r["task"]] = counts.get(r["task"], 0) + 1
    print(f"predicted {len(results) - n_errors} of {len(results)} rows ({', '.join(f'{t}: {c}' for t, c in counts.items())})"
          f" -> {args.output}", file=sys.stderr)
    if n_errors:
        print(f"{n_errors} row(s) have errors (their 'error' field in {args.output}); the first: "
              f"{next(r['error'] for r in results if 'error' in r)}", file=sys.stderr)
        return 1
    return 0


class _noclose:
    def __init__(self, stream: Any):
        self.stream = stream

    def __enter__(self) -> Any:
        return self.stream

    def __exit__(self, *exc: Any) -> None:
        self.stream.flush()


if __name__ == "__main__":
    raise SystemExit(main())
