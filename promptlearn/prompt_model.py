"""PromptModel: any ``AutoModelForMaskedLM`` + a Template + a Verbalizer.

The encoder runs once; its hidden states are gathered at the mask positions *before* the LM head,
so the head sees ``[B, 1, H]`` instead of ``[B, L, H]``.  The head's last projection (the output
embeddings, ``model.get_output_embeddings()``) is then applied only to the label-word rows.  Both
steps use forward hooks on public modules (``model.base_model`` and the output embeddings), so no
model class is special-cased.  At construction a one-token self-check compares the restricted
head with the model's own full-vocabulary logits; a model whose head does something after the
output projection falls back to the full head at the mask positions (still never at every
position).
"""

from __future__ import annotations

from contextlib import nullcontext
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .soft_prompt import SoftPrompt
from .template import Template, is_space_sensitive
from .verbalizer import Verbalizer

__all__ = ["PromptModel", "PromptOutput", "load_backbone", "ModelLoadError"]


class ModelLoadError(RuntimeError):
    """A model or tokenizer name/path that cannot be loaded."""


class _HeadInput(Exception):
    """Raised by a pre-hook to stop the LM head right before its output projection."""

    def __init__(self, x: torch.Tensor):
        super().__init__()
        self.x = x


@dataclass
class PromptOutput:
    logits: torch.Tensor  # [B, C] class log-scores
    token_logits: torch.Tensor  # [B, T] LM logits of the verbalizer's label tokens at the mask
    loss: torch.Tensor | None = None


