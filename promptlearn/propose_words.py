"""Propose related words for each class from the masked LM itself (a start for a kpt word list).

    python -m promptlearn.propose_words --model ../shared/models/mini-mlm --task sst2 --top 30 \
        --out conf/verbalizer/words/my_sentiment.yaml
    python -m promptlearn.propose_words --model roberta-large --words "negative: bad, awful; positive: good" --top 50

Two ways to rank the vocabulary for a class, given its seed words (the task's label words, or ``--words``):

``--method context`` (default)  ask the MLM: the seed words are put in coordination patterns
    (``it was {seed} and [MASK] .``, ``it was [MASK] and {seed} .``, ``{seed} , [MASK] , and``,
    ``[MASK] or {seed}``) and every token is scored by its mean log-probability at the mask over the
    patterns and seeds (words that the LM puts next to the seeds in a list), plus its margin over the
    classes' mean (so words that fit every class's contexts rank lower) -- one batched forward per class;
``--method embedding``  cosine similarity of each token's output-embedding row (the LM head;
    ``--space input``: input embeddings) to the mean of the seeds' rows.

Only whole words
are proposed: the single-token words :func:`promptlearn.label_search.candidate_tokens` finds
(alphabetic, at least ``--min-chars`` letters, and tokenising back to exactly that token -- with the
leading space for byte-level BPE; so no WordPiece ``##`` or SentencePiece continuation pieces), so
every proposal is a single-token word for this tokenizer as the kpt verbalizer will tokenise it.  A token close to several
classes goes to the class it is closest to; seeds are never proposed again.  The output is a word
list that ``verbalizer=kpt verbalizer.words=<file>`` reads, with a header saying how it was made.
Review it before use: nearest neighbours include antonyms and unrelated frequent words.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .errors import PromptlearnError

__all__ = ["propose_words"]

ROOT = Path(__file__).resolve().parents[1]


PATTERNS = ("it was {seed} and {mask} .", "it was {mask} and {seed} .", "{seed} , {mask} , and", "{mask} or {seed}")


@torch.no_grad()
def _context_scores(mlm: Any, tokenizer: Any, seeds: Mapping[str, Sequence[str]], bpe: bool) -> torch.Tensor:
    """``[V, C]``: mean log-probability of each token at the mask of the coordination patterns, per class."""
    cols = []
    dev = next(mlm.parameters()).device
    for ws in seeds.values():
        texts = [p.format(seed=w, mask=tokenizer.mask_token) for w in ws for p in PATTERNS]
        enc = tokenizer(texts, return_tensors="pt", padding=True).to(dev)
        logits = mlm(**enc).logits
        rows, pos = (enc["input_ids"] == tokenizer.mask_token_id).nonzero(as_tuple=True)
        cols.append(torch.log_softmax(logits[rows, pos].float(), -1).mean(0))
    return torch.stack(cols, -1).cpu()


@torch.no_grad()
def propose_words(mlm: Any, tokenizer: Any, seeds: Mapping[str, Sequence[str]], top: int = 30,
                  space: str = "output", min_chars: int = 3, method: str = "context") -> dict[str, list[tuple[str, float]]]:
    """``{class: [(word, score), ...]}``, best first, ``top`` per class (see the module doc)."""
    emb = (mlm.get_output_embeddings() if space == "output" else mlm.get_input_embeddings()).weight.detach().float()
    unit = torch.nn.functional.normalize(emb, dim=-1)
    from .label_search import candidate_tokens
    from .template import is_space_sensitive

    bpe = is_space_sensitive(tokenizer)  # words follow a space, as after "It was {mask}"
    words: list[str | None] = [None] * emb.shape[0]
    cand_ids, cand_words = candidate_tokens(tokenizer, prefix_space=bpe, min_chars=min_chars)
    for i, w in zip(cand_ids.tolist(), cand_words):
        if i < len(words):
            words[i] = w
    special = set(tokenizer.all_special_ids)
    seed_ids: dict[str, list[int]] = {}
    for cls, ws in seeds.items():
        ids = []
        for w in ws:
            ids += list(tokenizer((" " + w) if bpe else w, add_special_tokens=False)["input_ids"])
        if not ids:
            raise PromptlearnError(f"class {cls!r}: none of its seed words {list(ws)} is known to the tokenizer")
        seed_ids[cls] = ids
    classes = list(seeds)
    if method == "context":
        mlm.eval()
        sims = _context_scores(mlm, tokenizer, seeds, bpe)[: emb.shape[0]]
        # a token goes to the class whose contexts favour it most relative to the others, and is ranked by its
        # log-probability there plus that margin (frequent words that fit every context are pushed down)
        rel = sims - sims.mean(-1, keepdim=True)
        best = rel.argmax(-1)
        sims = sims + rel
    elif method == "embedding":
        centroids = torch.stack([torch.nn.functional.normalize(unit[seed_ids[c]].mean(0), dim=-1) for c in classes])
        sims = unit @ centroids.T  # [V, C]
        best = sims.argmax(-1)
    else:
        raise PromptlearnError(f"method must be context or embedding, got {method!r}")
    taken = {i for ids in seed_ids.values() for i in ids} | special
    seen_words = {w.lower() for ws in seeds.values() for w in ws}
    out: dict[str, list[tuple[str, float]]] = {}
    for c, cls in enumerate(classes):
        order = torch.argsort(sims[:, c], descending=True).tolist()
        picked: list[tuple[str, float]] = []
        for i in order:
            w = words[i]
            if w is None or i in taken or int(best[i]) != c or w.lower() in seen_words:
                continue
            seen_words.add(w.lower())
            picked.append((w, round(float(sims[i, c]), 4)))
            if len(picked) >= top:
                break
        out[cls] = picked
    return out


def _task_words(task: str) -> dict[str, list[str]]:
    from omegaconf import OmegaConf

    from .verbalizers import parse_label_words

    path = ROOT / "conf" / "task" / f"{task}.yaml"
    if not path.is_file():
        raise PromptlearnError(f"no task {task!r} in {path.parent}; fix: --task one of "
                               f"{sorted(p.stem for p in path.parent.glob('*.yaml'))}, or --words")
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    return parse_label_words(cfg["verbalizer"], cfg.get("labels"))


def main(argv: Sequence[str] | None = None) -> int:
    from .distributed import single_process_entry

    single_process_entry("promptlearn.propose_words")
    ap = argparse.ArgumentParser(prog="python -m promptlearn.propose_words", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a local model directory or a Hub name")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", help="take the seed words from conf/task/<task>.yaml")
    src.add_argument("--words", help="seed words: 'class: word, word; other: word'")
    ap.add_argument("--top", type=int, default=30, help="words proposed per class (default 30)")
    ap.add_argument("--method", choices=("context", "embedding"), default="context",
                    help="rank by the MLM's predictions in coordination patterns (default) or by embedding cosine")
    ap.add_argument("--space", choices=("output", "input"), default="output",
                    help="--method embedding: compare rows of the LM head (output, default) or the input embeddings")
    ap.add_argument("--min-chars", type=int, default=3)
    ap.add_argument("--out", help="write the word list (YAML) here; default: print it")
    args = ap.parse_args(argv)
    try:
        from .backbone import load_backbone
        from .verbalizers import parse_label_words

        seeds = _task_words(args.task) if args.task else parse_label_words(args.words)
        tokenizer, mlm = load_backbone(args.model)
        proposals = propose_words(mlm, tokenizer, seeds, args.top, args.space, args.min_chars, args.method)
    except PromptlearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lines = [f"# Proposed by: python -m promptlearn.propose_words --model {args.model} "
             + (f"--task {args.task}" if args.task else f"--words {args.words!r}")
             + f" --top {args.top} --method {args.method}" + (f" --space {args.space}" if args.method == "embedding"
                                                               else ""),
             "# (" + ("the MLM's most probable whole words next to each class's seed words in coordination patterns"
                      if args.method == "context" else "nearest vocabulary words to each class's seed words by cosine "
                      f"similarity of the model's {args.space} embeddings") + "; review before use)"]
    for cls, words in proposals.items():
        quoted = [json.dumps(w) for w in list(seeds[cls]) + [w for w, _ in words]]  # "no", "on" stay words in YAML
        lines.append(f"{cls}: [{', '.join(quoted)}]")
        lines.append("#   " + ", ".join(f"{w} {s:.2f}" for w, s in words[:10]))
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
