"""Loading the masked LM, and seeing through wrappers (PEFT and anything with ``get_base_model()``).

promptlearn hooks two public modules of the backbone -- ``base_model`` (the encoder, to gather the
mask position) and ``get_output_embeddings()`` (the LM head's last projection, to restrict it to
the label-word rows).  A wrapper such as ``peft.PeftModel`` keeps a *different* object under
``base_model`` (its tuner), so hooks there would never fire.  :func:`unwrap` follows
``get_base_model()`` to the transformers model the hooks belong on; the wrapper itself is still
what is called, so adapters (LoRA, ...) stay active.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["ModelLoadError", "load_backbone", "load_tokenizer", "unwrap", "adapter_parameter_ids"]


class ModelLoadError(RuntimeError):
    """A model or tokenizer name/path that cannot be loaded."""


def _load_error(name_or_path: str, what: str, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load the {what} {name_or_path!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}\n"
        f"If you are offline or the name is a typo, point at a local model directory, e.g.\n"
        f"  python -m promptlearn.run +task=sst2 model.name_or_path=/path/to/model\n"
        f"(a directory with config.json, the weights and the tokenizer files).")


def load_tokenizer(name_or_path: str, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, **({"revision": revision} if revision else {}))
    except Exception as exc:  # OSError, ValueError, connection errors...
        raise _load_error(name_or_path, "tokenizer", exc) from exc


def load_backbone(name_or_path: str, revision: str | None = None, **kwargs: Any) -> tuple[Any, nn.Module]:
    """Load ``(tokenizer, AutoModelForMaskedLM)`` from a Hub id or a local directory.

    Errors name what failed and how to point at a local copy.
    """
    from transformers import AutoModelForMaskedLM

    if revision:
        kwargs["revision"] = revision
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **({"revision": revision} if revision else {}))
        model = AutoModelForMaskedLM.from_pretrained(name_or_path, **kwargs)
    except Exception as exc:  # OSError, ValueError, connection errors...
        raise _load_error(name_or_path, "masked LM", exc) from exc
    return tokenizer, model


def unwrap(model: nn.Module) -> nn.Module:
    """The innermost model behind ``get_base_model()`` wrappers (a PEFT model -> its transformers model)."""
    seen = set()
    while hasattr(model, "get_base_model") and id(model) not in seen:
        seen.add(id(model))
        inner = model.get_base_model()
        if inner is model or not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def adapter_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the adapter parameters of a PEFT-wrapped model (LoRA matrices, modules_to_save copies...).

    PEFT names every adapter parameter after its adapter (``...lora_A.default.weight``), and lists
    the adapter names in ``model.peft_config``; an unwrapped model has no adapters.
    """
    names = list(getattr(model, "peft_config", None) or {})
    if not names:
        return set()
    keys = tuple(f".{n}." for n in names)
    return {id(p) for full, p in model.named_parameters() if any(k in f".{full}." for k in keys)}
