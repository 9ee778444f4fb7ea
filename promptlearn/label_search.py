"""Automatic label-word search (LM-BFF's ``generate_labels``; PETAL's likelihood ratio as an option).

    python -m promptlearn.label_search +task=sst2 model.name_or_path=../shared/models/mini-mlm seed=13
    python -m promptlearn.run --config-dir <printed dir> +task=sst2 model.name_or_path=... verbalizer=searched

The few-shot split is exactly the one ``python -m promptlearn.run`` samples for the same task, seed and
``strategy.k_shot`` (16 when the strategy trains nothing), and the model is built from the same config
(template, soft prompt).  Then, written for this project:

1. one batched pass over the few-shot **train** examples gives the LM's log-softmax over the whole
   vocabulary at the mask (``PromptModel.vocab_logits``);
2. candidates are whole words: single tokens that are alphabetic, at least ``search.min_chars`` long,
   no WordPiece continuation (``##``), and for byte-level BPE tokenizers carrying the leading-space
   marker exactly when the template's mask follows a space (``template.resolve_prefix_space``);
3. per class, candidates are ranked by ``search.criterion``: ``lmbff`` -- the mean log-probability over
   the class's train examples (LM-BFF); ``petal`` -- that mean minus the mean over all train examples
   (a likelihood ratio, in the spirit of PETAL), which prefers words specific to the class; the top
   ``search.top_k`` per class are kept;
4. assignments (one distinct word per class) are built class by class with a beam of ``search.beam``,
   each scored by few-shot train accuracy computed from the cached log-probabilities (no new forward
   pass; a partial assignment is scored on the train examples of the classes it covers);
5. the ``search.beam`` best full assignments are scored on the few-shot **dev** set (again one pass,
   then cached) and the best dev accuracy wins (ties: train accuracy, then rank).  The test split is
   never read.

The chosen words are written as a manual-verbalizer config, ``<dir>/verbalizer/searched.yaml``
(``search.config_dir``, default the run directory), which ``--config-dir <dir> ... verbalizer=searched``
selects (Hydra wants ``--config-dir`` before the overrides); the command also prints the equivalent ``verbalizer.label_words=...`` override, and writes the
ranked assignments to ``search.json`` / ``search.md``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .errors import ConfigError, PromptlearnError

__all__ = ["search_label_words", "vocab_logprobs", "candidate_tokens"]

log = logging.getLogger("promptlearn")


@torch.no_grad()
def vocab_logprobs(model: Any, dataset: Any, device: torch.device | str, batch_size: int = 32) -> np.ndarray:
    """``[N, V]`` log-softmax over the vocabulary at the mask for every example (dataset order)."""
    from .data import Batches, encode_dataset

    enc = encode_dataset(dataset, model.template)
    batches = Batches(enc, batch_size, model.template.tokenizer.pad_token_id, order="length")
    was = model.training
    model.eval()
    parts = []
    try:
        for b in batches:
            b = {k: v.to(device) for k, v in b.items() if k != "labels"}
            parts.append(torch.log_softmax(model.vocab_logits(**b).float(), -1).cpu())
    finally:
        model.train(was)
    out = torch.cat(parts).numpy()
    back = np.empty_like(out)
    back[np.asarray(batches.order_index)] = out
    return back


def candidate_tokens(tokenizer: Any, prefix_space: bool, min_chars: int = 2) -> tuple[np.ndarray, list[str]]:
    """Ids and words of the single-token whole words a label word may be (see the module doc)."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    bpe = any(t.startswith("Ġ") for t in vocab[:5000])
    special = set(tokenizer.all_special_ids)
    ids, words = [], []
    for i, t in enumerate(vocab):
        if i in special or t is None:
            continue
        if bpe:
            if t.startswith("Ġ") != prefix_space:
                continue
            t = t[1:] if prefix_space else t
        elif t.startswith("##"):
            continue
        if t.isalpha() and len(t) >= min_chars:
            ids.append(i)
            words.append(t)
    return np.asarray(ids, dtype=np.int64), words


def _accuracy(logp: np.ndarray, labels: np.ndarray, assignment: Sequence[int], classes: Sequence[int]) -> float:
    """Accuracy on the examples of ``classes`` when class ``classes[j]`` is the token ``assignment[j]``."""
    rows = np.isin(labels, classes)
    if not rows.any():
        return 0.0
    pred = np.asarray(classes)[logp[rows][:, list(assignment)].argmax(-1)]
    return float((pred == labels[rows]).mean())


