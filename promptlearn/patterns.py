"""Pattern-verbalizer pairs (PET's PVPs) as data: parse, validate and select them.

A task YAML may list, besides its default ``template``/``verbalizer``::

    patterns:
      - name: pet-yelp-0                       # unique within the task; selectable by name or index
        template: "It was {mask}. {text_a|shortenable}"
        verbalizer: {negative: bad, positive: good}   # optional: omitted -> the task's verbalizer

``pattern=<index|name>`` picks one for a run (its template and label words become the task's defaults);
``pattern=null`` (the default) keeps the task's ``template``/``verbalizer``, so every number recorded
without it is unchanged.  ``patterns_file=<path.yaml>`` reads a file with the same top-level ``patterns:``
list (what the template search writes; extra per-entry keys such as ``source`` or ``scores`` are
ignored) and uses it instead of the task's list.  PET and iPET (:mod:`promptlearn.methods`) train one
model per pattern.

Every failure is a :class:`~promptlearn.errors.ConfigError` naming the entry (its index), what is wrong
and the fix, raised before any model is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import ConfigError

__all__ = ["Pattern", "parse_patterns", "load_patterns_file", "task_patterns", "select_pattern", "apply_pattern",
           "PATTERN_KEYS"]

#: the keys a run reads from an entry; others (``source``, ``scores``, ...) are allowed and ignored
PATTERN_KEYS = ("name", "template", "verbalizer")


@dataclass(frozen=True)
class Pattern:
    """One pattern-verbalizer pair; ``verbalizer`` is None where the task's label words apply."""

    name: str
    template: str
    verbalizer: dict[str, list[str]] | None = None
    index: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_patterns(entries: Any, labels: Sequence[str], where: str) -> list[Pattern]:
    """Check a ``patterns:`` list against the task's ``labels``; ``where`` names its source in errors."""
    from .template import TemplateError, parse
    from .verbalizers import VerbalizerError
    from .verbalizers.manual import check_label_words

    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"{where}: `patterns` must be a list of {{name, template, verbalizer}} entries, got "
                          f"{type(entries).__name__}; fix: patterns: [{{name: p0, template: \"... {{mask}}.\"}}]")
    out: list[Pattern] = []
    seen: dict[str, int] = {}
    for i, e in enumerate(entries):
        at = f"{where}: patterns[{i}]"
        if not isinstance(e, Mapping):
            raise ConfigError(f"{at} is {e!r}, not a mapping; fix: {{name: p{i}, template: \"... {{mask}}.\"}}")
        name, template = e.get("name"), e.get("template")
        if not isinstance(name, str) or not name.strip() or name.strip().isdigit():
            raise ConfigError(f"{at}: `name` must be a non-empty string that is not a number (numbers select by "
                              f"index), got {name!r}; fix: name: p{i}")
        name = name.strip()
        if name in seen:
            raise ConfigError(f"{at}: name {name!r} is also the name of patterns[{seen[name]}]; fix: give each "
                              "pattern its own name")
        seen[name] = i
        if not isinstance(template, str) or not template.strip():
            raise ConfigError(f"{at} ({name}): `template` must be a template string, got {template!r}; fix: "
                              "template: \"{text_a|shortenable} It was {mask}.\"")
        try:
            parse(template, name=name)  # syntax and exactly one {mask}, before anything loads
        except TemplateError as exc:
            raise ConfigError(f"{at} ({name}): {exc}") from None
        words = e.get("verbalizer")
        if words is not None:
            if not isinstance(words, Mapping):
                raise ConfigError(f"{at} ({name}): `verbalizer` must map each class to its label word(s), got "
                                  f"{words!r}; fix: verbalizer: {{{labels[0]}: word, ...}} (or leave it out for "
                                  "the task's)")
            try:
                words = check_label_words({str(k): v for k, v in words.items()}, labels, name=name)
            except VerbalizerError as exc:
                raise ConfigError(f"{at}: {exc}") from None
        out.append(Pattern(name=name, template=template, verbalizer=words, index=i))
    return out


