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

from .errors import PromptlearnError

__all__ = ["ModelLoadError", "check_model_source", "load_backbone", "load_tokenizer", "load_masked_lm", "unwrap", "adapter_parameter_ids"]


class ModelLoadError(PromptlearnError, RuntimeError):
    """A model or tokenizer name/path that cannot be loaded."""


def _load_error(name_or_path: str, what: str, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load the {what} {name_or_path!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}\n"
        f"If you are offline or the name is a typo, point at a local model directory, e.g.\n"
        f"  python -m promptlearn.run +task=sst2 model.name_or_path=/path/to/model\n"
        f"(a directory with config.json, the weights and the tokenizer files).")


_FIX = ("fix: model.name_or_path=/path/to/model (a directory with config.json, the weights and the tokenizer "
        "files)")


def check_model_source(name_or_path: str) -> None:
    """Fail fast, with the cause a user can act on, before transformers is asked for ``name_or_path``.

    A local path must be a directory with ``config.json``.  A Hub id that is not in the local cache
    needs the Hub: with ``HF_HUB_OFFLINE=1`` that is an error at once, and otherwise the Hub is probed
    with a 5-second connection attempt instead of transformers' minute of retries.
    """
    import os
    import socket
    from pathlib import Path
    from urllib.parse import urlparse

    path = Path(str(name_or_path)).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"model {name_or_path!r} is a file, not a model directory; {_FIX}")
        if not (path / "config.json").is_file():
            content = sorted(p.name for p in path.iterdir())[:8]
            what = "is empty" if not content else f"has no config.json (it holds {content})"
            raise ModelLoadError(f"model directory {name_or_path!r} {what}, so it is not a saved model; {_FIX}")
        return
    if str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") > 1:
        raise ModelLoadError(f"model directory {name_or_path!r} does not exist (resolved to {path.resolve()}); {_FIX}")
    try:
        from huggingface_hub import constants, try_to_load_from_cache

        if isinstance(try_to_load_from_cache(str(name_or_path), "config.json"), str):
            return  # cached: transformers can load it with or without the Hub
        endpoint = constants.ENDPOINT
        offline = constants.HF_HUB_OFFLINE
    except Exception:  # pragma: no cover - an unusual huggingface_hub; let transformers decide
        return
    if offline or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        raise ModelLoadError(f"model {name_or_path!r} is not a local directory and not in the Hugging Face cache, and "
                             f"HF_HUB_OFFLINE=1 forbids downloading it; {_FIX}")
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY",
                                         "http_proxy")):
        return  # behind a proxy a direct connection says nothing: let transformers (which uses it) decide
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=5).close()
    except OSError as exc:
        raise ModelLoadError(
            f"model {name_or_path!r} is not a local directory and not in the Hugging Face cache, and the Hub at "
            f"{endpoint} cannot be reached ({type(exc).__name__}: {exc}); {_FIX}, or run where the Hub is reachable "
            f"(HF_HUB_OFFLINE=1 makes every run use only local files)") from None


def load_tokenizer(name_or_path: str, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    check_model_source(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(name_or_path, **({"revision": revision} if revision else {}))
    except Exception as exc:  # OSError, ValueError, connection errors...
        raise _load_error(name_or_path, "tokenizer", exc) from exc


def load_masked_lm(name_or_path: str, revision: str | None = None, **kwargs: Any) -> nn.Module:
    """``AutoModelForMaskedLM`` from a Hub id or a local directory (errors name the fix)."""
    from transformers import AutoModelForMaskedLM

    if revision:
        kwargs["revision"] = revision
    check_model_source(name_or_path)
    try:
        return AutoModelForMaskedLM.from_pretrained(name_or_path, **kwargs)
    except Exception as exc:  # OSError, ValueError, connection errors...
        raise _load_error(name_or_path, "masked LM", exc) from exc


def load_backbone(name_or_path: str, revision: str | None = None, **kwargs: Any) -> tuple[Any, nn.Module]:
    """Load ``(tokenizer, AutoModelForMaskedLM)`` from a Hub id or a local directory.

    Errors name what failed and how to point at a local copy.
    """
    return load_tokenizer(name_or_path, revision), load_masked_lm(name_or_path, revision, **kwargs)


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


def weight_fingerprint(model: nn.Module, samples: int = 64) -> str:
    """A cheap fingerprint of a model's weights: sha256 over every tensor's name, shape and ``samples`` evenly
    strided values (rounded to bfloat16, so a model loaded in bfloat16 has its float32 fingerprint).  Two LMs
    with the same fingerprint are, for all practical purposes, the same weights (used to check that several
    prompts share one base model)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in sorted(unwrap(model).state_dict().items()):
        if not torch.is_floating_point(t):
            continue
        flat = t.detach().reshape(-1)
        step = max(1, flat.numel() // samples)
        vals = flat[::step][:samples].to(torch.bfloat16).float().cpu().numpy().tobytes()
        h.update(f"{name}:{tuple(t.shape)}:".encode())
        h.update(vals)
    return h.hexdigest()[:32]


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
