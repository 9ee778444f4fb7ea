"""The method contract: what a run *does* with the pipeline stages.

A method is an object made from its config (``conf/method/<name>.yaml``, the Hydra group ``method``).
It declares its options (``OPTIONS``, :class:`promptlearn.validation.Opt` lines, checked before
anything loads) and implements ``run(c, output_dir) -> results`` on the whole plain run config ``c``.
``single`` is one :func:`promptlearn.run.run_experiment`; ``pet`` and ``ipet`` run one such
experiment per pattern model (each an ordinary run directory with its ``results.json``) and then
distil them.  A new method is one module with a subclass, ``@register_method("name")`` and a YAML
file (see ``CONTRIBUTING.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from ..errors import ConfigError

__all__ = ["Method"]


class Method:
    name: ClassVar[str] = ""  # set by @register_method
    OPTIONS: ClassVar[tuple[Any, ...]] = ()  # promptlearn.validation.Opt lines

    def __init__(self, cfg: Mapping[str, Any] | None = None):
        self.cfg: dict[str, Any] = dict(cfg or {})
        known = {"name"} | {o.key for o in self.OPTIONS}
        unknown = sorted(set(self.cfg) - known)
        if unknown:
            raise ConfigError(f"method {self.name!r}: unknown option method.{unknown[0]}; it takes "
                              f"{sorted(known - {'name'}) or 'no options'}; fix: drop it")
        for opt in self.OPTIONS:
            if opt.key in self.cfg:
                opt.check(self.cfg[opt.key], "method.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cfg})"

    def run(self, c: dict[str, Any], output_dir: str | Path | None = None) -> dict[str, Any]:
        """Run the method on the plain run config ``c``; writes ``<output_dir>/results.json``; returns the results
        (``results["metrics"]["main"]`` is what a Hydra sweep optimises)."""
        raise NotImplementedError
