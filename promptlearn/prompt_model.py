"""PromptModel: any ``AutoModelForMaskedLM`` (wrapped or not) + a Template + a verbalizer.

The encoder runs once; its hidden states are gathered at the mask positions *before* the LM head,
so the head sees ``[B, 1, H]`` instead of ``[B, L, H]``.  What happens next depends on what the
verbalizer asks for (``verbalizer.input``, see :mod:`promptlearn.verbalizers.base`):

* ``label_logits`` -- the head's last projection (the output embeddings,
  ``get_output_embeddings()``) is applied only to the verbalizer's label-word rows;
* ``mask_hidden`` -- the head stops right before that projection and the verbalizer gets the
  hidden state it would have projected;
* ``word_logprobs`` -- exact multi-token label words (:mod:`promptlearn.multi_token`): each example
  is expanded into the mask variants the words need (n masks for a word of n sub-tokens), all rows
  run in one forward, the head (full vocabulary) is applied at the mask positions only, and the
  verbalizer gets each word's log-probability ``[B, W]``.

Both steps use forward hooks on public modules of the *unwrapped* backbone (``base_model`` and
the output embeddings; see :func:`promptlearn.backbone.unwrap` for PEFT and other wrappers), while
the wrapper itself is what runs.  If the gather hook does not fire, the forward raises instead of
reading a wrong position.  At construction a one-token self-check compares the restricted head
with the model's own full-vocabulary logits; a head that does something after the output
projection falls back to the full head at the mask positions (still never at every position).

``forward`` returns scores, never a loss: the loss belongs to the strategy
(:meth:`promptlearn.strategies.Strategy.compute_loss`).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, PromptlearnError
from .backbone import ModelLoadError, load_backbone, unwrap
from .model_base import BaseModel
from .soft_prompt import SoftPrompt
from .template import Template
from .multi_token import expand_batch
from .verbalizers import LABEL_LOGITS, MASK_HIDDEN, WORD_LOGPROBS, BaseVerbalizer

__all__ = ["PromptModel", "PromptOutput", "load_backbone", "ModelLoadError", "MaskGatherError"]


class MaskGatherError(PromptlearnError, RuntimeError):
    """The hook that reads the mask position did not fire: the scores would come from a wrong position."""


class _HeadInput(Exception):
    """Raised by a pre-hook to stop the LM head right before its output projection."""

    def __init__(self, x: torch.Tensor):
        super().__init__()
        self.x = x


@dataclass
class PromptOutput:
    """What a model returns: class log-scores, and what they were computed from."""

    logits: torch.Tensor  # [B, C] class log-scores (argmax = prediction)
    token_logits: torch.Tensor | None = None  # [B, T] LM logits of the label tokens at the mask (label_logits)
    hidden: torch.Tensor | None = None  # [B, H] hidden state at the mask before the output projection (mask_hidden)
    head_logits: torch.Tensor | None = None  # [B, C] raw logits of a classification head (finetune)
    word_logprobs: torch.Tensor | None = None  # [B, W] label words' log-probabilities, n masks each (exact multi-token)

    @property
    def verbalizer_input(self) -> torch.Tensor | None:
        """What the verbalizer consumed (what calibration measures)."""
        for x in (self.token_logits, self.word_logprobs, self.hidden):
            if x is not None:
                return x
        return None


class PromptModel(BaseModel):
    """Cloze classifier: ``forward(**batch) -> PromptOutput`` with class log-scores.

    ``base_model`` / ``revision`` name the LM for saving (default: what ``mlm.config`` says);
    ``strategy`` / ``trained`` record what trained the weights (see :class:`~promptlearn.model_base.BaseModel`).
    With the template, verbalizer and soft prompt they form :attr:`spec`, from which
    :func:`promptlearn.spec.build_model` rebuilds this model.

    If ``verbalizer`` resolved its label words' leading space for another template (``prefix_space="auto"``),
    the model uses a re-tokenised copy; the verbalizer passed in is never changed.
    """

    kind = "prompt"

    def __init__(self, mlm: nn.Module, template: Template, verbalizer: BaseVerbalizer,
                 soft_prompt: nn.Module | None = None, check_head: bool = True, *, base_model: str | None = None,
                 revision: str | None = None, strategy: str | None = None, trained: Sequence[str] = (),
                 adapter: Any = None):
        # ``adapter`` ({"type": "lora", ...} or an Adapter) is applied to ``mlm`` here (a PEFT wrapper for LoRA)
        super().__init__(mlm, base_model=base_model, revision=revision, strategy=strategy, trained=trained,
                         adapter=adapter)
        self.template = template
        self.demonstrations = None  # see use_demonstrations
        self.verbalizer = verbalizer.bind(template)  # label words tokenised as they follow this template's mask
        # exact multi-token words need n masks where the template has one: encoding keeps room for them
        self.template = template = template.reserved(self.verbalizer.extra_masks)
        backbone = self.backbone
        mlm = self.mlm  # the adapted LM (a PEFT wrapper when the spec has a LoRA adapter)
        if soft_prompt is None and template.has_soft_tokens:
            soft_prompt = SoftPrompt(template.soft_spec, backbone.get_input_embeddings())
        # a prompt built for another template (e.g. by build_soft_prompt) must have as many soft vectors
        spec = getattr(soft_prompt, "spec", None)
        if spec is not None and spec.num_tokens != template.soft_spec.num_tokens:
            raise ValueError(f"the soft prompt has {spec.num_tokens} soft tokens but template {template.name!r} "
                             f"declares {template.soft_spec.num_tokens}; build it from template.soft_spec")
        self.soft_prompt = soft_prompt
        self._check_positions()
        #: run the LM head to its end (capturing its input) instead of stopping it with an exception: what
        #: torch.export can trace (promptlearn.export sets it while exporting); the same scores
        self.traceable = False
        self.restricted_head = False
        if check_head and self.verbalizer.input in (LABEL_LOGITS, WORD_LOGPROBS):
            self.restricted_head = self._head_self_check()
        self.train(mlm.training)  # follow the wrapped model's mode (from_pretrained models are in eval mode)

    @property
    def labels(self) -> list[str]:
        return self.verbalizer.labels

    @property
    def spec(self) -> "Any":
        """The :class:`~promptlearn.spec.ModelSpec` that rebuilds this model (weights aside)."""
        from .spec import ModelSpec

        return ModelSpec(kind=self.kind, base_model=self.base_model_name(), revision=self.revision,
                         template=self.template.config(), verbalizer=self.verbalizer.config(), labels=self.labels,
                         soft_prompt=self.soft_prompt.config() if self.soft_prompt is not None else None,
                         strategy=self.strategy, trained=list(self.trained),
                         calibration=self.verbalizer.calibration_mode,
                         demonstrations=self.demonstrations.config() if self.demonstrations is not None else None,
                         adapter=self.adapter.config() if self.adapter is not None else None)

    def use_demonstrations(self, demonstrations: Any) -> None:
        """Score with LM-BFF demonstrations (:class:`promptlearn.demonstrations.Demonstrations`): recorded in the
        spec, so a saved model predicts with them; the template must have their ``{demo_i}`` slots."""
        if demonstrations is not None:
            missing = [f"demo_{i}" for i in range(demonstrations.n_demos) if f"demo_{i}" not in self.template.fields]
            if missing:
                raise ConfigError(f"template {self.template.text!r} has no slot {{{missing[0]}}} for the "
                                  f"demonstrations; fix: build it from demonstrations.demo_template_text(...)")
        self.demonstrations = demonstrations

    # ------------------------------------------------------------------ set-up checks
    def _check_positions(self) -> None:
        cfg = getattr(self.backbone, "config", None)
        limit = getattr(cfg, "max_position_embeddings", None)
        if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta", "camembert") and limit:
            limit -= 2  # positions start at padding_idx + 1
        if limit and self.template.max_length > limit:
            raise ConfigError(
                f"template {self.template.name!r} encodes up to {self.template.max_length} tokens but the model "
                f"accepts {limit} positions; fix: set max_length={limit} (task.max_length=... on the command line)")

    @torch.no_grad()
    def _head_self_check(self) -> bool:
        """True when the label-row projection reproduces the model's own logits."""
        was_training = self.mlm.training
        self.mlm.eval()
        try:
            tok = self.template.tokenizer
            ids = [i for i in (tok.cls_token_id, tok.mask_token_id, tok.sep_token_id) if i is not None]
            dev = next(self.mlm.parameters()).device
            self.verbalizer.to(dev)
            input_ids = torch.tensor([ids], device=dev)
            attn = torch.ones_like(input_ids)
            mask_pos = torch.tensor([ids.index(tok.mask_token_id)], device=dev)
            full = self.mlm(input_ids=input_ids, attention_mask=attn).logits[0, mask_pos[0], self.verbalizer.token_ids]
            try:
                fast = self._at_mask({"input_ids": input_ids, "attention_mask": attn}, mask_pos, restricted=True)[0]
            except MaskGatherError:
                raise
            except Exception:
                return False
            return bool(torch.allclose(full.float(), fast.float(), atol=1e-4, rtol=1e-4))
        finally:
            self.mlm.train(was_training)

    # ------------------------------------------------------------------ forward
    def _at_mask(self, inputs: dict[str, torch.Tensor], mask_pos: torch.Tensor, restricted: bool,
                 read: str | None = None) -> torch.Tensor:
        """What the verbalizer needs at the mask: label-token logits ``[B, T]`` or the head's input ``[B, H]``;
        with ``read="vocab"`` and positions ``[B, P]``: full-vocabulary logits ``[B, P, V]`` there."""
        read = read or ("hidden" if self.verbalizer.input == MASK_HIDDEN else "label")
        restricted = restricted and not self.traceable
        rows = torch.arange(mask_pos.shape[0], device=mask_pos.device).unsqueeze(1)
        pos = mask_pos if mask_pos.dim() == 2 else mask_pos.unsqueeze(1)  # [B, P]
        fired = []

        def gather(module: nn.Module, args: Any, output: Any) -> Any:
            fired.append(True)
            if isinstance(output, tuple):
                return (output[0][rows, pos],) + tuple(output[1:])
            output["last_hidden_state"] = output["last_hidden_state"][rows, pos]
            return output

        captured = []

        def stop(module: nn.Module, args: Any) -> None:
            if self.traceable:  # torch.export cannot trace an exception out of a module: let the head finish
                captured.append(args[0])
                return
            raise _HeadInput(args[0])

        backbone = self.backbone
        decoder = backbone.get_output_embeddings()
        want_hidden = read == "hidden"
        hooks = [backbone.base_model.register_forward_hook(gather)]
        if restricted or want_hidden:
            hooks.append(decoder.register_forward_pre_hook(stop))
        try:
            out = self.mlm(**inputs)
        except _HeadInput as h:
            self._require(fired)
            x = h.x  # [B, P, H]
            if want_hidden:
                return x[:, 0]
            if read == "vocab":
                return F.linear(x, decoder.weight, getattr(decoder, "bias", None))
            ids = self.verbalizer.token_ids
            bias = decoder.bias[ids] if getattr(decoder, "bias", None) is not None else None
            return F.linear(x[:, 0], decoder.weight[ids], bias)
        finally:
            for h in hooks:
                h.remove()
        self._require(fired)
        if want_hidden and captured:
            return captured[0][:, 0]
        if want_hidden:
            raise MaskGatherError(f"{type(backbone).__name__}: the LM head's output projection "
                                  f"({type(decoder).__name__}) was never called, so the hidden state at the mask "
                                  f"that verbalizer type {self.verbalizer.type!r} needs could not be read")
        if read == "vocab":
            return out.logits
        return out.logits[:, 0, :][:, self.verbalizer.token_ids]

    def _require(self, fired: list) -> None:
        if not fired:
            raise MaskGatherError(
                f"the mask-position hook on {type(self.backbone.base_model).__name__} (the encoder of "
                f"{type(self.backbone).__name__}) did not fire while {type(self.mlm).__name__} ran, so the scores "
                "would be read at a wrong position; the model must call its encoder through `base_model` "
                "(wrappers: expose the inner transformers model with get_base_model())")

    def embed(self, input_ids: torch.Tensor, soft_ids: torch.Tensor | None) -> torch.Tensor:
        """Input embeddings with soft pseudo-tokens injected (vectorised, no Python loop)."""
        emb = self.backbone.get_input_embeddings()(input_ids)
        if soft_ids is None or self.soft_prompt is None or not self.template.has_soft_tokens:
            return emb
        soft = self.soft_prompt()  # [S, H]
        picked = soft[(soft_ids - 1).clamp(min=0)]  # [B, L, H]
        return torch.where((soft_ids > 0).unsqueeze(-1), picked.to(emb.dtype), emb)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_pos: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, soft_ids: torch.Tensor | None = None,
                **_: Any) -> PromptOutput:
        ids: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            ids["token_type_ids"] = token_type_ids
        use_soft = soft_ids is not None and self.soft_prompt is not None and self.template.has_soft_tokens
        if use_soft:
            ids["soft_ids"] = soft_ids
        plan = self.verbalizer.mask_plan if self.verbalizer.input == WORD_LOGPROBS else None
        if plan is not None:  # exact multi-token words: every example in every mask variant, one forward
            tok = self.template.tokenizer
            ids, mask_pos = expand_batch(ids, mask_pos, plan, tok.mask_token_id, tok.pad_token_id or 0)
        with self._encoder_inputs(ids) as inputs:
            if plan is not None:
                vocab = self._at_mask(inputs, mask_pos, self.restricted_head, read="vocab")  # [V*B, P, vocab]
                logp = torch.log_softmax(vocab.float(), -1)
                x = plan.word_scores(logp.view(plan.num_variants, -1, *logp.shape[1:]))  # [B, W]
            else:
                x = self._at_mask(inputs, mask_pos, self.restricted_head)
        logits = self.verbalizer(x)
        if plan is not None:
            return PromptOutput(logits=logits, word_logprobs=x)
        if self.verbalizer.input == LABEL_LOGITS:
            return PromptOutput(logits=logits, token_logits=x)
        return PromptOutput(logits=logits, hidden=x)

    def _encoder_inputs(self, ids: dict[str, torch.Tensor]) -> Any:
        """A context giving the backbone's keyword inputs: soft tokens injected as ``inputs_embeds``; deep prompts
        (P-tuning v2) add per-layer key/value prefixes as past_key_values with the attention mask extended over
        them (see DeepPrompt.prefix_context) -- mask positions are unchanged."""
        inputs = {k: v for k, v in ids.items() if k not in ("input_ids", "soft_ids")}
        if "soft_ids" in ids:
            inputs["inputs_embeds"] = self.embed(ids["input_ids"], ids["soft_ids"])
        else:
            inputs["input_ids"] = ids["input_ids"]
        apply_prefix = getattr(self.soft_prompt, "prefix_context", None)
        return apply_prefix(self.backbone, inputs) if apply_prefix is not None else nullcontext(inputs)

    def vocab_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_pos: torch.Tensor,
                     token_type_ids: torch.Tensor | None = None, soft_ids: torch.Tensor | None = None,
                     **_: Any) -> torch.Tensor:
        """The LM's full-vocabulary logits at the template's mask ``[B, V]`` (soft and deep prompts applied), for
        methods that look beyond the label words (label-word search, word proposals)."""
        ids: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            ids["token_type_ids"] = token_type_ids
        if soft_ids is not None and self.soft_prompt is not None and self.template.has_soft_tokens:
            ids["soft_ids"] = soft_ids
        with self._encoder_inputs(ids) as inputs:
            return self._at_mask(inputs, mask_pos, self.restricted_head, read="vocab")[:, 0]

    @classmethod
    def from_spec(cls, spec: Any, tokenizer: Any = None, mlm: nn.Module | None = None,
                  lm_source: str | None = None, **load_kwargs: Any) -> "PromptModel":
        """Build from a :class:`~promptlearn.spec.ModelSpec` (LM from ``lm_source`` or the spec's base model)."""
        from .backbone import load_masked_lm, load_tokenizer
        from .soft_prompt import build_soft_prompt
        from .verbalizers import build_verbalizer, get_verbalizer_class

        source = lm_source or spec.base_model
        revision = None if lm_source else spec.revision
        if tokenizer is None:
            tokenizer = load_tokenizer(source, revision)
        template = Template(tokenizer=tokenizer, **spec.template)

        def verbalizer_for(lm: nn.Module | None) -> BaseVerbalizer:
            return build_verbalizer(spec.verbalizer, tokenizer, labels=spec.labels, template=template,
                                    name=spec.template.get("name"), mlm=lm)

        # a verbalizer that needs no model is built (and its label words checked) before the weights load
        early = not get_verbalizer_class(spec.verbalizer.get("type")).needs_model
        verbalizer = verbalizer_for(None) if early else None
        if mlm is None:
            mlm = load_masked_lm(source, revision, **load_kwargs)
        if verbalizer is None:
            verbalizer = verbalizer_for(unwrap(mlm))
        soft_prompt = None
        if spec.soft_prompt:
            opts = dict(spec.soft_prompt)
            soft_prompt = build_soft_prompt(template.soft_spec, mlm, opts.pop("type", "embedding"), **opts)
        model = cls(mlm, template, verbalizer, soft_prompt=soft_prompt, base_model=spec.base_model,
                    revision=spec.revision, strategy=spec.strategy, trained=spec.trained, adapter=spec.adapter)
        if spec.demonstrations:
            from .demonstrations import from_spec as demonstrations_from_spec

            model.use_demonstrations(demonstrations_from_spec(spec.demonstrations, model.template))
        return model
