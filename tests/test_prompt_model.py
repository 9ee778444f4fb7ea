"""PromptModel must equal the raw masked LM's logits at the mask, indexed by the label words."""

import pytest
import torch

from promptlearn.data import PromptCollator
from promptlearn.prompt_model import PromptModel
from promptlearn.strategies import get_strategy
from promptlearn.template import Template
from promptlearn.verbalizers import Verbalizer

from conftest import tiny_mlm

SENTENCES = [
    {"text_a": "the movie was great .", "text_b": "yes it was"},
    {"text_a": "a boring plot and bad acting", "text_b": "no"},
    {"text_a": "i love this film , really fun !" * 3, "text_b": "maybe it is fine"},
]


def _batch(template, rows):
    feats = [template.encode(r) for r in rows]
    return PromptCollator(template.tokenizer.pad_token_id)(feats)


def _reference(mlm, batch, token_ids):
    """Full-vocabulary logits at every position, then the mask row and the label columns."""
    kw = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    full = mlm(**kw).logits
    rows = torch.arange(full.shape[0])
    return full[rows, batch["mask_pos"]][:, token_ids]


@pytest.mark.parametrize("kind", ["bert", "roberta", "albert", "electra", "distilbert"])
@pytest.mark.parametrize("pair", [False, True])
def test_label_logits_equal_full_mlm_logits(kind, pair, bert_tokenizer, roberta_tokenizer):
    tok = roberta_tokenizer if kind == "roberta" else bert_tokenizer
    mlm = tiny_mlm(kind, len(tok))
    text = "{text_a|shortenable} ? {mask} , {sep}{text_b}" if pair else "{text_a|shortenable} It was {mask} ."
    template = Template(text, tok, max_length=24)
    verbalizer = Verbalizer({"neg": ["bad", "terrible"], "pos": "great", "mid": "fine"}, tok)
    model = PromptModel(mlm, template, verbalizer).eval()
    assert model.restricted_head, f"{kind}: the label-row head should reproduce the full head"
    batch = _batch(template, SENTENCES)
    if kind in ("roberta", "distilbert"):
        batch.pop("token_type_ids", None)
    with torch.no_grad():
        out = model(**batch)
        ref = _reference(mlm, batch, verbalizer.token_ids)
    torch.testing.assert_close(out.token_logits, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits, verbalizer(ref), atol=1e-5, rtol=1e-5)


def test_fallback_full_head_at_mask_is_also_exact(bert_tokenizer):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    template = Template("{text_a} It was {mask}.", bert_tokenizer)
    verbalizer = Verbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer)
    model = PromptModel(mlm, template, verbalizer, check_head=False).eval()
    assert not model.restricted_head
    batch = _batch(template, SENTENCES)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).token_logits, _reference(mlm, batch, verbalizer.token_ids),
                                   atol=1e-5, rtol=1e-5)


def test_head_never_sees_every_position(bert_tokenizer):
    """The output projection receives one row per example, not [B, L, H]."""
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    template = Template("{text_a} It was {mask}.", bert_tokenizer)
    model = PromptModel(mlm, template, Verbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer), check_head=False)
    shapes = []
    h = mlm.get_output_embeddings().register_forward_hook(lambda m, a, o: shapes.append(tuple(o.shape)))
    batch = _batch(template, SENTENCES)
    with torch.no_grad():
        model(**batch)
    h.remove()
    assert shapes == [(3, 1, len(bert_tokenizer))]


def test_gradients_flow_and_loss(bert_tokenizer):
    mlm = tiny_mlm("bert", len(bert_tokenizer)).train()
    template = Template("{soft*2} {text_a} It was {mask}.", bert_tokenizer)
    model = PromptModel(mlm, template, Verbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer))
    batch = _batch(template, SENTENCES)
    batch["labels"] = torch.tensor([1, 0, 1])
    loss = get_strategy("prompt_lm").compute_loss(model, batch)  # the loss lives in the strategy, not in forward
    loss.backward()
    assert model.soft_prompt.embedding.grad is not None and model.soft_prompt.embedding.grad.abs().sum() > 0
    assert mlm.get_input_embeddings().weight.grad is not None


def test_soft_tokens_are_injected(bert_tokenizer):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    template = Template("{soft:great} {text_a} It was {mask}.", bert_tokenizer)
    model = PromptModel(mlm, template, Verbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer)).eval()
    batch = _batch(template, SENTENCES)
    # initialised from the embedding of "great": equals the hard-token model with "great" in that slot
    hard = Template("great {text_a} It was {mask}.", bert_tokenizer)
    hard_batch = _batch(hard, SENTENCES)
    assert torch.equal(hard_batch["mask_pos"], batch["mask_pos"])
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).token_logits, _reference(mlm, hard_batch, model.verbalizer.token_ids),
                                   atol=1e-5, rtol=1e-5)


def test_unloadable_model_names_itself_and_the_override(monkeypatch, tmp_path):
    from promptlearn.prompt_model import ModelLoadError, load_backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_backbone(str(tmp_path / "no-such-model"))
    assert "no-such-model" in str(err.value) and "model.name_or_path=" in str(err.value)
