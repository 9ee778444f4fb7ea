"""Soft prompts: the four encoders (embedding, lstm, mlp, deep) built by build_soft_prompt."""

import pytest
import torch

from promptlearn.data import PromptCollator
from promptlearn.errors import ConfigError
from promptlearn.prompt_model import PromptModel
from promptlearn.strategies import get_strategy
from promptlearn.soft_prompt import (DeepPrompt, DeepPromptUnsupported, ReparamPrompt, SoftPrompt,
                                     build_soft_prompt)
from promptlearn.template import Template
from promptlearn.verbalizers import Verbalizer

from conftest import tiny_mlm

ROWS = [
    {"text_a": "the movie was great ."},
    {"text_a": "a boring plot and bad acting , really awful"},
    {"text_a": "i love this film"},
]
LABELS = {"neg": ["bad", "terrible"], "pos": "great"}
SOFT_TEMPLATE = "{soft*2} {text_a} {soft:It was|id=p} {mask} {soft|id=q} . {soft:It was|id=p}"


def _batch(template, rows):
    batch = PromptCollator(template.tokenizer.pad_token_id)([template.encode(r) for r in rows])
    if "token_type_ids" not in getattr(template.tokenizer, "model_input_names", []):
        batch.pop("token_type_ids", None)
    return batch


def _setup(kind, tokenizers, text=SOFT_TEMPLATE, encoder="embedding", **options):
    tok = tokenizers[kind]
    mlm = tiny_mlm(kind, len(tok))
    template = Template(text, tok, max_length=32)
    prompt = build_soft_prompt(template.soft_spec, mlm, encoder, seed=0, **options)
    model = PromptModel(mlm, template, Verbalizer(LABELS, tok), soft_prompt=prompt).eval()
    return model, template


@pytest.fixture
def tokenizers(bert_tokenizer, roberta_tokenizer):
    return {"bert": bert_tokenizer, "roberta": roberta_tokenizer}


# ---------------------------------------------------------------------------------------------- factory
@pytest.mark.parametrize("encoder,cls", [("embedding", SoftPrompt), ("lstm", ReparamPrompt), ("mlp", ReparamPrompt)])
def test_token_encoders_shape(encoder, cls, tokenizers):
    model, template = _setup("bert", tokenizers, encoder=encoder)
    prompt = model.soft_prompt
    assert isinstance(prompt, cls)
    spec = template.soft_spec
    assert spec.num_tokens == 5  # 2 + "It was" (2 sub-tokens, shared by id p) + 1 (id q)
    assert prompt().shape == (spec.num_tokens, model.mlm.config.hidden_size)
    assert prompt.materialize().shape == (spec.num_tokens, model.mlm.config.hidden_size)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_deep_shape_and_template_without_soft_tokens(kind, tokenizers):
    model, template = _setup(kind, tokenizers, text="{text_a} It was {mask} .", encoder="deep", num_prefix=5)
    prompt = model.soft_prompt
    cfg = model.mlm.config
    assert isinstance(prompt, DeepPrompt) and not template.has_soft_tokens
    assert prompt.key_values().shape == (cfg.num_hidden_layers, 2, 5, cfg.hidden_size)
    assert prompt().shape == (0, cfg.hidden_size)
    assert model.restricted_head  # the head self-check is not disturbed by the prefixes
    with torch.no_grad():
        out = model(**_batch(template, ROWS))
    assert out.token_logits.shape == (3, len(model.verbalizer.token_ids))


def test_factory_options_and_errors(tokenizers):
    tok = tokenizers["bert"]
    mlm = tiny_mlm("bert", len(tok))
    spec = Template("{soft*3} {text_a} {mask}", tok).soft_spec
    with pytest.raises(ValueError, match="unknown prompt encoder"):
        build_soft_prompt(spec, mlm, "gru")
    with pytest.raises(ConfigError, match="num_prefix"):
        build_soft_prompt(spec, mlm, "lstm", num_prefix=4)
    with pytest.raises(ValueError, match="needs \\{soft\\} tokens"):
        build_soft_prompt(Template("{text_a} {mask}", tok).soft_spec, mlm, "mlp")
    # seeded initialisation is reproducible and leaves the global RNG alone
    state = torch.get_rng_state()
    a = build_soft_prompt(spec, mlm, "lstm", seed=3, hidden_size=16, dropout=0.1)
    assert torch.equal(state, torch.get_rng_state())
    b = build_soft_prompt(spec, mlm, "lstm", seed=3, hidden_size=16, dropout=0.1)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n
    assert a.lstm.hidden_size == 8 and a().shape == (3, 32)
    deep = build_soft_prompt(spec, mlm, "deep", seed=3, num_prefix=2, prefix_projection=True, prefix_hidden_size=8)
    assert deep.trans[0].out_features == 8 and deep().shape == (3, 32)


