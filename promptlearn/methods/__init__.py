"""Methods: what a run does with the pipeline stages -- a registry, one module per method, the contract in
:mod:`.base`.

==========  ===================================================================================
method      what it is
==========  ===================================================================================
single      one run: train one model with the strategy, score it (``run_experiment``; the default)
pet         PET (Schick & Schuetze 2021): a model per pattern x repetitions, merged logits on the
            unlabelled pool, distilled into one sequence classifier
ipet        iPET: generations of pattern models, each trained on the few-shot set plus examples
            the other models of the previous generation labelled; then the same distillation
==========  ===================================================================================

``method=pet`` on the command line; in Python ``run_method(cfg, output_dir)`` or the members' own
functions (:func:`promptlearn.methods.pet.run_pet`, :func:`promptlearn.methods.ipet.run_ipet`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..registry import Registry
from .base import Method

__all__ = ["Method", "METHODS", "register_method", "get_method", "method_defaults", "check_method", "run_method",
           "DEFAULT_METHOD"]

METHODS: Registry = Registry("method", Method, "name")
register_method = METHODS.register  # class decorator: @register_method("name")

DEFAULT_METHOD = "single"
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def method_defaults(name: str) -> dict[str, Any]:
    """``conf/method/<name>.yaml`` without its Hydra ``defaults`` (what the CLI composes for ``method=<name>``)."""
    from omegaconf import OmegaConf

    path = CONF_DIR / "method" / f"{name}.yaml"
    if not path.is_file():
        return {}
    d = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    d.pop("defaults", None)
    return d


def get_method(cfg: Mapping[str, Any] | str | None) -> Method:
    """A :class:`Method` from its config (``name`` + options over its YAML defaults), or a name."""
    cfg = {"name": cfg or DEFAULT_METHOD} if cfg is None or isinstance(cfg, str) else dict(cfg)
    name = str(cfg.get("name") or DEFAULT_METHOD)
    cls = METHODS.get_class(name)  # an unknown name: one line listing the registered ones
    return cls({**method_defaults(name), **cfg, "name": name})


def check_method(cfg: Any) -> Method:
    """The method's name and options (validation.check_config calls this before anything loads)."""
    return get_method(cfg)


def run_method(cfg: Any, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the method ``cfg["method"]`` names (``single`` when absent) on a run config; returns its results."""
    from ..run import _plain

    c = _plain(cfg)
    return get_method(c.get("method")).run(c, output_dir)


from .single import Single  # noqa: E402
from .pet import Pet  # noqa: E402
from .ipet import IPet  # noqa: E402

for _name, _cls in ((DEFAULT_METHOD, Single), ("pet", Pet), ("ipet", IPet)):
    register_method(_name)(_cls)
