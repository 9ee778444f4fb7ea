"""Automatic label-word search (LM-BFF's ``generate_labels``; PETAL's likelihood ratio as an option).

    python -m promptlearn.label_search +task=sst2 model.name_or_path=../shared/models/mini-mlm seed=13
    python -m promptlearn.run --config-dir <printed dir> +task=sst2 model.name_or_path=... verbalizer=searched

The few-shot split is exactly the one ``python -m promptlearn.run`` samples for the same task, seed and
``strategy.k_shot`` (16 when the strategy trains nothing), and the model is built from the same config
(template).  The template must be hard: soft tokens and deep prompts would be untrained here, so they
are refused.  Then, written for this project:

1. one batched pass over the few-shot **train** examples gives the LM's log-softmax over the whole
   vocabulary at the mask (``PromptModel.vocab_logits``);
2. candidates are whole words: single vocabulary tokens whose text is alphabetic, at least
   ``search.min_chars`` long, not special, and tokenises back to exactly that token the way the manual
   verbalizer tokenises a label word (with the leading space iff the template's mask follows one,
   ``template.resolve_prefix_space``) -- so WordPiece ``##`` pieces, SentencePiece pieces without ``▁``
   and BPE tokens of the wrong space-ness are out, and the written word scores as the searched token;
3. per class, candidates are ranked by ``search.criterion``: ``lmbff`` -- the mean log-probability over
   the class's train examples (LM-BFF); ``petal`` -- that mean minus the mean over all train examples
   (a likelihood ratio, in the spirit of PETAL), which prefers words specific to the class; the top
   ``search.top_k`` per class are kept;
4. assignments (one distinct word per class) are built class by class with a beam of ``search.beam``,
   each scored by few-shot train accuracy computed from the cached log-probabilities (no new forward
   pass; a partial assignment is scored on the train examples of the classes it covers);
5. the ``search.beam`` best full assignments are scored on the few-shot **dev** set (again one pass,
   then cached) and the best dev score wins -- the task's reported metric (accuracy, or macro-F1 for
   TREC/CB...) -- ties broken by train accuracy, then rank.  The test split is never read.

Steps 3-5 are :func:`rank_and_prune`, on arrays only.  The chosen words are written as a manual-verbalizer
config, ``<dir>/verbalizer/searched.yaml`` (``search.config_dir``, default the run directory), which
``--config-dir <dir> ... verbalizer=searched`` selects (Hydra wants ``--config-dir`` before the overrides);
the command also prints the equivalent ``verbalizer.label_words=...`` override and writes the ranked
assignments to ``search.json`` / ``search.md``.  The ``search.*`` options (conf/label_search.yaml) are
checked like the run's: an unknown key, a wrong type or range is one line naming the fix, exit 2.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .errors import ConfigError, PromptlearnError
from .inference import vocab_logprobs
from .validation import Opt

__all__ = ["search_label_words", "rank_and_prune", "vocab_logprobs", "candidate_tokens", "write_verbalizer"]

log = logging.getLogger("promptlearn")


@torch.no_grad()
def candidate_tokens(tokenizer: Any, prefix_space: bool, min_chars: int = 2,
                     batch_size: int = 4096) -> tuple[np.ndarray, list[str]]:
    """Ids and words of the single-token whole words a label word may be (see the module doc).

    A vocabulary token is a candidate when its text (``convert_tokens_to_string``, so ``Ġ``/``▁`` markers
    and byte-level escapes are undone) is alphabetic, at least ``min_chars`` long, not a special token, and
    tokenises back to exactly that one token the way the manual verbalizer tokenises a label word (with a
    leading space iff ``prefix_space``).  The round trip is what makes the written word mean the scored
    token: WordPiece ``##`` pieces, SentencePiece pieces without ``▁``, and BPE tokens of the wrong
    space-ness all fail it, whatever the tokenizer family.
    """
    special = set(tokenizer.all_special_ids)
    ids, words = [], []
    for i, t in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if i in special or t is None:
            continue
        w = tokenizer.convert_tokens_to_string([t]).strip()
        if w.isalpha() and len(w) >= min_chars:
            ids.append(i)
            words.append(w)
    keep = []
    for s in range(0, len(words), batch_size):
        chunk = words[s:s + batch_size]
        enc = tokenizer([(" " + w) if prefix_space else w for w in chunk], add_special_tokens=False)["input_ids"]
        keep += [j for j, e in zip(range(s, s + len(chunk)), enc) if list(e) == [ids[j]]]
    return np.asarray([ids[j] for j in keep], dtype=np.int64), [words[j] for j in keep]


def _predict(logp: np.ndarray, assignment: Sequence[int]) -> np.ndarray:
    """Zero-shot predictions when class ``j`` is the candidate column ``assignment[j]`` (ties: lower class)."""
    return logp[:, list(assignment)].argmax(-1)


def rank_and_prune(train_lp: np.ndarray, y: np.ndarray, dev_lp: np.ndarray, y_dev: np.ndarray, n_classes: int,
                   criterion: str = "lmbff", top_k: int = 30, beam: int = 100,
                   metric: str = "accuracy") -> tuple[list[list[int]], list[dict]]:
    """Steps 3-5 on cached log-probabilities ``[N, W]`` over the candidate words (no model needed).

    Returns the per-class ranking (candidate columns, best first, ``top_k`` each) and the assignments that
    survived the beam, best first: dicts with ``rank`` (position in the beam, by train accuracy), ``cols``
    (one candidate column per class), ``train_acc``, ``dev_acc`` and ``dev_score`` (``metric``, the task's
    reported metric, on dev: what chooses; equal to ``dev_acc`` for accuracy).
    """
    from .metrics import METRICS

    if criterion not in ("lmbff", "petal"):
        raise ConfigError(f"search.criterion={criterion!r} is not one of lmbff|petal; fix: search.criterion=lmbff")
    mean_all = train_lp.mean(0)
    ranked: list[list[int]] = []  # per class: candidate columns, best first
    for c in range(n_classes):
        score = train_lp[y == c].mean(0) - (mean_all if criterion == "petal" else 0.0)
        ranked.append(np.argsort(-score, kind="stable")[:top_k].tolist())
    beams: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    for c in range(n_classes):
        covered = y <= c  # a partial assignment is scored on the examples of the classes it covers
        lp_c, y_c = train_lp[covered], y[covered]
        cand_lp = lp_c[:, ranked[c]]  # [n, top_k]: every candidate for class c at once
        grown = []
        for assign, _ in beams:
            if assign:
                prev = lp_c[:, list(assign)]
                # class c (the last column) wins only when strictly above: ties go to the lower class, as argmax
                pred = np.where(cand_lp > prev.max(1, keepdims=True), c, prev.argmax(1)[:, None])
            else:
                pred = np.full(cand_lp.shape, c)
            acc = (pred == y_c[:, None]).mean(0)
            grown += [(assign + (cand,), float(acc[r]), r) for r, cand in enumerate(ranked[c]) if cand not in assign]
        grown.sort(key=lambda g: (-g[1], g[2]))  # stable: earlier beams first among equal (acc, rank)
        beams = [(a, acc) for a, acc, _ in grown[:beam]]
    classes = list(range(n_classes))
    rows = []
    for rank, (assign, train_acc) in enumerate(beams):
        pred = _predict(dev_lp, assign)
        rows.append({"rank": rank, "cols": list(assign), "train_acc": train_acc,
                     "dev_acc": float((pred == y_dev).mean()), "dev_score": float(METRICS[metric](y_dev, pred))})
    rows.sort(key=lambda r: (-r["dev_score"], -r["train_acc"], r["rank"]))
    return ranked, rows


def search_label_words(model: Any, few: Any, labels: Sequence[str], device: torch.device | str,
                       criterion: str = "lmbff", top_k: int = 30, beam: int = 100, min_chars: int = 2,
                       batch_size: int = 32, metric: str = "accuracy") -> dict[str, Any]:
    """Rank, prune and choose label words on ``few.train`` / ``few.dev`` (see the module doc)."""
    from .template import resolve_prefix_space

    if criterion not in ("lmbff", "petal"):
        raise ConfigError(f"search.criterion={criterion!r} is not one of lmbff|petal; fix: search.criterion=lmbff")
    if getattr(model, "soft_prompt", None) is not None or model.template.has_soft_tokens:
        raise ConfigError(f"label-word search reads the LM through a hard template, but {model.template.text!r} "
                          "with this strategy adds soft tokens or deep prompts (untrained here); fix: "
                          "strategy=tuning_free and a template without soft tokens")
    tok = model.template.tokenizer
    cand_ids, cand_words = candidate_tokens(tok, resolve_prefix_space("auto", tok, model.template), min_chars)
    if len(cand_ids) < len(labels):
        raise ConfigError(f"only {len(cand_ids)} candidate words in the vocabulary; fix: lower search.min_chars")
    y = np.asarray(few.train["label"][:])
    for c in range(len(labels)):
        if not (y == c).any():
            raise ConfigError(f"class {labels[c]!r} has no few-shot train example; fix: search.k_shot >= 1")
    t0 = time.perf_counter()
    train_lp = vocab_logprobs(model, few.train, device, batch_size)[:, cand_ids]
    dev_lp = vocab_logprobs(model, few.dev, device, batch_size)[:, cand_ids]
    ranked, rows = rank_and_prune(train_lp, y, dev_lp, np.asarray(few.dev["label"][:]), len(labels),
                                  criterion, top_k, beam, metric)
    for r in rows:
        r["words"] = [cand_words[i] for i in r.pop("cols")]
    best = rows[0]
    return {"label_words": dict(zip(labels, best["words"])), "dev_acc": best["dev_acc"],
            "dev_metric": metric, "dev_score": best["dev_score"], "train_acc": best["train_acc"], "assignments": rows,
            "top_per_class": {labels[c]: [cand_words[i] for i in ranked[c][:10]] for c in range(len(labels))},
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


SEARCH_OPTIONS: tuple[Opt, ...] = (
    Opt("k_shot", int, "search.k_shot=16", min=1),
    Opt("criterion", str, "search.criterion=lmbff (or petal)", choices=("lmbff", "petal")),
    Opt("top_k", int, "search.top_k=30", min=1),
    Opt("beam", int, "search.beam=100", min=1),
    Opt("min_chars", int, "search.min_chars=2", min=1),
    Opt("config_dir", str, "search.config_dir=my_conf (or leave it out for the run directory)", nullable=True),
    Opt("name", str, "search.name=searched"),
)


def check_search_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The ``search.*`` options over their defaults (conf/label_search.yaml, also for Python callers), each
    checked (unknown keys refused)."""
    import yaml

    from .run import CONF_DIR

    defaults = yaml.safe_load((Path(CONF_DIR) / "label_search.yaml").read_text())["search"]
    known = {o.key: o for o in SEARCH_OPTIONS}
    for key in opts:
        if key not in known:
            raise ConfigError(f"search.{key} is not a label-search option; fix: one of "
                              + ", ".join(f"search.{k}" for k in known))
    out = {**defaults, **dict(opts)}
    for o in SEARCH_OPTIONS:
        o.check(out[o.key], prefix="search.")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", out["name"]):
        raise ConfigError(f"search.name={out['name']!r} is not a plain file name; fix: search.name=searched")
    return out


