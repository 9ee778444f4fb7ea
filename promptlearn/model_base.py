"""What every model kind shares: the wrapped LM, where it came from, and what trained it.

``base_model`` / ``revision`` name the LM a saved model is rebuilt from; ``strategy`` and ``trained``
record which strategy trained which parameter groups (:meth:`mark_trained`, called by the trainer).
Together with the kind's own parts they form ``model.spec`` (:class:`promptlearn.spec.ModelSpec`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from torch import nn

from .backbone import unwrap

__all__ = ["BaseModel"]


class BaseModel(nn.Module):
    kind: ClassVar[str] = ""

    def __init__(self, mlm: nn.Module, *, base_model: str | None = None, revision: str | None = None,
                 strategy: str | None = None, trained: Sequence[str] = (), adapter: Any = None):
        super().__init__()
        from .adapters import build_adapter

        #: the adapter applied to the LM (:mod:`promptlearn.adapters`; part of the spec), or None
        self.adapter = build_adapter(adapter)
        if self.adapter is not None:
            mlm = self.adapter.apply(mlm)  # LoRA: a PEFT wrapper around the LM; BitFit: the LM itself
        self.mlm = mlm
        self.base_model = base_model
        self.revision = revision
        self.strategy = strategy
        self.trained: tuple[str, ...] = tuple(trained)

    @property
    def backbone(self) -> nn.Module:
        """The transformers model inside ``mlm`` (``mlm`` itself unless it is a PEFT or other wrapper).

        Unwrapped once per ``mlm`` (kept outside the module tree, so it is no submodule)."""
        cached = self.__dict__.get("_backbone")
        if cached is None or cached[0] is not self.mlm:
            cached = (self.mlm, unwrap(self.mlm))
            self.__dict__["_backbone"] = cached
        return cached[1]

    def base_model_name(self) -> str | None:
        cfg = getattr(self.backbone, "config", None)
        return self.base_model or getattr(cfg, "_name_or_path", None) or \
            getattr(getattr(self, "template", None) and self.template.tokenizer, "name_or_path", None)

    def mark_trained(self, strategy: str, groups: Sequence[str]) -> None:
        """Record that ``strategy`` trained the parameter ``groups`` (kept in the spec; decides what is saved)."""
        self.strategy = strategy
        self.trained = tuple(sorted(set(self.trained) | set(groups)))

    def adapter_parameter_ids(self) -> set[int]:
        """ids of the LM parameters in the ``adapter`` group: the spec's adapter's (BitFit: the biases), or the
        adapters of a PEFT model wrapped by hand."""
        from .backbone import adapter_parameter_ids

        ids = adapter_parameter_ids(self.mlm)
        return ids | self.adapter.parameter_ids(self.mlm) if self.adapter is not None else ids

    def export(self, directory: str, **kwargs: Any) -> Any:
        """Export for CPU serving without PyTorch (ONNX; see :func:`promptlearn.export.export_onnx`)."""
        from .export import export_onnx

        return export_onnx(self, directory, **kwargs)

    def lm_needs_saving(self) -> bool:
        """Whether a saved model must store the LM's weights (they differ from the base model's)."""
        return "lm" in self.trained

    # ------------------------------------------------------------------ convenience
    def predict(self, inputs: Any, batch_size: int = 32) -> Any:
        """Labels and class probabilities for raw strings or field dicts (see :func:`serialization.predict`)."""
        from .serialization import predict

        return predict(self, inputs, batch_size=batch_size)

    def save_pretrained(self, directory: str, save_lm: bool | None = None, base_model: str | None = None,
                        materialize: bool = False) -> Any:
        """Save the spec and the trained state (the LM only if it trained)."""
        from .serialization import save_prompt_model

        return save_prompt_model(self, directory, save_lm=save_lm, base_model=base_model, materialize=materialize)

    @classmethod
    def from_pretrained(cls, directory: str, base_model: str | None = None, **kwargs: Any) -> nn.Module:
        """Load a model written by :meth:`save_pretrained`; ``base_model`` overrides the recorded LM;
        ``kwargs`` go to transformers' ``from_pretrained`` (``torch_dtype=...``)."""
        from .serialization import load_prompt_model

        return load_prompt_model(directory, base_model=base_model, **kwargs)
