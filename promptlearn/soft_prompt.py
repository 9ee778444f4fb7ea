"""Soft prompts: trainable pseudo-tokens and deep (per-layer) prompts, with four encoders.

One factory, :func:`build_soft_prompt`, picks the encoder by name (``strategy.prompt_encoder.type``):

``embedding``  Lester et al. prompt tuning: one trainable vector per distinct ``{soft}`` token of the
               template (:class:`SoftPrompt`).
``lstm``       P-tuning v1 (Liu et al. 2021): trainable input vectors -> 2-layer bidirectional LSTM
               (``hidden_size // 2`` per direction) -> MLP (Linear, ReLU, Linear) -> ``[S, H]``
               (:class:`ReparamPrompt`).
``mlp``        the same without the LSTM.
``deep``       P-tuning v2 / prefix tuning: ``num_prefix`` trainable key/value vectors for *every*
               attention layer, optionally reparameterised by an MLP (:class:`DeepPrompt`).  They need
               no ``{soft}`` token in the template; if the template has some anyway, those are plain
               input-level embeddings as with ``embedding``.

Every prompt is an ``nn.Module`` that holds only its own parameters (never the MLM's).  Calling it
returns the ``[S, H]`` matrix that :class:`~promptlearn.prompt_model.PromptModel` injects at the
``{soft}`` positions (``S`` = ``spec.num_tokens``, row ``i`` = soft vector ``i``), computed once per
forward for the whole batch.

Saving only the final vectors (as PEFT does for P-tuning): ``materialize()`` returns the plain
tensor the encoder currently produces (``[S, H]``; for ``deep`` the ``[layers, 2, P, D]`` key/value
prefixes), and ``plain()`` returns an equivalent prompt without reparameterisation (a
:class:`SoftPrompt`, or a :class:`DeepPrompt` with ``prefix_projection=False``) whose ``state_dict``
is that artifact.  ``SoftPrompt.from_weight(spec, matrix)`` rebuilds an ``embedding`` prompt from a
saved matrix; the LSTM/MLP are only needed while training.

How deep prompts reach the attention layers: see :class:`DeepPrompt`.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator

import torch
from torch import nn

from .errors import ConfigError, PromptlearnError
from .template import SoftSpec

__all__ = ["SoftPrompt", "ReparamPrompt", "DeepPrompt", "build_soft_prompt", "ENCODERS", "DeepPromptUnsupported",
           "prefixed_inputs", "keep_positions", "cache_argument"]

ENCODERS = ("embedding", "lstm", "mlp", "deep")


class DeepPromptUnsupported(PromptlearnError, ValueError):
    """The masked LM does not apply key/value prefixes passed as ``past_key_values``."""


def _seeded(seed: int | None) -> contextlib.AbstractContextManager:
    """Fork the global RNG and seed it, so module initialisation is reproducible and leaves no trace."""
    if seed is None:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def ctx() -> Iterator[None]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    return ctx()


def _init_vectors(spec: SoftSpec, word_embeddings: nn.Embedding, generator: torch.Generator | None) -> torch.Tensor:
    """``[S, H]``: init words -> that word's input embedding; others ~ N(0, std of the embedding matrix)."""
    weight = word_embeddings.weight.detach()
    init = torch.randn(spec.num_tokens, weight.shape[1], generator=generator) * weight.float().std().cpu()
    for i, tok in enumerate(spec.init_token_ids):
        if tok is not None:
            init[i] = weight[tok].float().cpu()
    return init.to(weight.dtype)