def test_prompt_model_rejects_a_prompt_for_another_template(tokenizers):
    tok = tokenizers["bert"]
    mlm = tiny_mlm("bert", len(tok))
    prompt = build_soft_prompt(Template("{soft*3} {text_a} {mask}", tok).soft_spec, mlm)
    with pytest.raises(ValueError, match="3 soft tokens"):
        PromptModel(mlm, Template("{soft*2} {text_a} {mask}", tok), Verbalizer(LABELS, tok), soft_prompt=prompt)


# ---------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind,encoder,options", [
    ("bert", "embedding", {}), ("bert", "lstm", {}), ("bert", "mlp", {}),
    ("bert", "deep", {"num_prefix": 3}), ("roberta", "deep", {"num_prefix": 3}),
    ("roberta", "deep", {"num_prefix": 3, "prefix_projection": True, "prefix_hidden_size": 16}),
    ("roberta", "lstm", {}),
])
def test_gradients_reach_the_prompt_not_the_frozen_mlm(kind, encoder, options, tokenizers):
    model, template = _setup(kind, tokenizers, encoder=encoder, **options)
    for p in model.mlm.parameters():
        p.requires_grad_(False)
    model.train()
    batch = dict(_batch(template, ROWS), labels=torch.tensor([1, 0, 1]))
    get_strategy("fixed_lm").compute_loss(model, batch).backward()
    params = dict(model.soft_prompt.named_parameters())
    assert params
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{encoder}: no gradient for {name}"
    assert all(p.grad is None for p in model.mlm.parameters())


