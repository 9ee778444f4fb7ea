"""Automatic template search: ``python -m promptlearn.search`` (AutoPrompt triggers, LM-BFF's T5 generation).

    python -m promptlearn.search +task=sst2 model.name_or_path=../shared/models/mini-mlm search.method=autoprompt seed=13
    python -m promptlearn.search +task=sst2 model.name_or_path=roberta-large search.method=t5 search.generator=t5-3b

The few-shot split is exactly the one ``python -m promptlearn.run`` samples for the same task, seed and
``strategy.k_shot`` (``search.k_shot``, 16, when the strategy trains nothing), and the masked LM and the
verbalizer are built from the same config; the verbalizer's label words stay fixed.  The method
(``search.method``, a registry: :mod:`promptlearn.template_search`) proposes templates; each is parsed with
promptlearn's Template (invalid ones are dropped) and scored zero-shot on the few-shot train and dev sets
through the pipeline's ``score`` stage; they are ranked by the task's dev metric (ties: lower train loss).
The test split is never read.  The command writes, in the run directory (or ``search.config_dir``):

* ``patterns.yaml`` -- the ``search.num_patterns`` best, in the shared pattern-list format (``patterns:``
  entries with ``name``, ``template``, ``source``, ``scores``), for ``patterns_file=...`` (PET's pattern list);
* ``task/<task>_<search.name>.yaml`` -- the task config with the best template as its ``template`` and the
  list as its ``patterns``, for ``--config-dir <dir> +task=<task>_<search.name>``;
* ``search.json`` (everything, with the method's history) and ``search.md`` (the ranked table),

and prints the follow-up commands, the first of them the plain ``template="..."`` override.  The ``search.*``
options (conf/search.yaml) are checked like the run's before anything loads: one line naming the fix, exit 2.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from .errors import ConfigError, PromptlearnError
from .validation import Opt

__all__ = ["search_templates", "run_search", "check_search_options", "write_patterns", "COMMON_OPTIONS"]

log = logging.getLogger("promptlearn")

COMMON_OPTIONS: tuple[Opt, ...] = (
    Opt("method", str, "search.method=autoprompt (or t5)"),
    Opt("k_shot", int, "search.k_shot=16", min=1),
    Opt("num_patterns", int, "search.num_patterns=5", min=1),
    Opt("config_dir", str, "search.config_dir=my_conf (or leave it out for the run directory)", nullable=True),
    Opt("name", str, "search.name=searched"),
)


def check_search_options(opts: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """The ``search.*`` options over their defaults (conf/search.yaml, also for Python callers), each checked;
    returns ``(options, method)`` -- the method built from them (an unknown method or key: ConfigError)."""
    import yaml

    from .run import CONF_DIR
    from .template_search import SEARCH_METHODS, get_search_method

    defaults = yaml.safe_load((Path(CONF_DIR) / "search.yaml").read_text())["search"]
    out = {**defaults, **dict(opts)}
    COMMON_OPTIONS[0].check(out["method"], prefix="search.")
    cls = get_search_method(out["method"])
    known = {o.key: o for o in COMMON_OPTIONS}
    every = {o.key for m in SEARCH_METHODS.values() for o in m.OPTIONS}
    own = {o.key for o in cls.OPTIONS}
    for key in opts:
        # another method's option at its default is the composed config's, not the user's: ignored
        if key not in known and key not in own and not (key in every and opts[key] == defaults.get(key)):
            other = " (an option of another method)" if key in every else ""
            raise ConfigError(f"search.{key} is not an option of search.method={out['method']}{other}; fix: one of "
                              + ", ".join(f"search.{k}" for k in [*known, *(o.key for o in cls.OPTIONS)]))
    for o in (*COMMON_OPTIONS, *cls.OPTIONS):
        o.check(out.get(o.key), prefix="search.")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", out["name"]):
        raise ConfigError(f"search.name={out['name']!r} is not a plain file name; fix: search.name=searched")
    return out, cls({k: out.get(k) for k in (o.key for o in cls.OPTIONS)})


def search_templates(model: Any, task: Any, few: Any, method: Any, device: torch.device | str = "cpu",
                     seed: int = 42, batch_size: int = 32) -> dict[str, Any]:
    """The Python API: ``method`` (a :class:`~promptlearn.template_search.TemplateSearch`, e.g.
    ``AutoPrompt({...options})``, already ``check``-ed against ``task``) on ``few`` with ``model`` (a
    PromptModel with a hard template: the masked LM and the verbalizer), then every proposal scored and
    ranked.  Returns ``{"templates": [...ranked rows], "rejected": [...], "history": ..., "seconds": ...}``."""
    from .template_search import SearchContext, score_templates
    from .template_search.base import rank_key

    if getattr(model, "soft_prompt", None) is not None or model.template.has_soft_tokens:
        raise ConfigError(f"template search scores hard templates with the LM, but {model.template.text!r} with "
                          "this strategy adds soft tokens or deep prompts (untrained here); fix: "
                          "strategy=tuning_free")
    device = torch.device(device)
    ctx = SearchContext(model=model, task=task, few=few, device=device, seed=seed, batch_size=batch_size,
                        metric=task.metric)
    t0 = time.perf_counter()
    found = method.search(ctx)
    t_search = time.perf_counter() - t0
    scored, rejected = score_templates(ctx, [f["template"] for f in found])
    first = {}
    for f in found:
        first.setdefault(f["template"], f)
    rows = []
    for s in scored:
        f = first[s["template"]]
        extra = {k: v for k, v in f.items() if k not in ("template", "source", "scores")}
        rows.append({"template": s["template"], "source": f["source"], "scores": {**f.get("scores", {}), **s["scores"]},
                     **extra})
    rows.sort(key=rank_key(task.metric))
    if not rows:
        raise ConfigError(f"search.method={method.name}: none of the {len(found)} proposed templates is valid "
                          f"(first refusal: {rejected[0]['error'] if rejected else 'none proposed'}); fix: other "
                          "search.* options")
    return {"templates": rows, "rejected": rejected, "history": getattr(method, "history", None),
            "method": method.name, "options": method.options, "search_seconds": round(t_search, 2),
            "seconds": round(time.perf_counter() - t0, 2)}


def _pattern_entries(rows: list[dict[str, Any]], prefix: str, verbalizer: Mapping[str, Any] | None) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        e: dict[str, Any] = {"name": f"{prefix}-{i}", "template": r["template"]}
        if verbalizer:
            e["verbalizer"] = dict(verbalizer)
        e["source"] = r["source"]
        e["scores"] = {k: round(float(v), 6) for k, v in r["scores"].items()}
        out.append(e)
    return out


def write_patterns(path: Path, rows: list[dict[str, Any]], prefix: str, note: str = "",
                   verbalizer: Mapping[str, Any] | None = None) -> Path:
    """``patterns.yaml`` in the shared format: ``patterns:`` entries ``name``, ``template`` (and ``verbalizer``
    when it is not the task's), ``source``, ``scores``; best first."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump({"patterns": _pattern_entries(rows, prefix, verbalizer)}, sort_keys=False,
                          allow_unicode=True, width=1000)
    path.write_text((f"# {note}\n" if note else "") + body)
    return path


