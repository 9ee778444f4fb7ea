"""Shared fixtures: tiny tokenizers and randomly initialised masked LMs built from configs (no Hub)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# tiny models: one thread is fastest and keeps timings stable on a loaded 2-core machine
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
MINI_MLM = SHARED / "models" / "mini-mlm"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")
needs_mini_mlm = pytest.mark.skipif(not (MINI_MLM / "config.json").is_file(),
                                    reason=f"mini-mlm not found at {MINI_MLM}")

WORDS = ("the a movie film was it is great terrible good bad fine boring fun awful yes no maybe "
         "this that and of to in not very so really question answer news world sports business tech "
         "i you he she we they love hate acting plot story . , ? ! : ' s").split()
CORPUS = [
    "the movie was great .", "it was terrible .", "a good film , really fun !", "the plot is boring and bad",
    "yes , this is okay .", "no , that film was awful", "maybe it is fine ?", "i love the acting .",
    "they hate the story .", "question : is it good ? answer : yes", "world news , sports and business tech",
    "The Movie Was Great. It was terrible! Good films are fun.",
]


@pytest.fixture(scope="session")
def bert_tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["##s", "##ay", "##ly", "ok", "gre", "##at"]
    d = tmp_path_factory.mktemp("bert_tok")
    (d / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    try:  # transformers 5 takes the vocabulary itself, 4.x a file name
        tok = BertTokenizerFast(vocab=str(d / "vocab.txt"), do_lower_case=True, model_max_length=64)
    except TypeError:
        tok = None
    if tok is None or len(tok) < 10:
        tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True, model_max_length=64)
    return tok


@pytest.fixture(scope="session")
def roberta_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 20 + [" ".join(WORDS)] * 20, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    from tokenizers.processors import RobertaProcessing

    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    return RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                                mask_token="<mask>", model_max_length=64)


def tiny_mlm(kind: str, vocab_size: int, seed: int = 0):
    """A randomly initialised 2-layer masked LM of the given family."""
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=72)
    if kind == "bert":
        cfg = tf.BertConfig(type_vocab_size=2, **common)
    elif kind == "roberta":
        cfg = tf.RobertaConfig(type_vocab_size=1, pad_token_id=1, **common)
    elif kind == "albert":
        cfg = tf.AlbertConfig(embedding_size=16, type_vocab_size=2, **common)
    elif kind == "electra":
        cfg = tf.ElectraConfig(embedding_size=16, type_vocab_size=2, **common)
    elif kind == "distilbert":
        cfg = tf.DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                  max_position_embeddings=72)
    else:
        raise ValueError(kind)
    model = tf.AutoModelForMaskedLM.from_config(cfg)
    # random biases so the bias path of the head is exercised too
    out = model.get_output_embeddings()
    if getattr(out, "bias", None) is not None:
        with torch.no_grad():
            out.bias.normal_()
    return model.eval()


PLUGINS = ROOT / "tests" / "plugins"


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, bert_tokenizer, roberta_tokenizer):
    """Local directories holding a tiny random BERT / RoBERTa MLM and its tokenizer (for model.name_or_path=)."""
    dirs = {}
    for kind, tok in (("bert", bert_tokenizer), ("roberta", roberta_tokenizer)):
        d = tmp_path_factory.mktemp(f"tiny_{kind}")
        tiny_mlm(kind, len(tok)).save_pretrained(d)
        tok.save_pretrained(d)
        dirs[kind] = d
    return dirs


@pytest.fixture(scope="session")
def toy_data_root(tmp_path_factory):
    """A data root with the `toy` task of tests/plugins/conf/task/toy.yaml: 48 labelled reviews in one CSV."""
    root = tmp_path_factory.mktemp("toy_data")
    (root / "toy").mkdir()
    pos = ["the movie was great", "a good film", "really fun", "i love the acting", "great story", "fun and good"]
    neg = ["the movie was terrible", "a bad film", "really boring", "i hate the acting", "awful plot", "boring and bad"]
    lines = ["id,review,sentiment"]
    for i in range(4):
        for j, (p, n) in enumerate(zip(pos, neg)):
            lines += [f"{len(lines)},{p} {WORDS[i + j]},pos", f"{len(lines) + 1},{n} {WORDS[i + j]},neg"]
    (root / "toy" / "reviews.csv").write_text("\n".join(lines) + "\n")
    return root


def cli(*args, cwd=ROOT, env=None, timeout=600):
    """Run ``python -m promptlearn.run`` with ``args``; returns the CompletedProcess."""
    import os
    import subprocess
    import sys

    full_env = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "promptlearn.run", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)
