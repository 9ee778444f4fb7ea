"""The verbalizer contract: what every verbalizer type implements.

A verbalizer maps what the masked LM produces at the mask to one log-score per class, in the
steps OpenPrompt made familiar::

    project -> normalise -> calibrate -> aggregate

``project``    the verbalizer's input -> one score per *unit* (a label token, a class, ...);
``normalise``  log-softmax over the units (float32);
``calibrate``  optional: subtract the log of a prior over the units measured on content-free or
               support inputs, and renormalise (Zhao et al. 2021; KPT) -- implemented here, once,
               for every type;
``aggregate``  units -> classes (identity when the units are the classes).

What the input is, a verbalizer declares with its class attribute ``input`` (an instance may set its
own: the manual verbalizer asks for ``word_logprobs`` only when it has multi-token words to score exactly):

``label_logits``  the LM's logits at the mask for the rows in ``token_ids`` (``[B, T]``); the LM
                  head is applied only to those rows (manual / knowledgeable verbalizers);
``word_logprobs`` ``[B, W]``: each label word's log-probability under the LM with as many masks as
                  it has sub-tokens (exact multi-token scoring, :mod:`promptlearn.multi_token`); a
                  verbalizer with this input provides ``mask_plan`` (which words, how filled);
``mask_hidden``   the hidden state that the LM head's output projection receives at the mask
                  (``[B, H]``: after the head's transform, so a head initialised from the label
                  words' output-embedding rows starts where the manual verbalizer is) -- for
                  soft / WARP-style heads.

:class:`~promptlearn.prompt_model.PromptModel` computes exactly what ``input`` asks for.  A
verbalizer's parameters (if any) form the ``verbalizer`` parameter group, which the strategies
that train it put in the optimizer; its state (parameters and the calibration vector) is saved
with the model, and ``config()`` + ``from_config()`` rebuild it from the saved spec.

A new type is one module with a subclass and ``@register_verbalizer("name")`` (see
``CONTRIBUTING.md``).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from ..errors import PromptlearnError

__all__ = ["BaseVerbalizer", "VerbalizerError", "LABEL_LOGITS", "MASK_HIDDEN", "WORD_LOGPROBS", "INPUTS"]

LABEL_LOGITS = "label_logits"
MASK_HIDDEN = "mask_hidden"
WORD_LOGPROBS = "word_logprobs"
INPUTS = (LABEL_LOGITS, MASK_HIDDEN, WORD_LOGPROBS)


class VerbalizerError(PromptlearnError, ValueError):
    """Label words or options that cannot be used with the given tokenizer or labels."""


class BaseVerbalizer(nn.Module):
    """Base class of every verbalizer type (see the module doc for the contract)."""

    type: ClassVar[str] = ""  # set by @register_verbalizer
    input: ClassVar[str] = LABEL_LOGITS
    #: from_config needs the masked LM (to size or initialise itself); False lets the builder make the
    #: verbalizer -- and so check its label words -- before the LM's weights are loaded
    needs_model: ClassVar[bool] = True

    def __init__(self, labels: Sequence[str], name: str | None = None):
        super().__init__()
        self.labels: list[str] = [str(x) for x in labels]
        self.name = name
        # log prior over the units (empty = not calibrated); persistent, so it is saved with the model
        self.register_buffer("calibration", torch.zeros(0))
        self.calibration_mode: str | None = None  # how the prior was measured (content_free, support, ...)

    # ------------------------------------------------------------------ contract
    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Input at the mask -> one score per unit ``[B, U]``."""
        raise NotImplementedError

    def normalize(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(scores.float(), dim=-1)

    def aggregate(self, logp: torch.Tensor) -> torch.Tensor:
        """Unit log-probabilities ``[B, U]`` -> class log-scores ``[B, C]`` (identity if units are classes)."""
        return logp

    def config(self) -> dict[str, Any]:
        """A plain dict (``type`` + options) from which :meth:`from_config` rebuilds this verbalizer."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], tokenizer: Any, labels: Sequence[str] | None = None,
                    template: Any = None, name: str | None = None, mlm: nn.Module | None = None) -> "BaseVerbalizer":
        """Build from :meth:`config`'s dict.  ``mlm`` is the (unwrapped) masked LM, for types that size or
        initialise themselves from it (a soft head from the label words' output-embedding rows)."""
        raise NotImplementedError

    #: the config options ``from_config`` accepts besides ``type`` / ``label_words`` / ``labels`` (None: not
    #: declared); declared options are checked before any model loads (:func:`promptlearn.validation`)
    OPTIONS: ClassVar[frozenset[str] | None] = None

    @classmethod
    def options(cls, cfg: Mapping[str, Any], known: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
        """``cfg`` without ``type`` / ``label_words`` / ``labels``; an option not in ``known`` (default
        :attr:`OPTIONS`) is an error naming the options this type accepts (every ``from_config`` checks its
        config this way)."""
        known = set(cls.OPTIONS or ()) if known is None else set(known)
        opts = {k: v for k, v in cfg.items() if k not in ("type", "label_words", "labels")}
        unknown = set(opts) - known
        if unknown:
            raise VerbalizerError(f"verbalizer options {sorted(unknown)} are unknown to the {cls.type} verbalizer; "
                                  f"fix: use label_words and {sorted(known)}")
        return opts

    def bind(self, template: Any) -> "BaseVerbalizer":
        """The model's own copy of this verbalizer, adapted to ``template`` (``self`` is never changed).

        PromptModel calls it, so two models built from one verbalizer never share its state (calibration,
        a trained head).  Subclasses adapt the copy (label words tokenised as they follow the mask)."""
        return self.copy()

    def copy(self) -> "BaseVerbalizer":
        """A deep copy that shares the (read-only) tokenizer, if the verbalizer holds one."""
        tok = getattr(self, "_tokenizer", None)
        return copy.deepcopy(self, memo={id(tok): tok} if tok is not None else None)

    #: the verbalizer refines itself on a support set of unlabelled task examples before training (KPT); the
    #: pipeline's ``refine`` stage measures the support set and calls :meth:`refine`
    needs_support: ClassVar[bool] = False

    def refine(self, inputs: torch.Tensor, vocab_logprob: torch.Tensor) -> dict[str, Any]:
        """Adapt to a support set: ``inputs`` are its verbalizer inputs (``[N, ...]``), ``vocab_logprob`` the
        LM's mean log-probability of every vocabulary token at the mask over it (``[V]``).  Returns a report
        (JSON-able) for ``results.json``."""
        return {}

    #: exact multi-token scoring (``input == word_logprobs``): the words and how to fill their masks
    mask_plan: Any = None

    @property
    def extra_masks(self) -> int:
        """How many masks the model inserts after the template's one (the template keeps room for them)."""
        return 0

    def describe(self) -> str:
        return f"verbalizer {self.type} over classes {self.labels}"

    # ------------------------------------------------------------------ the pipeline
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = self.normalize(self.project(x))
        if self.calibrated:
            logp = torch.log_softmax(logp - self.calibration, dim=-1)
        return self.aggregate(logp)

    # ------------------------------------------------------------------ calibration
    @property
    def calibrated(self) -> bool:
        return self.calibration.numel() > 0

    @torch.no_grad()
    def calibrate(self, inputs: torch.Tensor, mode: str | None = "custom") -> None:
        """Set the prior from the verbalizer inputs of content-free or support examples (``[N, ...]``).

        The prior is the mean probability of each unit over the N inputs; scoring then divides by it
        and renormalises (in log space).  ``mode`` records how the inputs were chosen (it goes into the spec).
        """
        logp = self.normalize(self.project(inputs))
        logp = logp.reshape(-1, logp.shape[-1])
        self.calibration = (torch.logsumexp(logp, 0) - torch.log(torch.tensor(float(logp.shape[0])))).to(
            self.calibration.device)
        self.calibration_mode = mode

    def reset_calibration(self) -> None:
        self.calibration = self.calibration.new_zeros(0)
        self.calibration_mode = None

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        key = prefix + "calibration"
        if key in state_dict and state_dict[key].shape != self.calibration.shape:  # calibrated vs not
            self.calibration = torch.empty_like(state_dict[key], device=self.calibration.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"type={self.type!r}, labels={self.labels}, calibrated={self.calibrated}"