def run_search(cfg: Mapping[str, Any], output_dir: Path) -> dict[str, Any]:
    """The command: the run's task, few-shot split and model, then :func:`search_label_words`; writes the YAML."""
    from . import pipeline
    from .run import _checked, resolve_device, set_seed

    c = dict(cfg)
    opts = check_search_options(c.pop("search", None) or {})
    strategy, task = _checked(c)
    seed = int(c.get("seed", 42))
    set_seed(seed)
    if c.get("threads"):
        torch.set_num_threads(int(c["threads"]))
    k = strategy.k_shot or opts["k_shot"]
    few = pipeline.sample(task, k, seed)
    device = resolve_device(c.get("device"))
    model = pipeline.build(c, task, strategy).to(device)
    res = search_label_words(model, few, task.labels, device, criterion=opts["criterion"], top_k=opts["top_k"],
                             beam=opts["beam"], min_chars=opts["min_chars"],
                             batch_size=int(c.get("eval_batch_size", 32)), metric=task.metric)
    res.update(task=task.name, seed=seed, k_shot=k, few_shot_checksum=few.checksum, template=model.template.text)
    config_dir = Path(opts.get("config_dir") or output_dir)
    metric = res["dev_metric"]
    note = (f"searched by promptlearn.label_search: task {task.name}, K={k}, seed {seed} (split {few.checksum[:8]}), "
            f"{res['criterion']}, top_k {res['top_k']}, beam {res['beam']}; "
            f"few-shot dev {metric} {res['dev_score']:.4f}")
    path = write_verbalizer(res["label_words"], config_dir, opts["name"], note)
    res["verbalizer_yaml"] = str(path)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "search.json").write_text(json.dumps(res, indent=2))
    extra = f" few-shot dev {metric} |" if metric != "accuracy" else ""
    lines = [f"| rank | words | few-shot train acc | few-shot dev acc |{extra}",
             "|---|---|---|---|" + "---|" * bool(extra)]
    lines += [f"| {r['rank']} | {' / '.join(r['words'])} | {r['train_acc']:.3f} | {r['dev_acc']:.3f} |"
              + (f" {r['dev_score']:.3f} |" if extra else "")
              for r in res["assignments"][:20]]
    (output_dir / "search.md").write_text("\n".join(lines) + "\n")
    override = "; ".join(f"{c_}: {w}" for c_, w in res["label_words"].items())
    print(f"\nchosen label words ({res['criterion']}, few-shot dev {metric} {res['dev_score'] * 100:.2f}, "
          + (f"dev acc {res['dev_acc'] * 100:.2f}, " if metric != "accuracy" else "") +
          f"train acc {res['train_acc'] * 100:.2f}, {res['seconds']:.1f}s): {res['label_words']}")
    print(f"wrote {path}\nuse it:  python -m promptlearn.run --config-dir {config_dir} +task={task.name} "
          f"verbalizer={opts['name']} ...\n    or:  'verbalizer.label_words=\"{override}\"'")
    return res


def main() -> None:
    """``python -m promptlearn.label_search`` (Hydra: the run's config plus ``search.*``)."""
    from .distributed import single_process_entry

    single_process_entry("promptlearn.label_search")
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from .run import CONF_DIR, _plain, register_resolvers

    register_resolvers()

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