def load_patterns_file(path: str | Path, labels: Sequence[str]) -> list[Pattern]:
    """The ``patterns:`` list of a YAML file (``patterns_file=``)."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"patterns_file={str(path)!r}: no such file; fix: the path of a YAML file with a "
                          "top-level `patterns:` list")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"patterns_file={str(path)!r}: not valid YAML{pos}; fix: quote templates that contain "
                          "':' or '{'") from None
    if not isinstance(data, Mapping) or not data.get("patterns"):
        raise ConfigError(f"patterns_file={str(path)!r}: no top-level `patterns:` list; fix: patterns: "
                          "[{name: p0, template: \"... {mask}.\"}]")
    patterns = parse_patterns(data["patterns"], labels, f"patterns_file {str(path)!r}")
    if not patterns:
        raise ConfigError(f"patterns_file={str(path)!r}: the `patterns:` list is empty; fix: add an entry")
    return patterns


def task_patterns(task: Any, patterns_file: str | Path | None = None) -> list[Pattern]:
    """The patterns a run chooses from: ``patterns_file``'s, or the task's own."""
    if patterns_file:
        return load_patterns_file(patterns_file, task.labels)
    return list(getattr(task, "patterns", None) or [])


def select_pattern(patterns: Sequence[Pattern], key: Any, where: str = "task") -> Pattern:
    """The pattern ``key`` names: an index (``0``, ``"1"``) or a name."""
    if not patterns:
        raise ConfigError(f"pattern={key}: {where} lists no patterns; fix: drop pattern=, add a `patterns:` list "
                          "to the task YAML, or give patterns_file=<file.yaml>")
    listing = ", ".join(f"{p.index}={p.name}" for p in patterns)
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise ConfigError(f"pattern={key!r} is neither an index nor a name; {where} has {listing}; "
                          f"fix: pattern=0 or pattern={patterns[0].name}")
    if isinstance(key, str) and key.strip().lstrip("-").isdigit():
        key = int(key)
    if isinstance(key, int):
        if 0 <= key < len(patterns):
            return patterns[key]
        raise ConfigError(f"pattern={key}: {where} has {len(patterns)} patterns ({listing}); "
                          f"fix: pattern=0..{len(patterns) - 1} or a name, e.g. pattern={patterns[0].name}")
    for p in patterns:
        if p.name == key.strip():
            return p
    raise ConfigError(f"pattern={key!r}: no pattern of that name; {where} has {listing}; "
                      f"fix: pattern={patterns[0].name} (or an index)")


def apply_pattern(task: Any, c: Mapping[str, Any]) -> Any:
    """The task with the pattern ``c["pattern"]`` as its template and verbalizer (the task itself when unset).

    A run that names a pattern may not also set ``template=`` (one would silently win); label words given
    on the command line (``verbalizer.label_words=``) conflict only with a pattern that has its own."""
    key = c.get("pattern")
    patterns_file = c.get("patterns_file")
    if key is None:
        if patterns_file:
            task_patterns(task, patterns_file)  # a broken file is an error even when no pattern is picked here
        return task
    where = f"patterns_file {str(patterns_file)!r}" if patterns_file else f"task {task.name!r}"
    pattern = select_pattern(task_patterns(task, patterns_file), key, where)
    if c.get("template"):
        raise ConfigError(f"pattern={key} and template={c['template']!r} both set the template; fix: drop one")
    words = (c.get("verbalizer") or {}).get("label_words") if isinstance(c.get("verbalizer"), Mapping) else None
    if words is not None and pattern.verbalizer is not None:
        raise ConfigError(f"pattern={key} ({pattern.name}) has its own label words and verbalizer.label_words is "
                          "set too; fix: drop one")
    return dataclasses.replace(task, template=pattern.template,
                               verbalizer=pattern.verbalizer if pattern.verbalizer is not None else task.verbalizer,
                               pattern=pattern)
