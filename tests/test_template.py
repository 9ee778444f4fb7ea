import pytest

from promptlearn.template import Template, TemplateError, parse


def tokens(tok, enc):
    return tok.convert_ids_to_tokens(enc["input_ids"])


def test_parse_pieces():
    pieces = parse("{text_a|shortenable|nopunct} It was {mask}. {soft*2}{soft:so|id=x}{{lit}}")
    kinds = [p.kind for p in pieces]
    assert kinds == ["field", "text", "mask", "text", "soft", "soft", "text"]
    assert pieces[0].shortenable and pieces[0].nopunct and not pieces[0].lower
    assert pieces[4].n == 2 and pieces[5].value == "so" and pieces[5].soft_id == "x"
    assert pieces[-1].value == "{lit}"


@pytest.mark.parametrize("text,needle", [
    ("{text_a} It was great.", "exactly one {mask}"),
    ("{text_a} {mask} {mask}", "exactly one {mask}"),
    ("{text_a|bogus} {mask}", "unknown modifier 'bogus'"),
    ("{text_a} {mask", "never closed"),
    ("{text_a} {mask}}", "unmatched '}'"),
    ("{} {mask}", "empty placeholder"),
    ("{text a} {mask}", "not a valid placeholder name"),
    ("{soft*0} {mask}", "bad repeat count"),
    ("{soft|foo=1} {mask}", "unknown soft-token option"),
    ("{text_a*2} {mask}", "only allowed on {soft}"),
    ("{text_a} {sep} {mask} {sep} {text_b}", "more than one {sep}"),
    ("{sep}{text_a} {mask}", "empty segment"),
    ("{text_a|lower|upper} {mask}", "both 'lower' and 'upper'"),
    ("", "empty template"),
])
def test_parse_errors_name_template_position_and_fix(text, needle):
    with pytest.raises(TemplateError) as err:
        parse(text, name="my-template")
    msg = str(err.value)
    assert needle in msg
    if text:
        assert "my-template" in msg and "fix:" in msg and "position" in msg


def test_modifiers(bert_tokenizer):
    t = Template("{text_a|nopunct|lower}? {mask}, {text_b|upper}", bert_tokenizer, name="t")
    assert t.render({"text_a": "The movie was good!!", "text_b": "it was fun."}) == \
        "the movie was good? [MASK], It was fun."


def test_single_sentence_layout_and_mask(bert_tokenizer):
    t = Template("{text_a} It was {mask}.", bert_tokenizer, max_length=64)
    enc = t.encode({"text_a": "The movie was great."})
    toks = tokens(bert_tokenizer, enc)
    assert toks == ["[CLS]", "the", "movie", "was", "great", ".", "it", "was", "[MASK]", ".", "[SEP]"]
    assert toks[enc["mask_pos"]] == "[MASK]"
    assert enc["token_type_ids"] == [0] * len(toks)
    assert enc["n_truncated"] == 0


def test_pair_has_token_type_ids(bert_tokenizer):
    t = Template("{text_a}? {mask}, {sep} {text_b}", bert_tokenizer)
    enc = t.encode({"text_a": "it was good", "text_b": "yes it was"})
    toks = tokens(bert_tokenizer, enc)
    assert toks == ["[CLS]", "it", "was", "good", "?", "[MASK]", ",", "[SEP]", "yes", "it", "was", "[SEP]"]
    assert enc["token_type_ids"] == [0] * 8 + [1] * 4


def test_truncation_cuts_only_shortenable_longest_first(bert_tokenizer):
    t = Template("{text_a|shortenable} and {text_b|shortenable} . It was {mask} .", bert_tokenizer, max_length=16)
    long_a = " ".join(["good"] * 20)
    enc = t.encode({"text_a": long_a, "text_b": "bad bad bad"})
    toks = tokens(bert_tokenizer, enc)
    assert len(toks) == 16
    assert toks[enc["mask_pos"]] == "[MASK]"
    assert toks[-6:] == [".", "it", "was", "[MASK]", ".", "[SEP]"]
    assert toks.count("bad") == 3  # the shorter slot is untouched
    # 20 good + "and" + 3 bad + ". it was [MASK] ." + [CLS] [SEP] = 31 tokens; 15 must go
    assert enc["n_truncated"] == 31 - 16


