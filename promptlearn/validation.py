"""Checking a run's configuration before anything heavy is loaded.

:func:`check_config` runs first: the type, range or choice of every option (the schema below,
one line per option), the strategy's name, and the device against what this torch build offers.
:func:`check_against_task` runs once the task's data is read (before the model is loaded): the
template's fields against the task's fields, ``eval_split`` / ``score_splits`` against the task's
splits, and K against the smallest class of the pool.  Label words are checked against the
tokenizer when the verbalizer is built, which :meth:`promptlearn.PromptModel.from_spec` does before
it loads the model's weights.

Every failure is a :class:`~promptlearn.errors.ConfigError` that names the option, what is wrong
and a value that works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ConfigError

__all__ = ["Opt", "TOP_LEVEL", "STRATEGY", "DEMONSTRATIONS", "check_config", "check_against_task"]


@dataclass(frozen=True)
class Opt:
    """One option: its type (``int``, ``float``, ``bool``, ``str``, ``list``, ``dict``), range or choices."""

    key: str
    type: type
    example: str
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False

    def check(self, value: Any, prefix: str = "") -> None:
        name = prefix + self.key
        fix = f"fix: {self.example}"
        if value is None:
            if self.nullable:
                return
            raise ConfigError(f"{name} is not set; {fix}")
        if self.choices is not None:
            if value not in self.choices:
                shown = "|".join("false" if c is False else "true" if c is True else str(c) for c in self.choices)
                raise ConfigError(f"{name}={_show(value)} is not one of {shown}; {fix}")
            return
        ok = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
              float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str),
              list: lambda v: isinstance(v, (list, tuple)), dict: lambda v: isinstance(v, Mapping)}[self.type](value)
        if not ok:
            kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
                    dict: "a mapping"}[self.type]
            raise ConfigError(f"{name}={_show(value)} is not {kind}; {fix}")
        if self.min is not None and value < self.min:
            raise ConfigError(f"{name}={_show(value)} is below its minimum {_num(self.min)}; {fix}")
        if self.max is not None and value > self.max:
            raise ConfigError(f"{name}={_show(value)} is above its maximum {_num(self.max)}; {fix}")


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


TOP_LEVEL: tuple[Opt, ...] = (
    Opt("seed", int, "seed=13", min=0),
    Opt("data_seed", int, "data_seed=13 (the few-shot sample's seed; null: seed)", min=0, nullable=True),
    Opt("unlabeled_size", int, "unlabeled_size=2000 (or null: the whole pool minus the few-shot examples)", min=1,
        nullable=True),
    Opt("limit", int, "limit=100 (the first 100 examples), or leave it out for the whole split", min=1, nullable=True),
    Opt("eval_batch_size", int, "eval_batch_size=32", min=1),
    Opt("max_length", int, "max_length=128, or leave it out for the task's", min=4, nullable=True),
    Opt("truncate", str, "truncate=tail", choices=("tail", "head")),
    Opt("calibrate", str, "calibrate=content_free (or support, or false)",
        choices=(False, "false", "none", "content_free", "support"), nullable=True),
    Opt("calibrate_size", int, "calibrate_size=200", min=1),
    Opt("threads", int, "threads=2", min=1, nullable=True),
    Opt("device", str, "device=auto (or cpu, cuda, cuda:1)"),
    Opt("mixed_precision", str, "mixed_precision=auto (or no, bf16, fp16)", choices=("auto", "no", "bf16", "fp16")),
    Opt("tensorboard", str, "tensorboard=auto (or true, false)", choices=("auto", True, False, "true", "false")),
    Opt("eval_split", str, "eval_split=test"),
    Opt("score_splits", list, "score_splits=[unlabeled,few_dev]"),
    Opt("plugins", list, "plugins=[my_module]", nullable=True),
    Opt("template", str, "template=\"{text_a} It was {mask}.\"", nullable=True),
    Opt("data_root", str, "data_root=/path/to/data", nullable=True),
    Opt("patterns_file", str, "patterns_file=my_patterns.yaml (a top-level `patterns:` list)", nullable=True),
    *(Opt(k, bool, f"{k}=true") for k in ("progress", "save_model", "materialize_prompt", "resume",
                                           "keep_checkpoint", "debug", "rerun")),
)

STRATEGY: tuple[Opt, ...] = (
    Opt("name", str, "strategy=fixed_prompt"),
    Opt("k_shot", int, "strategy.k_shot=16", min=0),
    Opt("lr", float, "strategy.lr=1e-5", min=0),
    *(Opt(k, float, f"strategy.{k}=1e-3", min=0, nullable=True) for k in ("prompt_lr", "verbalizer_lr", "adapter_lr")),
    Opt("batch_size", int, "strategy.batch_size=8", min=1),
    Opt("grad_accum", int, "strategy.grad_accum=1", min=1),
    Opt("max_steps", int, "strategy.max_steps=1000", min=1),
    Opt("eval_every", int, "strategy.eval_every=100", min=1),
    Opt("warmup_ratio", float, "strategy.warmup_ratio=0.1", min=0, max=1),
    Opt("warmup_steps", int, "strategy.warmup_steps=100", min=0, nullable=True),
    Opt("weight_decay", float, "strategy.weight_decay=0.01", min=0),
    Opt("max_grad_norm", float, "strategy.max_grad_norm=1.0 (0 turns clipping off)", min=0),
    Opt("gradient_checkpointing", bool, "strategy.gradient_checkpointing=true"),
    Opt("lm_eval_mode", bool, "strategy.lm_eval_mode=true"),
    Opt("trains", list, "strategy.trains=[prompt,verbalizer]", nullable=True),
    Opt("soft_prefix", int, "strategy.soft_prefix=4", min=0),
    Opt("prompt_encoder", dict, "strategy.prompt_encoder.type=lstm", nullable=True),
    Opt("mlm_weight", float, "strategy.mlm_weight=1e-4 (the fraction of the loss that is MLM)", min=0, max=1),
    Opt("mlm_batch_size", int, "strategy.mlm_batch_size=8", min=1),
    Opt("mlm_pool_size", int, "strategy.mlm_pool_size=2000 (or null: the whole pool)", min=1, nullable=True),
    Opt("mlm_probability", float, "strategy.mlm_probability=0.15", min=0.01, max=1),
    Opt("temperature", float, "strategy.temperature=2", min=1e-3),
    Opt("pseudo_labels", str, "strategy.pseudo_labels=<file.npz> (idx, label: extra training rows; iPET)",
        nullable=True),
    Opt("soft_labels", str, "strategy.soft_labels=<run>/soft_labels.npz (written by method=pet)", nullable=True),
    Opt("adapter", dict, "strategy.adapter.type=lora (or bitfit)", nullable=True),
)

DEMONSTRATIONS: tuple[Opt, ...] = (
    Opt("enabled", bool, "demonstrations=lm_bff (or demonstrations=none)"),
    Opt("per_class", int, "demonstrations.per_class=1", min=1),
    Opt("filter", str, "demonstrations.filter=tfidf", choices=("none", "tfidf")),
    Opt("top_fraction", float, "demonstrations.top_fraction=0.5", min=0.01, max=1),
    Opt("num_sets", int, "demonstrations.num_sets=16", min=1),
    Opt("dev_sets", int, "demonstrations.dev_sets=4", min=1, nullable=True),
    Opt("k_shot", int, "demonstrations.k_shot=16", min=1),
)

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_config(c: Mapping[str, Any]) -> Any:
    """Types, ranges and choices of every known option, the strategy, and the device; raises ConfigError.

    Returns the strategy the config names (built once here)."""
    for opt in TOP_LEVEL:
        if opt.key in c and not (opt.key == "plugins" and isinstance(c[opt.key], str)):  # one module as a string
            opt.check(c[opt.key])
    key = c.get("pattern")
    if key is not None and (isinstance(key, bool) or not isinstance(key, (int, str)) or
                            (isinstance(key, int) and key < 0)):
        raise ConfigError(f"pattern={key!r} is neither an index (0, 1, ...) nor a name; fix: pattern=0 or "
                          "pattern=<name> (the task YAML's `patterns:` list), or leave it out for the task's template")
    from .methods import check_method

    check_method(c.get("method"))  # method=single|pet|ipet and its options
    strategy = c.get("strategy") or {}
    if strategy.get("amp") is not None:
        raise ConfigError(f"strategy.amp={_show(strategy['amp'])}: mixed precision is now the top-level option "
                          "mixed_precision=auto|no|bf16|fp16 (through accelerate); fix: mixed_precision=bf16 (or drop "
                          "strategy.amp: auto is the default)")
    for opt in STRATEGY:
        if opt.key in strategy:
            opt.check(strategy[opt.key], "strategy.")
    demos = c.get("demonstrations") or {}
    for opt in DEMONSTRATIONS:
        if opt.key in demos:
            opt.check(demos[opt.key], "demonstrations.")
    if demos.get("enabled"):
        from .calibration import requested
        from .verbalizers import get_verbalizer_class

        if requested(c.get("calibrate")):
            raise ConfigError(f"calibrate={c.get('calibrate')} with demonstrations: the calibration inputs have no "
                              "demonstrations, so their prior would not match the scored inputs; fix: calibrate=false "
                              "(or demonstrations=none)")
        vtype = (c.get("verbalizer") or {}).get("type") if isinstance(c.get("verbalizer"), Mapping) else None
        if get_verbalizer_class(vtype).needs_support:
            raise ConfigError(f"verbalizer {vtype!r} refines itself on support examples, which have no "
                              "demonstrations; fix: demonstrations=none, or another verbalizer")
    _check_device(str(c.get("device", "auto")))
    precision = _check_precision(str(c.get("device", "auto")), c.get("mixed_precision", "auto"))
    if c.get("tensorboard") in (True, "true"):
        from .trainer import tensorboard_available

        if not tensorboard_available():
            raise ConfigError("tensorboard=true but the tensorboard package is not installed; fix: pip install "
                              "tensorboard (or pip install -e \".[tensorboard]\"), or tensorboard=false")
    model = c.get("model") or {}
    if not model.get("name_or_path"):
        raise ConfigError("model.name_or_path is not set; fix: model.name_or_path=/path/to/model (a local directory) "
                          "or a Hub id such as roberta-large")
    from .backbone import check_model_source

    check_model_source(str(model["name_or_path"]))  # a missing/empty directory or an unreachable Hub, at once
    from .strategies import get_strategy

    s = get_strategy(strategy)  # an unknown name is a ConfigError listing the registered ones
    if s.cfg.get("adapter"):  # an unknown adapter type or option, a wrong value: one line before anything loads
        from .adapters import build_adapter

        build_adapter(s.cfg["adapter"])
    if s.needs_training and s.k_shot < 1:
        raise ConfigError(f"strategy.k_shot={s.k_shot}: strategy {s.name!r} trains on K examples per class; "
                          "fix: strategy.k_shot=16")
    _check_processes(c, s)
    if s.needs_training:
        precision()
    return s


def _check_processes(c: Mapping[str, Any], s: Any) -> None:
    """What a run under ``accelerate launch`` / ``torchrun`` with N > 1 processes cannot do, before anything loads."""
    from .distributed import launched_processes

    n = launched_processes()
    if n <= 1:
        return
    method = c.get("method") or "single"
    method = method.get("name", "single") if isinstance(method, Mapping) else str(method)
    if method != "single":
        raise ConfigError(f"method={method} under a launcher with {n} processes: PET/iPET run their pattern models "
                          "one after another in one process; fix: run it without the launcher (python -m "
                          "promptlearn.run ...), or launch each pattern's run (pattern=<i>) on its own")
    if not s.needs_training:
        return
    batch = int(s.cfg.get("batch_size", 8))
    if batch % n:
        raise ConfigError(f"strategy.batch_size={batch} with {n} processes: the batch size is the global batch, split "
                          f"evenly over the processes; fix: strategy.batch_size={n * max(1, batch // n)}")
    if s.mlm_weight > 0:
        raise ConfigError(f"strategy.mlm_weight={s.mlm_weight} with {n} processes: the auxiliary MLM loss runs the "
                          "LM outside the DDP wrapper; fix: run it in one process, or strategy.mlm_weight=0")


def _check_device(device: str) -> None:
    if not _DEVICE.match(device):
        raise ConfigError(f"device={device!r} is not a device; fix: device=auto (or cpu, cuda, cuda:1)")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no visible GPU"
            raise ConfigError(f"device={device}: this torch ({torch.__version__}, {build}) has no CUDA device; "
                              "fix: device=auto or device=cpu (or install a CUDA build of torch on a GPU machine)")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device={device}: only {torch.cuda.device_count()} CUDA device(s) are visible; "
                              "fix: device=cuda:0")


def _check_precision(device: str, mixed_precision: Any) -> Any:
    """The precision the run will train in (``auto`` and the launcher resolved) against the device and against
    what this Python process already set up (accelerate keeps one per process; returned as a check to run when the
    strategy trains)."""
    import torch

    from .distributed import check_process_precision, resolve_mixed_precision

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)
    mp = resolve_mixed_precision(mixed_precision, dev)
    if mp == "fp16" and dev.type == "cpu":
        source = "the launcher" if mixed_precision == "auto" else "the config"
        raise ConfigError(f"mixed_precision=fp16 on CPU (from {source}): fp16 training needs a GPU's loss scaling; "
                          "fix: mixed_precision=bf16 (CPU autocast) or mixed_precision=no")
    if mp == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("mixed_precision=bf16: this GPU has no bf16 support; fix: mixed_precision=fp16 (or auto)")
    return lambda: check_process_precision(mp, dev)


def check_against_task(c: Mapping[str, Any], task: Any, strategy: Any, template_text: str) -> None:
    """The options that depend on the task: template fields, splits, K (no model needed)."""
    from .pipeline import DERIVED_SPLITS
    from .template import iter_fields

    fields = list(task.fields) if getattr(task, "fields", None) else []
    used = list(dict.fromkeys(iter_fields(template_text)))
    unknown = [f for f in used if fields and f not in fields]
    if unknown:
        pos = template_text.find("{" + unknown[0])
        raise ConfigError(f"template {template_text!r}: field {{{unknown[0]}}} (at position {pos}) is not a field of "
                          f"task {task.name!r}, which has {fields}; fix: use one of those, e.g. {{{fields[0]}}}, or "
                          f"map a column to {unknown[0]!r} in the task's `fields`")
    split = c.get("eval_split", "test")
    if split not in task.splits:
        raise ConfigError(f"eval_split={split!r} is not a split of task {task.name!r}, which has "
                          f"{sorted(task.splits)}; fix: eval_split=test")
    for name in c.get("score_splits") or []:
        if name not in task.splits and name not in DERIVED_SPLITS:
            raise ConfigError(f"score_splits: {name!r} is not a split of task {task.name!r} ({sorted(task.splits)}) "
                              f"nor a derived split ({list(DERIVED_SPLITS)}); fix: score_splits=[unlabeled]")
        if name in ("few_train", "few_dev") and strategy.k_shot < 1:
            raise ConfigError(f"score_splits: {name!r} needs a few-shot sample, and strategy {strategy.name!r} takes "
                              "none (k_shot=0); fix: drop it, or use a strategy with strategy.k_shot > 0")
    from .calibration import requested
    from .spec import spec_from_config
    from .verbalizers import get_verbalizer_class

    spec = spec_from_config(c, task, strategy)
    if spec.verbalizer is not None:  # an unknown type or option: one line before any model loads
        vcls = get_verbalizer_class(spec.verbalizer.get("type"))
        if vcls.OPTIONS is not None:  # declared (every shipped type; a plugin's may not declare them)
            vcls.options(spec.verbalizer)
    if spec.verbalizer is None and (c.get("demonstrations") or {}).get("enabled"):
        raise ConfigError(f"demonstrations with strategy {strategy.name!r}: it builds a classifier without label "
                          "words to write into the demonstrations; fix: demonstrations=none, or a prompt-based "
                          "strategy (fixed_prompt, prompt_lm, ...)")
    if requested(c.get("calibrate")):
        if spec.verbalizer is None:
            raise ConfigError(f"calibrate={c['calibrate']}: strategy {strategy.name!r} builds a model without a "
                              "verbalizer, so there is no label-word prior to calibrate; fix: calibrate=false")
    k = strategy.k_shot
    _check_split_batch(strategy, k * len(task.labels))
    if k > 0:
        pool = task.splits["train"]
        counts = _class_counts(pool)
        small = {c: n for c, n in counts.items() if n < k}
        if small:
            name, n = min(small.items(), key=lambda x: x[1])
            raise ConfigError(f"strategy.k_shot={k}: class {name!r} has only {n} examples in the pool of task "
                              f"{task.name!r}; fix: strategy.k_shot={max(1, n)}")


def _check_split_batch(strategy: Any, train_rows: int) -> None:
    """Under a launcher: the batch the trainer draws (the batch size, capped at the K x classes training rows) must
    split evenly over the processes."""
    from .distributed import launched_processes

    n = launched_processes()
    if n <= 1 or not strategy.needs_training or train_rows <= 0:
        return
    batch = min(int(strategy.cfg.get("batch_size", 8)), train_rows)
    if batch % n == 0:
        return
    if train_rows < n:
        raise ConfigError(f"strategy.k_shot={strategy.k_shot}: {train_rows} training rows cannot be split over {n} "
                          f"processes; fix: launch at most {train_rows} processes, or a larger strategy.k_shot")
    raise ConfigError(f"strategy.batch_size={strategy.cfg.get('batch_size')} with {n} processes: the global batch "
                      f"({batch} rows: the batch size, at most the {train_rows} training rows) must split evenly over the "
                      f"processes; fix: strategy.batch_size={n * (batch // n)}")


def _class_counts(ds: Any) -> dict[str, int]:
    from collections import Counter

    names = getattr(ds.features["label"], "names", None)
    counts = Counter(ds["label"][:])
    if names:
        return {n: counts.get(i, 0) for i, n in enumerate(names)}
    return {str(k): v for k, v in counts.items()}