class SoftPrompt(nn.Module):
    """Plain trainable embeddings (Lester et al. prompt tuning), one row per distinct soft token.

    Rows with an init word start from that word's input embedding; the others are drawn from a
    normal distribution with the embedding matrix's own standard deviation.  ``forward()`` returns
    the ``[num_tokens, hidden]`` matrix that :class:`PromptModel` injects.
    """

    encoder = "embedding"

    def __init__(self, spec: SoftSpec, word_embeddings: nn.Embedding | None, generator: torch.Generator | None = None,
                 weight: torch.Tensor | None = None, seed: int | None = None):
        super().__init__()
        self.spec = spec
        self.seed = seed
        if weight is None:
            if word_embeddings is None:
                raise ValueError("SoftPrompt needs the model's input embeddings or an explicit weight")
            weight = _init_vectors(spec, word_embeddings, generator)
        if weight.dim() != 2 or weight.shape[0] != spec.num_tokens:
            raise ValueError(f"soft prompt weight must be [{spec.num_tokens}, hidden], got {tuple(weight.shape)}")
        self.embedding = nn.Parameter(weight.detach().clone())

    @classmethod
    def from_weight(cls, spec: SoftSpec, weight: torch.Tensor) -> "SoftPrompt":
        """An ``embedding`` prompt holding a saved (e.g. materialised LSTM/MLP) ``[S, H]`` matrix."""
        return cls(spec, None, weight=weight)

    def forward(self) -> torch.Tensor:
        return self.embedding

    def config(self) -> dict[str, Any]:
        """``type`` + options: ``build_soft_prompt(spec, mlm, **config)`` rebuilds this prompt."""
        return {"type": "embedding", "seed": self.seed}

    @torch.no_grad()
    def materialize(self) -> torch.Tensor:
        return self.embedding.detach().clone()

    def plain(self) -> "SoftPrompt":
        return SoftPrompt.from_weight(self.spec, self.materialize())


