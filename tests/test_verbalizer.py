import pytest
import torch

from promptlearn.verbalizers import Verbalizer, VerbalizerError, parse_label_words


def test_parse_forms():
    assert parse_label_words("neg: terrible, bad; pos: great") == {"neg": ["terrible", "bad"], "pos": ["great"]}
    assert parse_label_words({"neg": "bad", "pos": ["good", "great"]}) == {"neg": ["bad"], "pos": ["good", "great"]}
    assert parse_label_words([["bad"], "good"], labels=["neg", "pos"]) == {"neg": ["bad"], "pos": ["good"]}
    with pytest.raises(VerbalizerError, match="no ':'"):
        parse_label_words("terrible great")


def test_classes_must_match_labels(bert_tokenizer):
    with pytest.raises(VerbalizerError, match=r"missing \['positive'\]"):
        Verbalizer({"negative": "bad"}, bert_tokenizer, labels=["negative", "positive"])
    v = Verbalizer({"positive": "good", "negative": "bad"}, bert_tokenizer, labels=["negative", "positive"])
    assert v.labels == ["negative", "positive"]  # label order wins


def test_unknown_word_reports_split(bert_tokenizer):
    with pytest.raises(VerbalizerError, match=r"'zyzzyva'.*\[UNK\]"):
        Verbalizer({"a": "zyzzyva", "b": "good"}, bert_tokenizer)


def test_multi_token_split_is_reported_or_refused(bert_tokenizer):
    with pytest.raises(VerbalizerError, match=r"'okay'.*2 sub-tokens.*\['ok', '##ay'\]"):
        Verbalizer({"a": "okay", "b": "good"}, bert_tokenizer, multi_token="error")
    v = Verbalizer({"a": "okay", "b": "good"}, bert_tokenizer)
    assert v.is_multi_token and "['ok', '##ay']" in v.describe()


def test_bpe_prefix_space_is_automatic(roberta_tokenizer):
    v = Verbalizer({"neg": "terrible", "pos": "great"}, roberta_tokenizer)
    assert v.prefix_space
    assert all(p[0].startswith("Ġ") for _, _, p in v.splits)
    v2 = Verbalizer({"neg": "terrible", "pos": "great"}, roberta_tokenizer, prefix_space=False)
    assert not any(p[0].startswith("Ġ") for _, _, p in v2.splits)


def test_aggregation_math(bert_tokenizer):
    tok = bert_tokenizer
    v = Verbalizer({"neg": ["bad", "awful"], "pos": ["good", "okay"]}, tok, aggregation="mean", multi_token="mean")
    ids = v.token_ids.tolist()
    logits = torch.randn(3, len(ids))
    logp = torch.log_softmax(logits, -1)
    col = {t: i for i, t in enumerate(ids)}
    one = lambda w: tok(w, add_special_tokens=False)["input_ids"]  # noqa: E731
    word = lambda w: torch.stack([logp[:, col[t]] for t in one(w)], -1).mean(-1)  # noqa: E731
    expected = torch.stack([(word("bad") + word("awful")) / 2, (word("good") + word("okay")) / 2], -1)
    assert torch.allclose(v(logits), expected, atol=1e-6)
    vmax = Verbalizer({"neg": ["bad", "awful"], "pos": ["good", "okay"]}, tok, aggregation="max", multi_token="first")
    first = lambda w: logp[:, col[one(w)[0]]]  # noqa: E731
    exp_max = torch.stack([torch.maximum(first("bad"), first("awful")), torch.maximum(first("good"), first("okay"))], -1)
    assert torch.allclose(vmax(logits), exp_max, atol=1e-6)
    vlse = Verbalizer({"neg": ["bad", "awful"], "pos": ["good"]}, tok, aggregation="logsumexp")
    lp = torch.log_softmax(logits[:, [col[one(w)[0]] for w in ("bad", "awful", "good")]], -1)
    # same token set only when words are single tokens; rebuild from its own ids
    ids2 = vlse.token_ids.tolist()
    lg2 = torch.randn(2, len(ids2))
    lp2 = torch.log_softmax(lg2, -1)
    c2 = {t: i for i, t in enumerate(ids2)}
    exp = torch.stack([torch.logsumexp(torch.stack([lp2[:, c2[one("bad")[0]]], lp2[:, c2[one("awful")[0]]]], -1), -1),
                       lp2[:, c2[one("good")[0]]]], -1)
    assert torch.allclose(vlse(lg2), exp, atol=1e-6)
    assert lp.shape == (3, 3)


def _columns(v, tok, words):
    ids = v.token_ids.tolist()
    return [ids.index(tok(w, add_special_tokens=False)["input_ids"][0]) for w in words]


def test_single_word_argmax_equals_raw_logit_argmax(bert_tokenizer):
    v = Verbalizer({"neg": "bad", "pos": "good", "mid": "fine"}, bert_tokenizer)
    logits = torch.randn(50, 3)
    cols = _columns(v, bert_tokenizer, ["bad", "good", "fine"])
    assert torch.equal(v(logits).argmax(-1), logits[:, cols].argmax(-1))


def test_calibration_removes_content_free_bias(bert_tokenizer):
    v = Verbalizer({"neg": "bad", "pos": "good"}, bert_tokenizer)
    cols = _columns(v, bert_tokenizer, ["bad", "good"])
    def token_order(neg, pos):  # logits in the verbalizer's token order
        out = torch.zeros(2)
        out[cols[0]], out[cols[1]] = neg, pos
        return out
    v.calibrate(token_order(0.0, 3.0)[None])
    scores = v(torch.stack([token_order(0.0, 3.0), token_order(1.0, 3.0)]))
    assert torch.allclose(scores[0, 0], scores[0, 1])  # the content-free input becomes uniform
    assert scores[1].argmax() == 0  # relative to the bias, "bad" gained