def load_backbone(name_or_path: str, **kwargs: Any) -> tuple[Any, nn.Module]:
    """Load ``(tokenizer, AutoModelForMaskedLM)`` from a Hub id or a local directory.

    Errors name what failed and how to point at a local copy.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **{k: v for k, v in kwargs.items() if k == "revision"})
        model = AutoModelForMaskedLM.from_pretrained(name_or_path, **kwargs)
    except Exception as exc:  # OSError, ValueError, connection errors...
        raise ModelLoadError(
            f"could not load the masked LM {name_or_path!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}\n"
            f"If you are offline or the name is a typo, point at a local model directory, e.g.\n"
            f"  python -m promptlearn.run +task=sst2 model.name_or_path=/path/to/model\n"
            f"(a directory with config.json, the weights and the tokenizer files).") from exc
    return tokenizer, model


class PromptModel(nn.Module):
    """Cloze classifier: ``forward(**batch) -> PromptOutput`` with class log-scores."""

    def __init__(self, mlm: nn.Module, template: Template, verbalizer: Verbalizer,
                 soft_prompt: nn.Module | None = None, check_head: bool = True):
        super().__init__()
        self.mlm = mlm
        self.template = template
        self.verbalizer = verbalizer
        if soft_prompt is None and template.has_soft_tokens:
            soft_prompt = SoftPrompt(template.soft_spec, mlm.get_input_embeddings())
        # a prompt built for another template (e.g. by build_soft_prompt) must have as many soft vectors
        spec = getattr(soft_prompt, "spec", None)
        if spec is not None and spec.num_tokens != template.soft_spec.num_tokens:
            raise ValueError(f"the soft prompt has {spec.num_tokens} soft tokens but template {template.name!r} "
                             f"declares {template.soft_spec.num_tokens}; build it from template.soft_spec")
        self.soft_prompt = soft_prompt
        if template.has_mask and verbalizer.prefix_space != template.mask_has_leading_space and \
                is_space_sensitive(template.tokenizer):
            warnings.warn(f"template {template.text!r}: the mask {'follows' if template.mask_has_leading_space else 'does not follow'} "
                          f"a space but the label words are tokenised {'with' if verbalizer.prefix_space else 'without'} "
                          f"a leading space; set verbalizer prefix_space={template.mask_has_leading_space}")
        self._check_positions()
        self.restricted_head = False
        if check_head:
            self.restricted_head = self._head_self_check()
        self.train(mlm.training)  # follow the wrapped model's mode (from_pretrained models are in eval mode)

    # ------------------------------------------------------------------ set-up checks
    def _check_positions(self) -> None:
        cfg = getattr(self.mlm, "config", None)
        limit = getattr(cfg, "max_position_embeddings", None)
        if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta", "camembert") and limit:
            limit -= 2  # positions start at padding_idx + 1
        if limit and self.template.max_length > limit:
            raise ValueError(
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
                fast = self._label_logits({"input_ids": input_ids, "attention_mask": attn}, mask_pos, restricted=True)[0]
            except Exception:
                return False
            return bool(torch.allclose(full.float(), fast.float(), atol=1e-4, rtol=1e-4))
        finally:
            self.mlm.train(was_training)

    # ------------------------------------------------------------------ forward
    def _label_logits(self, inputs: dict[str, torch.Tensor], mask_pos: torch.Tensor, restricted: bool) -> torch.Tensor:
        """LM logits of the label tokens at the mask: ``[B, T]``."""
        rows = torch.arange(mask_pos.shape[0], device=mask_pos.device)

        def gather(module: nn.Module, args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (output[0][rows, mask_pos].unsqueeze(1),) + tuple(output[1:])
            output["last_hidden_state"] = output["last_hidden_state"][rows, mask_pos].unsqueeze(1)
            return output

        def stop(module: nn.Module, args: Any) -> None:
            raise _HeadInput(args[0])

        decoder = self.mlm.get_output_embeddings()
        hooks = [self.mlm.base_model.register_forward_hook(gather)]
        if restricted:
            hooks.append(decoder.register_forward_pre_hook(stop))
        try:
            out = self.mlm(**inputs)
        except _HeadInput as h:
            x = h.x[:, 0]
            ids = self.verbalizer.token_ids
            bias = decoder.bias[ids] if getattr(decoder, "bias", None) is not None else None
            return F.linear(x, decoder.weight[ids], bias)
        finally:
            for h in hooks:
                h.remove()
        return out.logits[:, 0, :][:, self.verbalizer.token_ids]

    def embed(self, input_ids: torch.Tensor, soft_ids: torch.Tensor | None) -> torch.Tensor:
        """Input embeddings with soft pseudo-tokens injected (vectorised, no Python loop)."""
        emb = self.mlm.get_input_embeddings()(input_ids)
        if soft_ids is None or self.soft_prompt is None or not self.template.has_soft_tokens:
            return emb
        soft = self.soft_prompt()  # [S, H]
        picked = soft[(soft_ids - 1).clamp(min=0)]  # [B, L, H]
        return torch.where((soft_ids > 0).unsqueeze(-1), picked.to(emb.dtype), emb)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_pos: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, soft_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **_: Any) -> PromptOutput:
        inputs: dict[str, torch.Tensor] = {"attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if soft_ids is not None and self.soft_prompt is not None and self.template.has_soft_tokens:
            inputs["inputs_embeds"] = self.embed(input_ids, soft_ids)
        else:
            inputs["input_ids"] = input_ids
        # deep prompts (P-tuning v2): per-layer key/value prefixes enter as past_key_values with the
        # attention mask extended over them (see DeepPrompt.prefix_context); mask_pos is unchanged
        apply_prefix = getattr(self.soft_prompt, "prefix_context", None)
        with (apply_prefix(self.mlm, inputs) if apply_prefix is not None else nullcontext(inputs)) as inputs:
            token_logits = self._label_logits(inputs, mask_pos, self.restricted_head)
        logits = self.verbalizer(token_logits)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return PromptOutput(logits=logits, token_logits=token_logits, loss=loss)

    # ------------------------------------------------------------------ convenience
    def predict(self, inputs: Any, batch_size: int = 32) -> Any:
        """Labels and class probabilities for raw strings or field dicts (see :func:`serialization.predict`)."""
        from .serialization import predict

        return predict(self, inputs, batch_size=batch_size)

    def save_pretrained(self, directory: str, save_lm: bool | None = None, base_model: str | None = None,
                        materialize: bool = False) -> Any:
        """Save template, verbalizer, prompt parameters (and the LM only if it was tuned)."""
        from .serialization import save_prompt_model

        return save_prompt_model(self, directory, save_lm=save_lm, base_model=base_model, materialize=materialize)

    @classmethod
    def from_pretrained(cls, directory: str, base_model: str | None = None, **kwargs: Any) -> "PromptModel":
        """Load a model written by :meth:`save_pretrained`; ``base_model`` overrides the recorded LM."""
        from .serialization import load_prompt_model

        return load_prompt_model(directory, base_model=base_model, **kwargs)

