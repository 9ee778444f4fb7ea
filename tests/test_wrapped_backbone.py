"""Wrapped backbones (PEFT and anything with get_base_model()): scores at the right position, or an error."""

import pytest
import torch
from torch import nn

from promptlearn import PromptModel, Template, Verbalizer
from promptlearn.data import PromptCollator
from promptlearn.prompt_model import MaskGatherError
from promptlearn.strategies import get_strategy, parameter_groups

from conftest import tiny_mlm

peft = pytest.importorskip("peft")

ROWS = [{"text_a": "the movie was great ."}, {"text_a": "a boring plot and bad acting , really awful"},
        {"text_a": "i love this film"}]


def _batch(template, rows=ROWS):
    return PromptCollator(template.tokenizer.pad_token_id)([template.encode(r) for r in rows])


def _lora(mlm, seed=0):
    torch.manual_seed(seed)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False)
    return peft.get_peft_model(mlm, cfg)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_lora_wrapped_scores_equal_the_wrapped_models_logits_at_the_mask(kind, bert_tokenizer, roberta_tokenizer):
    tok = roberta_tokenizer if kind == "roberta" else bert_tokenizer
    plain = tiny_mlm(kind, len(tok))
    base_ref = None
    template = Template("{text_a|shortenable} It was {mask} .", tok, max_length=32)
    verbalizer = Verbalizer({"neg": ["bad", "terrible"], "pos": "great"}, tok)
    batch = _batch(template)
    kw = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    if kind == "roberta":
        kw.pop("token_type_ids", None)
    rows = torch.arange(len(ROWS))
    with torch.no_grad():
        base_ref = plain(**kw).logits[rows, batch["mask_pos"]][:, verbalizer.token_ids].clone()
    wrapped = _lora(plain).eval()
    model = PromptModel(wrapped, template, verbalizer).eval()
    assert model.backbone is wrapped.get_base_model() and model.restricted_head
    with torch.no_grad():
        ref = wrapped(**kw).logits[rows, batch["mask_pos"]][:, verbalizer.token_ids]
        out = model(**{k: v for k, v in batch.items() if k != "token_type_ids" or kind != "roberta"})
    torch.testing.assert_close(out.token_logits, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ref, base_ref, atol=1e-4)  # the LoRA path is really active
    assert not torch.allclose(out.token_logits, wrapped(**kw).logits[:, 0][:, verbalizer.token_ids], atol=1e-4)


def test_lora_parameters_form_the_adapter_group_and_train_alone(bert_tokenizer):
    wrapped = _lora(tiny_mlm("bert", len(bert_tokenizer)))
    template = Template("{text_a} It was {mask} .", bert_tokenizer, max_length=32)
    model = PromptModel(wrapped, template, Verbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer))
    groups = parameter_groups(model)
    lora = {id(p) for n, p in wrapped.named_parameters() if "lora_" in n}
    assert {id(p) for p in groups["adapter"]} == lora and lora
    assert not lora & {id(p) for p in groups["lm"]}
    strategy = get_strategy({"name": "fixed_lm", "prompt_lr": 1e-2, "adapter_lr": 1e-2})
    trained = strategy.configure(model)
    assert {id(p) for p in trained["adapter"]} == lora and not trained["lm"]
    assert strategy.learning_rates()["adapter"] == 1e-2
    before = {n: p.detach().clone() for n, p in wrapped.named_parameters()}
    opt = torch.optim.AdamW([p for ps in trained.values() for p in ps], lr=1e-2)
    batch = dict(_batch(template), labels=torch.tensor([1, 0, 1]))
    strategy.compute_loss(model, batch).backward()
    opt.step()
    changed = {n for n, p in wrapped.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)


class _Bypass(nn.Module):
    """A wrapper that claims one model with get_base_model() but runs another: the hooks cannot fire."""

    def __init__(self, claimed, runs):
        super().__init__()
        self.claimed, self.runs = claimed, runs

    def get_base_model(self):
        return self.claimed

    def forward(self, **kw):
        return self.runs(**kw)


def test_a_gather_hook_that_never_fires_raises_instead_of_reading_position_0(bert_tokenizer):
    template = Template("{text_a} It was {mask} .", bert_tokenizer, max_length=32)
    verbalizer = Verbalizer({"neg": "bad", "pos": "great"}, bert_tokenizer)
    wrapper = _Bypass(tiny_mlm("bert", len(bert_tokenizer)), tiny_mlm("bert", len(bert_tokenizer), seed=1)).eval()
    with pytest.raises(MaskGatherError, match="did not fire"):
        PromptModel(wrapper, template, verbalizer)  # the construction-time self-check already catches it
    model = PromptModel(wrapper, template, verbalizer, check_head=False)
    with pytest.raises(MaskGatherError, match="wrong position"):
        model(**_batch(template))