def test_truncation_balances_two_long_slots(bert_tokenizer):
    t = Template("{text_a|shortenable} {text_b|shortenable} {mask}", bert_tokenizer, max_length=13)
    enc = t.encode({"text_a": " ".join(["good"] * 20), "text_b": " ".join(["bad"] * 20)})
    toks = tokens(bert_tokenizer, enc)
    assert toks.count("good") == 5 and toks.count("bad") == 5


def test_non_shortenable_slot_is_kept(bert_tokenizer):
    t = Template("{text_a|shortenable} {text_b} {mask}", bert_tokenizer, max_length=12)
    enc = t.encode({"text_a": " ".join(["good"] * 20), "text_b": "bad bad bad"})
    assert tokens(bert_tokenizer, enc).count("bad") == 3
    with pytest.raises(TemplateError, match="shortenable"):
        t.encode({"text_a": "good", "text_b": " ".join(["bad"] * 20)})


def test_no_shortenable_marked_means_all_fields_shortenable(bert_tokenizer):
    t = Template("{text_a} It was {mask}.", bert_tokenizer, max_length=10)
    enc = t.encode({"text_a": " ".join(["good"] * 30)})
    assert len(enc["input_ids"]) == 10 and enc["input_ids"][enc["mask_pos"]] == bert_tokenizer.mask_token_id


def test_head_truncation(bert_tokenizer):
    t = Template("{text_a} {mask}", bert_tokenizer, max_length=6, truncate="head")
    enc = t.encode({"text_a": "the movie was great fun"})
    assert tokens(bert_tokenizer, enc)[1:4] == ["was", "great", "fun"]


def test_template_longer_than_max_length_is_an_error(bert_tokenizer):
    with pytest.raises(TemplateError, match="raise max_length"):
        Template("{text_a} " + "very " * 20 + "{mask}", bert_tokenizer, max_length=10)


def test_missing_field_names_available_ones(bert_tokenizer):
    t = Template("{question} {mask}", bert_tokenizer, name="boolq")
    with pytest.raises(TemplateError, match=r"no field 'question'.*text_a"):
        t.encode({"text_a": "hi"})


def test_roberta_bpe_spacing(roberta_tokenizer):
    tok = roberta_tokenizer
    t = Template("{text_a} It was {mask}.", tok)
    enc = t.encode({"text_a": "the movie was great"})
    # tokenising the whole rendered string gives the same ids: spacing is preserved piecewise
    whole = tok("the movie was great It was<mask>.")["input_ids"]
    whole_sp = tok("the movie was great It was <mask>.")["input_ids"]
    assert enc["input_ids"] in (whole, whole_sp)
    toks = tok.convert_ids_to_tokens(enc["input_ids"])
    assert toks[enc["mask_pos"]] == "<mask>"
    assert "ĠIt" in toks or "ĠI" in toks  # the space before "It" survives piecewise tokenisation
    assert t.mask_has_leading_space
    assert "token_type_ids" not in enc  # RoBERTa does not use them


def test_roberta_pair_layout(roberta_tokenizer):
    tok = roberta_tokenizer
    t = Template("{text_a} {mask} {sep}{text_b}", tok)
    enc = t.encode({"text_a": "yes", "text_b": "no"})
    toks = tok.convert_ids_to_tokens(enc["input_ids"])
    assert toks[0] == "<s>" and toks[-1] == "</s>" and toks.count("</s>") >= 2


def test_soft_tokens_ids_and_sharing(bert_tokenizer):
    t = Template("{soft*2} {text_a} {soft:it was|id=p} {mask} {soft|id=q}{soft|id=q}", bert_tokenizer)
    assert t.soft_spec.num_tokens == 2 + 2 + 1
    enc = t.encode({"text_a": "good"})
    soft = enc["soft_ids"]
    assert soft[1:3] == [1, 2] and soft[4:6] == [3, 4]
    assert soft[enc["mask_pos"] + 1] == soft[enc["mask_pos"] + 2] == 5  # shared id -> same vector
    assert t.soft_spec.init_token_ids[2:4] == tuple(bert_tokenizer("it was", add_special_tokens=False)["input_ids"])


def test_encode_batch_matches_encode(bert_tokenizer):
    t = Template("{text_a|shortenable} It was {mask}.", bert_tokenizer, max_length=12)
    rows = [{"text_a": "good " * n} for n in (0, 1, 5, 30)]
    batch = t.encode_batch({"text_a": [r["text_a"] for r in rows]})
    for j, r in enumerate(rows):
        single = t.encode(r)
        assert {k: v[j] for k, v in batch.items()} == single