def write_task(path: Path, task_cfg: Mapping[str, Any], rows: list[dict[str, Any]], prefix: str,
               note: str = "", verbalizer: Mapping[str, Any] | None = None) -> Path:
    """The task config with the best template as ``template`` and the list as ``patterns`` (``+task=<stem>``)."""
    import yaml

    cfg = dict(task_cfg)
    cfg["template"] = rows[0]["template"]
    if verbalizer:
        cfg["verbalizer"] = dict(verbalizer)
    cfg["patterns"] = [{k: e[k] for k in ("name", "template", "verbalizer") if k in e}
                       for e in _pattern_entries(rows, prefix, verbalizer)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# @package task\n" + (f"# {note}\n" if note else "")
                    + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, width=1000))
    return path


def _override(key: str, value: str) -> str:
    """A shell-safe Hydra override ``key="value"`` (quotes and backslashes escaped for Hydra, then the shell)."""
    import shlex

    inner = value.replace("\\", "\\\\").replace('"', '\\"')
    return shlex.quote(f'{key}="{inner}"')


def run_search(cfg: Mapping[str, Any], output_dir: Path) -> dict[str, Any]:
    """The command: the run's task, few-shot split and model, the method, then the files (see the module doc)."""
    from . import pipeline
    from .run import _checked, resolve_device, set_seed

    c = dict(cfg)
    opts, method = check_search_options(c.pop("search", None) or {})
    strategy, task = _checked(c)  # the run's options, the task's data, the config against the task
    method.check(task)  # the method's options against the task (and the generator's path), before the LM loads
    seed = int(c.get("seed", 42))
    set_seed(seed)
    if c.get("threads"):
        torch.set_num_threads(int(c["threads"]))
    k = strategy.k_shot or opts["k_shot"]
    few = pipeline.sample(task, k, seed)
    device = resolve_device(c.get("device"))
    model = pipeline.build(c, task, strategy).to(device)
    res = search_templates(model, task, few, method, device, seed=seed, batch_size=int(c.get("eval_batch_size", 32)))
    rows = res["templates"][:opts["num_patterns"]]
    res.update(task=task.name, seed=seed, k_shot=k, few_shot_checksum=few.checksum,
               model=(c.get("model") or {}).get("name_or_path"))
    words = model.verbalizer.label_words
    task_words = {cl: ([w] if isinstance(w, str) else list(w)) for cl, w in task.verbalizer.items()}
    verbalizer = None if {cl: list(w) for cl, w in words.items()} == task_words else \
        {cl: (w[0] if len(w) == 1 else list(w)) for cl, w in words.items()}
    config_dir = Path(opts.get("config_dir") or output_dir)
    metric = task.metric
    note = (f"searched by promptlearn.search (method {method.name}): task {task.name}, K={k}, seed {seed} "
            f"(split {few.checksum[:8]}), model {res['model']}; ranked by few-shot dev {metric}")
    prefix = f"{opts['name']}-{task.name}-{method.name}-seed{seed}"
    patterns = write_patterns(config_dir / "patterns.yaml", rows, prefix, note, verbalizer)
    task_name = f"{task.name}_{opts['name']}"
    task_yaml = write_task(config_dir / "task" / f"{task_name}.yaml", c["task"], rows, prefix, note, verbalizer)
    res.update(patterns_yaml=str(patterns), task_yaml=str(task_yaml))
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "search.json").write_text(json.dumps(res, indent=2, default=str))
    lines = [f"| rank | template | few-shot dev {metric} | few-shot train acc | train loss | source |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {i} | `{r['template']}` | {r['scores'][f'dev_{metric}']:.3f} | {r['scores']['train_accuracy']:.3f} "
              f"| {r['scores']['train_loss']:.4f} | {r['source']} |" for i, r in enumerate(res["templates"][:20])]
    (output_dir / "search.md").write_text("\n".join(lines) + "\n")
    best = rows[0]
    mdl = res["model"]
    print(f"\nbest template ({method.name}, few-shot dev {metric} {best['scores'][f'dev_{metric}'] * 100:.2f}, "
          f"train loss {best['scores']['train_loss']:.4f}, {res['seconds']:.1f}s): {best['template']}")
    print(f"wrote {patterns} ({len(rows)} templates, best first) and {task_yaml}")
    print(f"use it:  python -m promptlearn.run +task={task.name} model.name_or_path={mdl} "
          f"{_override('template', best['template'])} ...")
    print(f"    or:  python -m promptlearn.run --config-dir {config_dir} +task={task_name} model.name_or_path={mdl} ...")
    print(f"   PET:  python -m promptlearn.run +task={task.name} model.name_or_path={mdl} patterns_file={patterns} ...")
    return res


def main() -> None:
    """``python -m promptlearn.search`` (Hydra: the run's config plus ``search.*``)."""
    from .distributed import single_process_entry

    single_process_entry("promptlearn.search")
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from .run import CONF_DIR, _plain, register_resolvers

    register_resolvers()

    @hydra.main(config_path=str(CONF_DIR), config_name="search", version_base="1.3")
    def _main(cfg: DictConfig) -> None:
        c = _plain(cfg)
        try:
            run_search(c, Path(HydraConfig.get().runtime.output_dir))
        except PromptlearnError as exc:
            if c.get("debug") or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    _main()


if __name__ == "__main__":
    main()
