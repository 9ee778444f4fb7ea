"""LM-BFF demonstrations ("prompt-demo"; Gao et al. 2021): one labelled example per class appended to each input.

With ``demonstrations=lm_bff`` every input becomes::

    <the query, through the template, with its one mask> [SEP] <demo of class 1> <demo of class 2> ...

A demonstration is a few-shot **train** example rendered with the same (hard) template, its class's
first label word in place of the mask, soft tokens left out: ``a gorgeous film . It was great .``.
For a single-sentence template the demonstrations form the second segment (after ``{sep}``); a
sentence-pair template already has two, so they are appended to the end of the second.  They sit in
template slots ``{demo_i|cutfirst}``: truncation cuts demonstrations -- from their front, so each keeps
its label word -- before it touches the query, and never a mask (there is exactly one, the query's).

Which demonstration: for each example and class, ``per_class`` of the class's few-shot train
examples, drawn with ``numpy.random.default_rng([seed, set, idx])`` -- the run's seed, the set number
and the example's ``idx`` -- so the draw is reproducible and does not depend on batching, and never
the example itself (same ``idx`` or same text).  ``filter=tfidf`` first keeps the ``top_fraction``
(0.5) of the class's candidates most similar to the example (TF-IDF cosine over the template fields'
text; LM-BFF used SBERT, which is not available offline).

Training re-samples the demonstrations every epoch (set = epoch), so each training example is seen
with different ones (LM-BFF re-samples per example fetch).  Evaluation -- dev during training and the
test split -- averages the class log-probabilities over ``num_sets`` (16, as LM-BFF) demonstration
sets (sets 1000, 1001, ...; dev uses ``dev_sets``, default ``num_sets``); the average decides the
prediction.  ``tuning_free`` + demonstrations is in-context learning (GPT-3 style): the K-shot train
set (``k_shot`` per class, drawn as the trained strategies draw it) only provides demonstrations.

**Saved with the model.**  The run hands its :class:`Demonstrations` to the model
(``model.use_demonstrations``); :meth:`Demonstrations.config` -- the query template, the label words, the
seed, the options and the support rows themselves (K per class: a few KB) -- is the spec's
``demonstrations`` entry, :func:`from_spec` rebuilds it, and ``predict`` on a reloaded model appends the
same kind of demonstrations and averages ``num_sets`` sets, as the run's test scoring did.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ConfigError

__all__ = ["Demonstrations", "demo_template_text", "render_demo", "from_config", "FILTERS"]

FILTERS = ("none", "tfidf")
FIRST_SET_EVAL = 1000  # evaluation sets are numbered from here (training uses the epoch number)


def enabled(cfg: Mapping[str, Any] | None) -> bool:
    return bool((cfg or {}).get("enabled"))


def demo_template_text(text: str, n_demos: int) -> str:
    """The query template with ``n_demos`` demonstration slots appended (after ``{sep}`` unless it has one)."""
    slots = " ".join(f"{{demo_{i}|cutfirst}}" for i in range(n_demos))
    return f"{text} {slots}" if "{sep}" in text else f"{text} {{sep}}{slots}"


def render_demo(template: Any, example: Mapping[str, Any], word: str) -> str:
    """``example`` through the hard parts of ``template`` with ``word`` in place of the mask (no soft tokens)."""
    strings = template._piece_strings(example)
    parts = []
    for p, s in zip(template.pieces, strings):
        if p.kind == "mask":
            parts.append(s + word)
        elif p.kind == "sep":
            parts.append(" ")
        else:  # text and fields; a soft slot contributes only its spacing
            parts.append(s)
    return re.sub(r"\s+", " ", "".join(parts)).strip()


class _TfIdf:
    """TF-IDF fitted on the support texts only (lower-cased word tokens; smooth idf; L2-normalised rows), so
    a query's similarities to the support examples depend on the query and the support set alone -- never
    on which other examples are scored with it.  Queries are projected word by word (no dense query matrix)."""

    def __init__(self, support_texts: Sequence[str]):
        docs = [re.findall(r"\w+", t.lower()) for t in support_texts]
        self.vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
        m = np.zeros((len(docs), max(len(self.vocab), 1)), dtype=np.float64)
        for r, d in enumerate(docs):
            for w in d:
                m[r, self.vocab[w]] += 1.0
        df = (m > 0).sum(0)
        self.idf = np.log((1 + len(docs)) / (1 + df)) + 1.0
        m *= self.idf
        norm = np.linalg.norm(m, axis=1, keepdims=True)
        self.support = m / np.where(norm == 0, 1.0, norm)  # [S, V_support]

    def similarities(self, text: str) -> np.ndarray:
        """Cosine similarity of ``text`` to every support example ``[S]`` (words unknown to the support set
        cannot match, and only scale the query's norm, which the ranking does not depend on)."""
        counts: dict[int, float] = {}
        for w in re.findall(r"\w+", text.lower()):
            if w in self.vocab:
                counts[self.vocab[w]] = counts.get(self.vocab[w], 0.0) + 1.0
        if not counts:
            return np.zeros(self.support.shape[0])
        cols = np.fromiter(counts, dtype=np.int64)
        weights = np.fromiter(counts.values(), dtype=np.float64) * self.idf[cols]
        return self.support[:, cols] @ (weights / np.linalg.norm(weights))


class Demonstrations:
    """Adds ``demo_0 .. demo_{C*per_class-1}`` text columns to a dataset (see the module doc)."""

    def __init__(self, template: Any, label_words: Sequence[str], support: Any, seed: int, per_class: int = 1,
                 filter: str = "none", top_fraction: float = 0.5, num_sets: int = 16, dev_sets: int | None = None):
        if filter not in FILTERS:
            raise ConfigError(f"demonstrations.filter={filter!r} is not one of {'|'.join(FILTERS)}; "
                              "fix: demonstrations.filter=tfidf")
        self.template = template  # the query template (no demonstration slots)
        self.words = list(label_words)
        self.seed = int(seed)
        self.per_class = int(per_class)
        self.filter = filter
        self.top_fraction = float(top_fraction)
        self.num_sets = int(num_sets)
        self.dev_sets = int(dev_sets or num_sets)
        self.fields = list(template.fields)
        rows = support.to_list()
        self.support_rows = [{**{f: r.get(f) for f in self.fields}, "label": int(r["label"]),
                              "idx": int(r.get("idx", i))} for i, r in enumerate(rows)]
        self.support_idx = np.asarray([int(r.get("idx", i)) for i, r in enumerate(rows)])
        self.support_label = np.asarray([int(r["label"]) for r in rows])
        self.support_text = [self._text(r) for r in rows]
        self.support_demo = [render_demo(template, r, self.words[int(r["label"])]) for r in rows]
        self._tfidf = _TfIdf(self.support_text) if filter == "tfidf" else None

    @property
    def n_demos(self) -> int:
        return len(self.words) * self.per_class

    def _text(self, row: Mapping[str, Any]) -> str:
        return " ".join(str(row.get(f, "") or "") for f in self.fields)

    def apply(self, dataset: Any, set_index: int) -> Any:
        """``dataset`` with the demonstration columns of set ``set_index``."""
        rows = dataset.select_columns([c for c in self.fields + ["idx"] if c in dataset.column_names]).to_list()
        texts = [self._text(r) for r in rows]
        sims = np.stack([self._tfidf.similarities(t) for t in texts]) if self._tfidf is not None and texts else None
        cols: list[list[str]] = [[] for _ in range(self.n_demos)]
        for j, r in enumerate(rows):
            # a row with an id is seeded by it (and never demonstrated by the support example of that id); rows
            # without one (predict's raw inputs) by their position, in a stream of their own
            idx = int(r["idx"]) if r.get("idx") is not None else None
            rng = np.random.default_rng([self.seed, int(set_index), idx] if idx is not None
                                        else [self.seed, int(set_index), 0, j])
            for c in range(len(self.words)):
                cand = [i for i in np.flatnonzero(self.support_label == c)
                        if self.support_idx[i] != idx and self.support_text[i] != texts[j]]
                if sims is not None and cand:
                    keep = max(1, math.ceil(self.top_fraction * len(cand)))
                    cand = sorted(cand, key=lambda i: (-sims[j, i], i))[:keep]
                    cand.sort()
                chosen = (rng.choice(len(cand), size=min(self.per_class, len(cand)), replace=False).tolist()
                          if cand else [])
                for k in range(self.per_class):
                    cols[c * self.per_class + k].append(self.support_demo[cand[chosen[k]]] if k < len(chosen) else "")
        out = dataset
        for i, col in enumerate(cols):
            name = f"demo_{i}"
            if name in out.column_names:
                out = out.remove_columns(name)
            out = out.add_column(name, col)
        return out

    def config(self) -> dict[str, Any]:
        """Everything that rebuilds these demonstrations (JSON-able; the spec's ``demonstrations``)."""
        return {"query_template": self.template.text, "label_words": list(self.words), "seed": self.seed,
                "per_class": self.per_class, "filter": self.filter, "top_fraction": self.top_fraction,
                "num_sets": self.num_sets, "dev_sets": self.dev_sets, "support": list(self.support_rows)}

    def train_set(self, dataset: Any, epoch: int) -> Any:
        return self.apply(dataset, epoch)

    def eval_sets(self, dataset: Any, n: int | None = None) -> list[Any]:
        return [self.apply(dataset, FIRST_SET_EVAL + s) for s in range(n or self.num_sets)]

    def dev_eval_sets(self, dataset: Any) -> list[Any]:
        return self.eval_sets(dataset, self.dev_sets)


def from_config(cfg: Mapping[str, Any] | None, template_text: str, model: Any, support: Any,
                seed: int) -> Demonstrations | None:
    """The run's demonstrations (None when ``demonstrations.enabled`` is false)."""
    if not enabled(cfg):
        return None
    from .template import Template

    words = getattr(getattr(model, "verbalizer", None), "label_words", None)
    if not words:
        raise ConfigError("demonstrations need label words to write into the demonstrations; fix: a verbalizer "
                          "with label_words (manual, kpt, soft), or demonstrations=none")
    if support is None or len(support) == 0:
        raise ConfigError("demonstrations need a few-shot train set to draw from; fix: demonstrations.k_shot=16")
    t = model.template
    query = Template(template_text, t.tokenizer, max_length=t.max_length, truncate=t.truncate)
    first = [words[c][0] for c in model.labels]
    c = dict(cfg)
    return Demonstrations(query, first, support, seed, per_class=int(c.get("per_class", 1)),
                          filter=str(c.get("filter", "none")), top_fraction=float(c.get("top_fraction", 0.5)),
                          num_sets=int(c.get("num_sets", 16)), dev_sets=c.get("dev_sets"))


def from_spec(cfg: Mapping[str, Any], template: Any) -> Demonstrations:
    """Rebuild saved demonstrations (:meth:`Demonstrations.config`) for a model whose ``template`` has the slots."""
    from datasets import Dataset

    from .template import Template

    query = Template(cfg["query_template"], template.tokenizer, max_length=template.max_length,
                     truncate=template.truncate)
    return Demonstrations(query, cfg["label_words"], Dataset.from_list(list(cfg["support"])), int(cfg["seed"]),
                          per_class=int(cfg["per_class"]), filter=str(cfg["filter"]),
                          top_fraction=float(cfg["top_fraction"]), num_sets=int(cfg["num_sets"]),
                          dev_sets=cfg.get("dev_sets"))