class ReparamPrompt(nn.Module):
    """P-tuning v1 prompt encoder (``lstm``) or its MLP-only variant (``mlp``).

    ``lstm``: input vectors ``[S, H]`` -> ``nn.LSTM(H, hidden_size // 2, num_layers=2, bidirectional)``
    over the soft tokens in template order (one sequence, run once per forward, not per example)
    -> ``Linear(., hidden_size) -> ReLU -> Linear(hidden_size, H)``.  With ``hidden_size = H`` (the
    default) this is exactly the encoder of P-tuning v1 (``LAMA/p_tuning/prompt_encoder.py``).
    ``mlp``: input vectors -> ``Linear(H, hidden_size) -> ReLU -> Linear(hidden_size, H)``.

    The input vectors are initialised like :class:`SoftPrompt` (init words -> their embeddings), so
    ``{soft:It was}`` seeds the encoder *input*; the output is the encoder's transform of it.
    """

    def __init__(self, spec: SoftSpec, word_embeddings: nn.Embedding, encoder: str = "lstm",
                 hidden_size: int | None = None, dropout: float = 0.0, generator: torch.Generator | None = None,
                 seed: int | None = None):
        super().__init__()
        if encoder not in ("lstm", "mlp"):
            raise ValueError(f"ReparamPrompt encoder must be 'lstm' or 'mlp', got {encoder!r}")
        self.spec = spec
        self.encoder = encoder
        self.seed = seed
        init = _init_vectors(spec, word_embeddings, generator)
        dim = init.shape[1]
        hidden = int(hidden_size or dim)
        self.hidden_size = hidden
        self.dropout = float(dropout)
        self.embedding = nn.Parameter(init.float())  # like the LSTM/MLP weights; PromptModel casts the output
        if encoder == "lstm":
            if hidden < 2:
                raise ConfigError(f"lstm prompt encoder needs hidden_size >= 2, got {hidden}")
            self.lstm = nn.LSTM(input_size=dim, hidden_size=hidden // 2, num_layers=2, dropout=dropout,
                                bidirectional=True, batch_first=True)
            mlp_in = 2 * (hidden // 2)
        else:
            self.lstm = None
            mlp_in = dim
        self.mlp = nn.Sequential(nn.Linear(mlp_in, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"type": self.encoder, "hidden_size": self.hidden_size, "seed": self.seed}
        if self.encoder == "lstm":
            cfg["dropout"] = self.dropout
        return cfg

    def forward(self) -> torch.Tensor:
        x = self.embedding
        if self.lstm is not None:
            x = self.lstm(x.unsqueeze(0))[0].squeeze(0)
        return self.mlp(x)

    @torch.no_grad()
    def materialize(self) -> torch.Tensor:
        """The ``[S, H]`` matrix the encoder produces now (eval mode: no dropout), detached."""
        was = self.training
        self.eval()
        try:
            return self().detach().clone()
        finally:
            self.train(was)

    def plain(self) -> SoftPrompt:
        return SoftPrompt.from_weight(self.spec, self.materialize())


class DeepPrompt(nn.Module):
    """P-tuning v2 / prefix tuning: ``num_prefix`` trainable key/value vectors in every attention layer.

    **Injection.**  The prefixes go in through the model's public cache argument (``cache``; ``past_key_values``
    before transformers 5.2x, see :func:`cache_argument`): for
    each forward a fresh ``transformers.DynamicCache`` is filled with one ``[B, heads, P, head_dim]``
    key and value per layer, and the 2-D ``attention_mask`` is extended with ``P`` ones in front.  In
    transformers 5.x the BERT-family encoders (``is_decoder=False``) still hand the cache to every
    self-attention layer, which concatenates ``[prefix; keys]`` / ``[prefix; values]`` (the same path
    PEFT's prefix tuning uses; ``masking_utils`` derives the key length from the 2-D mask for exactly
    this case).  The prefixes are not input tokens: the hidden states, and so ``mask_pos`` and the
    mask-gather hooks of :class:`PromptModel`, are unchanged.

    **Positions.**  BERT-family embeddings would shift the position ids of the real tokens by the
    cache length (what P-tuning v2 and PEFT effectively do).  We keep the positions the model uses
    without prefixes: a forward pre-hook on ``mlm.base_model.embeddings`` (a public ``nn.Module``
    hook, active only inside :meth:`prefix_context`) sets its ``past_key_values_length`` (``cache_length`` in
    transformers 5.2x) argument to 0.

    **Support check.**  Several masked LMs take ``past_key_values`` (through ``**kwargs``) but never
    hand it to their attention (ALBERT, DistilBERT, DeBERTa-v2, MPNet, ModernBERT in transformers
    5.x): prefixes would be dropped or the extended mask rejected.  At construction a tiny
    probe runs the model with random prefixes (a) attended: every layer's cache must grow from ``P``
    to ``P + L``, and (b) masked out: the logits must equal the plain model's (positions intact).
    Otherwise :class:`DeepPromptUnsupported` is raised.  Verified: BERT, RoBERTa, XLM-R, CamemBERT,
    ELECTRA, ERNIE, data2vec-text, RoBERTa-PreLayerNorm, XLM-R-XL.  Not with gradient checkpointing
    (transformers drops ``past_key_values`` in checkpointed layers), which :meth:`prefix_context` refuses.

    **Parameters.**  ``prefix_projection=False``: ``prefix`` ``[layers, 2, P, D]`` (``D`` = heads x
    head_dim) drawn from N(0, 1) like P-tuning v2's ``nn.Embedding``.  ``prefix_projection=True``:
    ``embedding`` ``[P, H]`` -> ``Linear(H, prefix_hidden_size) -> Tanh -> Linear(., layers*2*D)``
    (P-tuning v2's ``PrefixEncoder``).  ``prefix_dropout`` is applied to the key/values in training.
    ``{soft}`` tokens of the template, if any, are plain input embeddings in ``tokens``.
    """

    encoder = "deep"

    def __init__(self, spec: SoftSpec, mlm: nn.Module, num_prefix: int = 16, prefix_projection: bool = False,
                 prefix_hidden_size: int = 512, prefix_dropout: float = 0.0,
                 generator: torch.Generator | None = None, check: bool = True, seed: int | None = None):
        super().__init__()
        cfg = mlm.config
        self.seed = seed
        self.prefix_hidden_size = int(prefix_hidden_size)
        self.prefix_dropout = float(prefix_dropout)
        if int(num_prefix) < 1:
            raise ConfigError(f"deep prompts need num_prefix >= 1, got {num_prefix}")
        self.spec = spec
        self.num_prefix = int(num_prefix)
        self.num_layers = int(cfg.num_hidden_layers)
        self.num_heads = int(cfg.num_attention_heads)
        hidden = int(cfg.hidden_size)
        self.head_dim = int(getattr(cfg, "head_dim", None) or hidden // self.num_heads)
        self.kv_dim = self.num_heads * self.head_dim
        self.prefix_projection = bool(prefix_projection)
        shape = (self.num_layers, 2, self.num_prefix, self.kv_dim)
        if self.prefix_projection:
            self.embedding = nn.Parameter(torch.randn(self.num_prefix, hidden, generator=generator))
            self.trans = nn.Sequential(nn.Linear(hidden, int(prefix_hidden_size)), nn.Tanh(),
                                       nn.Linear(int(prefix_hidden_size), self.num_layers * 2 * self.kv_dim))
        else:
            self.prefix = nn.Parameter(torch.randn(*shape, generator=generator))
        self.dropout = nn.Dropout(prefix_dropout)
        # the template's own {soft} tokens (optional): plain input-level embeddings
        self.tokens = (SoftPrompt(spec, mlm.get_input_embeddings(), generator=generator)
                       if spec.num_tokens > 0 else None)
        self._hidden = hidden
        if check:
            self.check_support(mlm)

    def config(self) -> dict[str, Any]:
        return {"type": "deep", "num_prefix": self.num_prefix, "prefix_projection": self.prefix_projection,
                "prefix_hidden_size": self.prefix_hidden_size, "prefix_dropout": self.prefix_dropout,
                "seed": self.seed}

    # ------------------------------------------------------------------ values
    def forward(self) -> torch.Tensor:
        """The ``[S, H]`` input-level soft tokens of the template (``S`` may be 0)."""
        if self.tokens is None:
            return next(self.parameters()).new_zeros(0, self._hidden)
        return self.tokens()

    def key_values(self) -> torch.Tensor:
        """``[layers, 2, P, D]``: keys (``[:, 0]``) and values (``[:, 1]``) of the prefixes, dropout applied."""
        return self.dropout(self.prefix_values())

    def prefix_values(self) -> torch.Tensor:
        if self.prefix_projection:
            return self.trans(self.embedding).view(self.num_prefix, self.num_layers, 2, self.kv_dim).permute(1, 2, 0, 3)
        return self.prefix

    @torch.no_grad()
    def materialize(self) -> torch.Tensor:
        """The plain ``[layers, 2, P, D]`` key/value prefixes (no dropout, no projection MLP), detached."""
        return self.prefix_values().detach().clone()

    def plain(self) -> "DeepPrompt":
        """An equivalent ``DeepPrompt`` with ``prefix_projection=False`` (for saving the final prefixes only)."""
        new = copy.deepcopy(self)
        if new.prefix_projection:
            del new.embedding, new.trans
            new.prefix_projection = False
            new.prefix = nn.Parameter(self.materialize())
        if new.tokens is not None:
            new.tokens = self.tokens.plain()
        return new

    # ------------------------------------------------------------------ injection
    def _prefixed(self, mlm: nn.Module, inputs: dict[str, torch.Tensor], kv: torch.Tensor,
                  attend: bool = True) -> dict[str, Any]:
        batch = inputs["attention_mask"].shape[0]
        # the same prefixes for every example: expanded over the batch (no copy)
        kv = kv.unsqueeze(0).expand(batch, *kv.shape)
        mask = inputs["attention_mask"]
        prefix_mask = (mask.new_ones if attend else mask.new_zeros)(batch, self.num_prefix)
        return prefixed_inputs(mlm, inputs, kv, prefix_mask, self.num_heads, self.head_dim)

    @contextlib.contextmanager
    def prefix_context(self, mlm: nn.Module, inputs: dict[str, torch.Tensor]) -> Iterator[dict[str, Any]]:
        """``with prompt.prefix_context(mlm, inputs) as inputs: mlm(**inputs)`` runs the MLM with the prefixes.

        Yields a copy of ``inputs`` with ``past_key_values`` (a fresh cache: the model appends to it)
        and the attention mask extended over the prefixes; keeps the position ids while inside.
        """
        if mlm.training and any(getattr(m, "gradient_checkpointing", False) is True for m in mlm.modules()):
            raise ConfigError("deep prompts cannot be used with gradient checkpointing: transformers drops "
                             "past_key_values inside checkpointed layers; disable gradient checkpointing")
        with keep_positions(mlm):
            yield self._prefixed(mlm, inputs, self.key_values())

    @torch.no_grad()
    def check_support(self, mlm: nn.Module) -> None:
        """Raise :class:`DeepPromptUnsupported` unless ``mlm`` applies the prefixes in every layer."""
        name = f"{type(mlm).__name__} ({getattr(mlm.config, 'model_type', '?')})"
        was_training = mlm.training
        mlm.eval()
        try:
            dev = mlm.get_input_embeddings().weight.device
            ids = torch.full((1, 4), mlm.config.vocab_size - 1, dtype=torch.long, device=dev)
            plain = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            probe_rng = torch.Generator().manual_seed(0)  # leaves the global RNG alone
            kv = torch.randn(self.num_layers, 2, self.num_prefix, self.kv_dim, generator=probe_rng).to(dev) * 3
            try:
                base = mlm(**plain).logits
                with keep_positions(mlm):
                    attended = self._prefixed(mlm, plain, kv, attend=True)
                    out_on = mlm(**attended).logits
                    masked = self._prefixed(mlm, plain, kv, attend=False)
                    out_off = mlm(**masked).logits
            except Exception as exc:
                raise DeepPromptUnsupported(
                    f"deep prompts: {name} fails with key/value prefixes passed as past_key_values: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}; use a BERT-family encoder "
                    "(BERT, RoBERTa, XLM-R, ELECTRA, ...) or the embedding/lstm/mlp encoders") from exc
            cache = attended[cache_argument(mlm)]
            grown = [cache.layers[i].get_seq_length() if i < len(cache.layers) else -1 for i in range(self.num_layers)]
            if any(g != self.num_prefix + ids.shape[1] for g in grown):
                raise DeepPromptUnsupported(
                    f"deep prompts: {name} ignores past_key_values in its self-attention layers (cache lengths "
                    f"after a forward: {grown}, expected {self.num_prefix + ids.shape[1]} each), so prefixes would "
                    "have no effect; use a BERT-family encoder (BERT, RoBERTa, XLM-R, ELECTRA, ...) or the "
                    "embedding/lstm/mlp encoders")
            if not torch.allclose(out_off.float(), base.float(), atol=1e-4, rtol=1e-4) or torch.allclose(
                    out_on.float(), base.float(), atol=1e-6, rtol=0):
                raise DeepPromptUnsupported(
                    f"deep prompts: {name} does not treat key/value prefixes as position-free extra keys (masked "
                    "prefixes changed the outputs, or attended ones did not); use a BERT-family encoder or the "
                    "embedding/lstm/mlp encoders")
        finally:
            mlm.train(was_training)


def prefixed_inputs(mlm: nn.Module, inputs: dict[str, torch.Tensor], kv: torch.Tensor, prefix_mask: torch.Tensor,
                    num_heads: int, head_dim: int) -> dict[str, Any]:
    """``inputs`` with per-example key/value prefixes: ``kv`` ``[B, layers, 2, P, heads*head_dim]`` goes into a fresh
    ``DynamicCache`` as ``past_key_values``, and the 2-D attention mask is extended in front by ``prefix_mask``
    ``[B, P]`` (1 = attend, 0 = a padding prefix position no token attends to).  Used by :class:`DeepPrompt` (the
    same prefixes for every example) and :class:`promptlearn.multitask.MultiTaskModel` (each example its task's)."""
    from transformers import DynamicCache

    mask = inputs["attention_mask"]
    ref = inputs.get("inputs_embeds")
    dtype = ref.dtype if ref is not None else mlm.get_input_embeddings().weight.dtype
    batch, layers, _, num_prefix = kv.shape[:4]
    kv = kv.to(device=mask.device, dtype=dtype)
    # [B, layers, 2, P, heads*hd] -> [B, layers, 2, heads, P, hd]
    kv = kv.view(batch, layers, 2, num_prefix, num_heads, head_dim).transpose(3, 4)
    cache = DynamicCache()
    for layer in range(layers):
        cache.update(kv[:, layer, 0], kv[:, layer, 1], layer)
    out = dict(inputs)
    out[cache_argument(mlm)] = cache
    out["attention_mask"] = torch.cat([prefix_mask.to(device=mask.device, dtype=mask.dtype), mask], dim=1)
    return out


def cache_argument(mlm: nn.Module) -> str:
    """The keyword the encoder of ``mlm`` takes its key/value cache by: ``cache`` (transformers >= 5.2x, where
    ``past_key_values`` is a deprecated alias) or ``past_key_values``."""
    import inspect

    encoder = getattr(mlm, "base_model", mlm)
    try:
        params = inspect.signature(encoder.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic forwards
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


#: the embeddings' keyword for the number of cached positions (transformers 5.0-5.1x: past_key_values_length)
_PAST_LENGTH_KWARGS = ("past_key_values_length", "cache_length")


@contextlib.contextmanager
def keep_positions(mlm: nn.Module) -> Iterator[None]:
    """While inside, the embeddings of ``mlm`` number the real tokens as without prefixes (a forward pre-hook on
    ``mlm.base_model.embeddings`` sets its ``past_key_values_length`` / ``cache_length`` argument to 0)."""
    def zero_past_length(module: nn.Module, args: Any, kwargs: dict[str, Any]) -> Any:
        if any(kwargs.get(k) for k in _PAST_LENGTH_KWARGS):
            kwargs = dict(kwargs, **{k: 0 for k in _PAST_LENGTH_KWARGS if k in kwargs})
        return args, kwargs

    embeddings = getattr(getattr(mlm, "base_model", mlm), "embeddings", None)
    handle = (embeddings.register_forward_pre_hook(zero_past_length, with_kwargs=True)
              if isinstance(embeddings, nn.Module) else None)
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


_OPTIONS = {
    "embedding": {"seed"},
    "lstm": {"seed", "hidden_size", "dropout"},
    "mlp": {"seed", "hidden_size"},
    "deep": {"seed", "num_prefix", "prefix_projection", "prefix_hidden_size", "prefix_dropout"},
}


def build_soft_prompt(spec: SoftSpec, mlm: nn.Module, encoder: str | None = "embedding", **options: Any) -> nn.Module:
    """Build the soft prompt for a template's ``SoftSpec`` and a masked LM.

    ``encoder``: ``embedding`` | ``lstm`` | ``mlp`` | ``deep``.  Options (all keyword, all optional):

    * ``seed`` (int, all): seeds the initialisation (vectors and encoder weights) without touching
      the global RNG; ``None`` uses the global RNG.
    * ``hidden_size`` (int, lstm/mlp; default: the model's hidden size H): LSTM output / MLP width.
    * ``dropout`` (float, lstm; default 0.0): dropout between the two LSTM layers.
    * ``num_prefix`` (int, deep; default 16): prefix key/value vectors per layer.
    * ``prefix_projection`` (bool, deep; default False): reparameterise the prefixes by an MLP.
    * ``prefix_hidden_size`` (int, deep; default 512): width of that MLP.
    * ``prefix_dropout`` (float, deep; default 0.0): dropout on the prefix keys/values in training.

    ``embedding``/``lstm``/``mlp`` need ``{soft}`` tokens in the template; ``deep`` does not.
    """
    from .backbone import unwrap

    mlm = unwrap(mlm)  # a PEFT-wrapped LM: the prompt belongs to the transformers model inside
    encoder = (encoder or "embedding").lower()
    if encoder not in _OPTIONS:
        raise ConfigError(f"unknown prompt encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
    unknown = set(options) - _OPTIONS[encoder]
    if unknown:
        raise ConfigError(f"prompt encoder {encoder!r} takes the options {sorted(_OPTIONS[encoder])}, "
                        f"not {sorted(unknown)}")
    seed = options.pop("seed", None)
    if encoder != "deep" and spec.num_tokens == 0:
        raise ConfigError(f"the {encoder!r} prompt encoder needs {{soft}} tokens in the template, which has none; "
                         "add some (e.g. '{soft*4} {text_a} It was {mask}.' or strategy.soft_prefix=N) "
                         "or use the 'deep' encoder, which needs none")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with _seeded(seed):
        if encoder == "embedding":
            return SoftPrompt(spec, mlm.get_input_embeddings(), generator=generator, seed=seed)
        if encoder in ("lstm", "mlp"):
            return ReparamPrompt(spec, mlm.get_input_embeddings(), encoder=encoder, generator=generator, seed=seed,
                                 **options)
        return DeepPrompt(spec, mlm, generator=generator, seed=seed, **options)
