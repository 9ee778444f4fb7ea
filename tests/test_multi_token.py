"""Exact multi-token label words: n masks per word, every word of every class in one batched forward.

The reference is brute force, written independently of promptlearn.multi_token: for each example
and each word, the encoded example's one mask is replaced by n masks in a plain Python list, the raw
masked LM runs on that one sequence (batch size 1) once per sub-token, and the sub-tokens'
full-vocabulary log-probabilities are summed (or averaged).
"""

import pytest
import torch

from promptlearn import build_model
from promptlearn.calibration import calibrate
from promptlearn.data import PromptCollator
from promptlearn.model_base import BaseModel
from promptlearn.prompt_model import PromptModel
from promptlearn.soft_prompt import build_soft_prompt
from promptlearn.template import Template
from promptlearn.verbalizers import WORD_LOGPROBS, Verbalizer

from conftest import tiny_mlm

ROWS = [
    {"text_a": "the movie was great .", "text_b": "yes it was"},
    {"text_a": "a boring plot and bad acting , really", "text_b": "no"},
    {"text_a": "i love this film , really fun !" * 4, "text_b": "maybe it is fine"},  # truncated at max_length 24
]
WORDS = {"bert": {"neg": ["bad", "greats"], "pos": ["okay", "good"], "mid": ["fine", "ok"]},
         "roberta": {"neg": ["bad", "awfully"], "pos": ["okay", "good"], "mid": ["fine", "questions"]}}


def _batch(template, rows, drop_types=False):
    batch = PromptCollator(template.tokenizer.pad_token_id)([template.encode(r) for r in rows])
    if drop_types:
        batch.pop("token_type_ids", None)
    return batch


@torch.no_grad()
def _brute_force(mlm, template, verbalizer, row, fill, reduce, drop_types):
    """[W] word scores for one example, one forward per sub-token at batch size 1."""
    enc = template.encode(row)
    ids, p = list(enc["input_ids"]), enc["mask_pos"]
    types = list(enc.get("token_type_ids", [0] * len(ids)))
    mask = template.tokenizer.mask_token_id
    scores = []
    for word_ids in verbalizer.words_ids:
        n = len(word_ids)
        total = 0.0
        for k in range(n):
            x = ids[:p] + [mask] * n + ids[p + 1:]
            if fill == "left_to_right":
                x[p: p + k] = word_ids[:k]
            kw = {"input_ids": torch.tensor([x])}
            if not drop_types:
                kw["token_type_ids"] = torch.tensor([types[:p] + [types[p]] * n + types[p + 1:]])
            logp = torch.log_softmax(mlm(**kw).logits[0, p + k].float(), -1)
            total += float(logp[word_ids[k]])
        scores.append(total / n if reduce == "mean" else total)
    return torch.tensor(scores)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("fill", ["parallel", "left_to_right"])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_batched_exact_scores_equal_brute_force(kind, fill, reduce, bert_tokenizer, roberta_tokenizer):
    tok = roberta_tokenizer if kind == "roberta" else bert_tokenizer
    mlm = tiny_mlm(kind, len(tok))
    template = Template("{text_a|shortenable} It was {mask} .", tok, max_length=24)
    verbalizer = Verbalizer(WORDS[kind], tok, multi_token_fill=fill, multi_token_reduce=reduce)
    lengths = sorted({len(w) for w in verbalizer.words_ids})
    assert lengths[0] == 1 and lengths[-1] > 1, f"{kind}: the test needs single- and multi-token words, got {lengths}"
    model = PromptModel(mlm, template, verbalizer).eval()
    assert model.verbalizer.input == WORD_LOGPROBS and model.template.reserve == lengths[-1] - 1
    drop = kind == "roberta"
    batch = _batch(model.template, ROWS, drop)
    with torch.no_grad():
        out = model(**batch)
    ref = torch.stack([_brute_force(mlm, model.template, model.verbalizer, r, fill, reduce, drop) for r in ROWS])
    torch.testing.assert_close(out.word_logprobs, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.logits, model.verbalizer(ref), atol=1e-4, rtol=1e-4)
    # the truncated example still has its mask slot and the expanded rows fit max_length
    assert len(model.template.encode(ROWS[2])["input_ids"]) + lengths[-1] - 1 <= model.template.max_length


@pytest.mark.parametrize("fill", ["parallel", "left_to_right"])
def test_one_forward_per_batch(fill, bert_tokenizer):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    template = Template("{text_a} It was {mask} .", bert_tokenizer, max_length=24)
    model = PromptModel(mlm, template, Verbalizer(WORDS["bert"], bert_tokenizer, multi_token_fill=fill)).eval()
    calls = []
    handle = mlm.base_model.register_forward_hook(lambda m, a, o: calls.append(o[0].shape[0]))
    try:
        with torch.no_grad():
            model(**_batch(model.template, ROWS))
    finally:
        handle.remove()
    plan = model.verbalizer.mask_plan
    assert len(calls) == 1 and calls[0] == len(ROWS) * plan.num_variants
    # parallel: one variant per distinct word length (here 1 and 2 masks); left_to_right adds the filled prefixes
    assert plan.num_variants == (2 if fill == "parallel" else 2 + len({tuple(w[:1]) for w in
                                                                       model.verbalizer.words_ids if len(w) == 2}))