# ---------------------------------------------------------------------------------------------- correctness
def _hard_reference(mlm, template, rows):
    kw = {k: v for k, v in _batch(template, rows).items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    logits = mlm(**kw).logits
    mask_pos = _batch(template, rows)["mask_pos"]
    return logits[torch.arange(len(rows)), mask_pos]


@pytest.mark.parametrize("encoder", ["embedding", "deep"])
def test_soft_tokens_initialised_from_words_equal_the_hard_template(encoder, tokenizers):
    tok = tokenizers["bert"]
    mlm = tiny_mlm("bert", len(tok))
    template = Template("{soft:great} {text_a} It was {mask}.", tok)
    options = {"num_prefix": 2} if encoder == "deep" else {}
    prompt = build_soft_prompt(template.soft_spec, mlm, encoder, **options)
    model = PromptModel(mlm, template, Verbalizer(LABELS, tok), soft_prompt=prompt).eval()
    hard = Template("great {text_a} It was {mask}.", tok)
    ids = model.verbalizer.token_ids
    with torch.no_grad():
        ref = _hard_reference(mlm, hard, ROWS)[:, ids]
        if encoder == "deep":  # the {soft} slot is right, and the prefixes do change the outputs
            assert torch.equal(model.soft_prompt(), mlm.get_input_embeddings().weight[template.soft_spec.init_token_ids[0]][None])
            assert not torch.allclose(model(**_batch(template, ROWS)).token_logits, ref, atol=1e-3)
        else:
            torch.testing.assert_close(model(**_batch(template, ROWS)).token_logits, ref, atol=1e-5, rtol=1e-5)


def _positions(kind, mlm, n, start=0):
    base = mlm.config.pad_token_id + 1 if kind == "roberta" else 0
    return torch.arange(base + start, base + start + n)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_deep_prefixes_equal_attending_to_real_tokens(kind, impl, tokenizers):
    """Reference: run the plain MLM on [X; example] and record every layer's keys/values of X.

    Installed as the deep prompt's prefixes, they must reproduce that run's logits at the mask of
    the example alone, in every layer, with the example's own positions kept (position ids of the
    reference run are given explicitly: X anywhere, the example at the positions it has alone).
    """
    tok = tokenizers[kind]
    mlm = tiny_mlm(kind, len(tok))
    mlm.set_attn_implementation(impl)
    template = Template("{text_a} It was {mask} .", tok)
    verbalizer = Verbalizer(LABELS, tok)
    x_ids = torch.tensor(tok("great movie , so fun", add_special_tokens=False)["input_ids"])
    P = len(x_ids)
    prompt = build_soft_prompt(template.soft_spec, mlm, "deep", num_prefix=P)
    model = PromptModel(mlm, template, verbalizer, soft_prompt=prompt).eval()
    layers = mlm.base_model.encoder.layer
    for row in ROWS:
        batch = _batch(template, [row])
        L = batch["input_ids"].shape[1]
        captured = {}
        hooks = [getattr(layer.attention.self, proj).register_forward_hook(
            lambda m, a, o, key=(i, j): captured.__setitem__(key, o[0, :P].detach()))
            for i, layer in enumerate(layers) for j, proj in enumerate(("key", "value"))]
        ref_inputs = {
            "input_ids": torch.cat([x_ids, batch["input_ids"][0]])[None],
            "attention_mask": torch.ones(1, P + L, dtype=torch.long),
            "position_ids": torch.cat([_positions(kind, mlm, P, start=7), _positions(kind, mlm, L)])[None],
        }
        if "token_type_ids" in batch:
            ref_inputs["token_type_ids"] = torch.cat([torch.zeros(P, dtype=torch.long), batch["token_type_ids"][0]])[None]
        with torch.no_grad():
            ref = mlm(**ref_inputs).logits[0, P + batch["mask_pos"][0], verbalizer.token_ids]
        for h in hooks:
            h.remove()
        with torch.no_grad():
            prompt.prefix.copy_(torch.stack([torch.stack([captured[i, 0], captured[i, 1]]) for i in range(len(layers))]))
            out = model(**batch).token_logits[0]
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_deep_batches_with_padding_equal_single_examples(kind, tokenizers):
    model, template = _setup(kind, tokenizers, text="{text_a} It was {mask} .", encoder="deep", num_prefix=4)
    with torch.no_grad():
        together = model(**_batch(template, ROWS)).token_logits
        alone = torch.cat([model(**_batch(template, [r])).token_logits for r in ROWS])
        plain = PromptModel(model.mlm, template, model.verbalizer)(**_batch(template, ROWS)).token_logits
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(together, plain, atol=1e-3)  # the prefixes matter


@pytest.mark.parametrize("kind", ["albert", "distilbert"])
def test_deep_refuses_models_that_ignore_prefixes(kind, tokenizers):
    mlm = tiny_mlm(kind, len(tokenizers["bert"]))
    spec = Template("{text_a} {mask}", tokenizers["bert"]).soft_spec
    with pytest.raises(DeepPromptUnsupported, match="past_key_values"):
        build_soft_prompt(spec, mlm, "deep", num_prefix=2)


def test_deep_refuses_gradient_checkpointing(tokenizers):
    model, template = _setup("bert", tokenizers, text="{text_a} {mask}", encoder="deep", num_prefix=2)
    from promptlearn.trainer import enable_activation_checkpointing

    enable_activation_checkpointing(model.mlm)
    model.train()
    with pytest.raises(ValueError, match="gradient checkpointing"):
        model(**_batch(template, ROWS))


# ---------------------------------------------------------------------------------------------- injection
@pytest.mark.parametrize("encoder", ["embedding", "lstm"])
def test_injection_is_vectorised(encoder, tokenizers):
    """The encoder runs once per forward whatever the batch size, and embed() matches a per-token loop."""
    model, template = _setup("bert", tokenizers, encoder=encoder)
    calls = []
    model.soft_prompt.register_forward_hook(lambda m, a, o: calls.append(1))
    if encoder == "lstm":
        model.soft_prompt.lstm.register_forward_hook(lambda m, a, o: calls.append(2))
    for rows in (ROWS, ROWS * 4):
        calls.clear()
        batch = _batch(template, rows)
        with torch.no_grad():
            model(**batch)
            assert sorted(calls) == ([1, 2] if encoder == "lstm" else [1])  # once, not per example
            emb = model.embed(batch["input_ids"], batch["soft_ids"])
            soft = model.soft_prompt()
            word = model.mlm.get_input_embeddings()
            for b in range(len(rows)):
                for t in range(batch["input_ids"].shape[1]):
                    s = int(batch["soft_ids"][b, t])
                    expect = soft[s - 1] if s > 0 else word.weight[batch["input_ids"][b, t]]
                    assert torch.equal(emb[b, t], expect)
    # sharing by id: the two "It was" slots read the same two vectors
    ids = _batch(template, ROWS[:1])["soft_ids"][0].tolist()
    assert sorted(i for i in ids if i > 0) == [1, 2, 3, 3, 4, 4, 5]


# ---------------------------------------------------------------------------------------------- materialize
@pytest.mark.parametrize("encoder", ["lstm", "mlp"])
def test_materialized_matrix_gives_the_same_logits(encoder, tokenizers):
    model, template = _setup("roberta", tokenizers, encoder=encoder)
    matrix = model.soft_prompt.materialize()
    assert not matrix.requires_grad
    loaded = SoftPrompt.from_weight(template.soft_spec, matrix)
    assert set(loaded.state_dict()) == {"embedding"}
    plain = PromptModel(model.mlm, template, model.verbalizer, soft_prompt=loaded).eval()
    batch = _batch(template, ROWS)
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch).logits, model(**batch).logits, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(model.soft_prompt.plain()(), matrix)


def test_deep_plain_drops_the_projection(tokenizers):
    model, template = _setup("bert", tokenizers, encoder="deep", num_prefix=3, prefix_projection=True,
                             prefix_hidden_size=16)
    plain_prompt = model.soft_prompt.plain()
    assert set(plain_prompt.state_dict()) == {"prefix", "tokens.embedding"}
    assert "trans.0.weight" in model.soft_prompt.state_dict()  # the original is untouched
    plain = PromptModel(model.mlm, template, model.verbalizer, soft_prompt=plain_prompt).eval()
    batch = _batch(template, ROWS)
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch).logits, model(**batch).logits, atol=1e-5, rtol=1e-5)