def search_label_words(model: Any, few: Any, labels: Sequence[str], device: torch.device | str,
                       criterion: str = "lmbff", top_k: int = 30, beam: int = 100, min_chars: int = 2,
                       batch_size: int = 32) -> dict[str, Any]:
    """Rank, prune and choose label words on ``few.train`` / ``few.dev`` (see the module doc)."""
    from .template import resolve_prefix_space

    if criterion not in ("lmbff", "petal"):
        raise ConfigError(f"search.criterion={criterion!r} is not one of lmbff|petal; fix: search.criterion=lmbff")
    tok = model.template.tokenizer
    cand_ids, cand_words = candidate_tokens(tok, resolve_prefix_space("auto", tok, model.template), min_chars)
    if len(cand_ids) < len(labels):
        raise ConfigError(f"only {len(cand_ids)} candidate words in the vocabulary; fix: lower search.min_chars")
    t0 = time.perf_counter()
    train_lp = vocab_logprobs(model, few.train, device, batch_size)[:, cand_ids]
    y = np.asarray(few.train["label"][:])
    mean_all = train_lp.mean(0)
    ranked: list[list[int]] = []  # per class: candidate positions, best first
    for c in range(len(labels)):
        if not (y == c).any():
            raise ConfigError(f"class {labels[c]!r} has no few-shot train example; fix: strategy.k_shot >= 1")
        score = train_lp[y == c].mean(0) - (mean_all if criterion == "petal" else 0.0)
        ranked.append(np.argsort(-score, kind="stable")[:top_k].tolist())
    beams: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    for c in range(len(labels)):
        grown = []
        for assign, _ in beams:
            for r, cand in enumerate(ranked[c]):
                if cand in assign:
                    continue
                new = assign + (cand,)
                grown.append((new, _accuracy(train_lp, y, new, list(range(c + 1))), r))
        grown.sort(key=lambda g: (-g[1], g[2]))
        beams = [(a, acc) for a, acc, _ in grown[:beam]]
    dev_lp = vocab_logprobs(model, few.dev, device, batch_size)[:, cand_ids]
    y_dev = np.asarray(few.dev["label"][:])
    classes = list(range(len(labels)))
    rows = []
    for rank, (assign, train_acc) in enumerate(beams):
        rows.append({"rank": rank, "words": [cand_words[a] for a in assign], "train_acc": train_acc,
                     "dev_acc": _accuracy(dev_lp, y_dev, assign, classes)})
    rows.sort(key=lambda r: (-r["dev_acc"], -r["train_acc"], r["rank"]))
    best = rows[0]
    return {"label_words": dict(zip(labels, best["words"])), "dev_acc": best["dev_acc"],
            "train_acc": best["train_acc"], "assignments": rows,
            "top_per_class": {labels[c]: [cand_words[i] for i in ranked[c][:10]] for c in classes},
            "criterion": criterion, "top_k": top_k, "beam": beam, "n_candidates": int(len(cand_ids)),
            "seconds": round(time.perf_counter() - t0, 3)}


def write_verbalizer(words: Mapping[str, str], config_dir: Path, name: str = "searched",
                     note: str = "") -> Path:
    """``<config_dir>/verbalizer/<name>.yaml``: a manual verbalizer config the run command accepts."""
    import yaml

    from .verbalizers import DEFAULT_TYPE  # the searched words are plain label words: the default (manual) type

    d = Path(config_dir) / "verbalizer"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.yaml"
    body = yaml.safe_dump({"type": DEFAULT_TYPE, "label_words": {k: str(v) for k, v in words.items()}},
                          sort_keys=False, allow_unicode=True)
    path.write_text((f"# {note}\n" if note else "") + body)
    return path


def run_search(cfg: Mapping[str, Any], output_dir: Path) -> dict[str, Any]:
    """The command: the run's task, few-shot split and model, then :func:`search_label_words`; writes the YAML."""
    from . import pipeline
    from .run import _checked, resolve_device, set_seed

    c = dict(cfg)
    opts = dict(c.pop("search", None) or {})
    strategy, task = _checked(c)
    seed = int(c.get("seed", 42))
    set_seed(seed)
    k = strategy.k_shot or int(opts.get("k_shot", 16))
    few = pipeline.sample(task, k, seed)
    device = resolve_device(c.get("device"))
    model = pipeline.build(c, task, strategy).to(device)
    res = search_label_words(model, few, task.labels, device, criterion=str(opts.get("criterion", "lmbff")),
                             top_k=int(opts.get("top_k", 30)), beam=int(opts.get("beam", 100)),
                             min_chars=int(opts.get("min_chars", 2)), batch_size=int(c.get("eval_batch_size", 32)))
    res.update(task=task.name, seed=seed, k_shot=k, few_shot_checksum=few.checksum, template=model.template.text)
    config_dir = Path(opts.get("config_dir") or output_dir)
    note = (f"searched by promptlearn.label_search: task {task.name}, K={k}, seed {seed} (split {few.checksum[:8]}), "
            f"{res['criterion']}, top_k {res['top_k']}, beam {res['beam']}; few-shot dev acc {res['dev_acc']:.4f}")
    path = write_verbalizer(res["label_words"], config_dir, str(opts.get("name", "searched")), note)
    res["verbalizer_yaml"] = str(path)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "search.json").write_text(json.dumps(res, indent=2))
    lines = ["| rank | words | few-shot train acc | few-shot dev acc |", "|---|---|---|---|"]
    lines += [f"| {r['rank']} | {' / '.join(r['words'])} | {r['train_acc']:.3f} | {r['dev_acc']:.3f} |"
              for r in res["assignments"][:20]]
    (output_dir / "search.md").write_text("\n".join(lines) + "\n")
    override = "; ".join(f"{c_}: {w}" for c_, w in res["label_words"].items())
    print(f"\nchosen label words ({res['criterion']}, few-shot dev acc {res['dev_acc'] * 100:.2f}, "
          f"train acc {res['train_acc'] * 100:.2f}, {res['seconds']:.1f}s): {res['label_words']}")
    print(f"wrote {path}\nuse it:  python -m promptlearn.run --config-dir {config_dir} +task={task.name} "
          f"verbalizer={opts.get('name', 'searched')} ...\n    or:  'verbalizer.label_words=\"{override}\"'")
    return res


def main() -> None:
    """``python -m promptlearn.label_search`` (Hydra: the run's config plus ``search.*``)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    from .run import CONF_DIR, _plain, safe_dirname

    if not OmegaConf.has_resolver("pl_dirname"):
        OmegaConf.register_new_resolver("pl_dirname", safe_dirname)

    @hydra.main(config_path=str(CONF_DIR), config_name="label_search", version_base="1.3")
    def _main(cfg: DictConfig) -> None:
        c = _plain(cfg)
        try:
            run_search(c, Path(HydraConfig.get().runtime.output_dir))
        except PromptlearnError as exc:
            if c.get("debug") or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    _main()


if __name__ == "__main__":
    main()