def test_single_token_words_keep_the_fast_path(bert_tokenizer):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    template = Template("{text_a} It was {mask} .", bert_tokenizer, max_length=24)
    words = {"neg": ["bad", "awful"], "pos": ["good", "great"]}
    exact = PromptModel(mlm, template, Verbalizer(words, bert_tokenizer)).eval()
    mean = PromptModel(mlm, template, Verbalizer(words, bert_tokenizer, multi_token="mean")).eval()
    assert exact.verbalizer.input == "label_logits" and exact.verbalizer.mask_plan is None
    assert exact.template.reserve == 0 and exact.template is template
    with torch.no_grad():
        batch = _batch(template, ROWS)
        assert torch.equal(exact(**batch).logits, mean(**batch).logits)


def test_one_mask_approximations_differ_from_exact(bert_tokenizer):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    template = Template("{text_a} It was {mask} .", bert_tokenizer, max_length=24)
    exact = PromptModel(mlm, template, Verbalizer(WORDS["bert"], bert_tokenizer)).eval()
    one = PromptModel(mlm, template, Verbalizer(WORDS["bert"], bert_tokenizer, multi_token="mean")).eval()
    assert one.verbalizer.input == "label_logits" and one.template.reserve == 0
    with torch.no_grad():
        assert not torch.allclose(exact(**_batch(exact.template, ROWS)).logits,
                                  one(**_batch(one.template, ROWS)).logits, atol=1e-3)


@pytest.mark.parametrize("encoder", ["embedding", "deep"])
def test_soft_and_deep_prompts_score_each_example_as_alone(encoder, bert_tokenizer):
    """With soft tokens or per-layer prefixes the expanded rows still belong to their example: batched scores
    equal one example at a time (padding and variants never leak between rows)."""
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    text = "{soft*2} {text_a|shortenable} It was {mask} ." if encoder == "embedding" else "{text_a} It was {mask} ."
    template = Template(text, bert_tokenizer, max_length=24)
    soft = build_soft_prompt(template.soft_spec, mlm, encoder, **({"num_prefix": 3} if encoder == "deep" else {}))
    model = PromptModel(mlm, template, Verbalizer(WORDS["bert"], bert_tokenizer), soft_prompt=soft).eval()
    with torch.no_grad():
        together = model(**_batch(model.template, ROWS)).word_logprobs
        alone = torch.cat([model(**_batch(model.template, [r])).word_logprobs for r in ROWS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_gradients_reach_the_lm_and_the_prompt(bert_tokenizer):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    template = Template("{soft} {text_a} It was {mask} .", bert_tokenizer, max_length=24)
    model = PromptModel(mlm, template, Verbalizer(WORDS["bert"], bert_tokenizer)).train()
    batch = _batch(model.template, ROWS)
    loss = torch.nn.functional.cross_entropy(model(**batch).logits, torch.tensor([0, 1, 2]))
    loss.backward()
    assert all(p.grad.abs().sum() > 0 for p in model.soft_prompt.parameters())
    assert mlm.base_model.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


def test_calibration_over_words_and_save_load_round_trip(bert_tokenizer, tmp_path):
    mlm = tiny_mlm("bert", len(bert_tokenizer))
    tmp_path.joinpath("lm").mkdir()
    mlm.save_pretrained(tmp_path / "lm")
    bert_tokenizer.save_pretrained(tmp_path / "lm")
    template = Template("{text_a|shortenable} It was {mask} .", bert_tokenizer, max_length=24)
    verbalizer = Verbalizer(WORDS["bert"], bert_tokenizer, multi_token_fill="left_to_right", multi_token_reduce="mean")
    model = PromptModel(mlm, template, verbalizer, base_model=str(tmp_path / "lm")).eval()
    info = calibrate(model, "content_free", "cpu")
    assert len(info["prior"]) == len(model.verbalizer.words_ids)  # a prior over words: the units are the words
    batch = _batch(model.template, ROWS)
    with torch.no_grad():
        before = model(**batch).logits
    model.save_pretrained(tmp_path / "saved")
    again = BaseModel.from_pretrained(tmp_path / "saved")
    assert again.template.reserve == model.template.reserve
    assert again.verbalizer.config() == model.verbalizer.config()
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, before, atol=1e-6, rtol=0)
    rebuilt = build_model(model.spec, tokenizer=bert_tokenizer, mlm=mlm)  # the spec alone (no saved prior)
    assert rebuilt.template.config() == model.template.config() and not rebuilt.verbalizer.calibrated


def test_options_are_checked(bert_tokenizer):
    from promptlearn.verbalizers import VerbalizerError

    with pytest.raises(VerbalizerError, match="multi_token_fill"):
        Verbalizer(WORDS["bert"], bert_tokenizer, multi_token_fill="right_to_left")
    with pytest.raises(VerbalizerError, match="multi_token_reduce"):
        Verbalizer(WORDS["bert"], bert_tokenizer, multi_token_reduce="max")
