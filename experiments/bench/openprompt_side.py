"""OpenPrompt 1.0.1 side of the promptlearn-vs-OpenPrompt benchmark.

Runs the same zero-shot scoring and prompt-based fine-tuning workloads as the
promptlearn side, with OpenPrompt's own pipeline (ManualTemplate,
ManualVerbalizer, load_plm, PromptDataLoader, PromptForClassification), and
writes a JSON summary.

It runs in its own virtual environment (OpenPrompt only imports with old
transformers), created by ``experiments/bench/setup_openprompt_env.sh``, and
imports nothing from promptlearn::

    bash experiments/bench/setup_openprompt_env.sh      # once
    "${OPENPROMPT_VENV:-$HOME/.cache/promptlearn/openprompt-venv}/bin/python" \\
        experiments/bench/openprompt_side.py \\
        --model /work/shared/models/mini-mlm --data /work/shared/data/SST-2 \\
        --n-examples 872 --batch-size 16 --max-seq-length 64 \\
        --reps 5 --warmup 2 --train-steps 5 --threads 2 --device cpu \\
        --out openprompt_results.json

Each workload (``zeroshot``, ``train``) runs in a fresh subprocess of this
script (``--workload NAME``) so that its peak RSS (``ru_maxrss``) belongs to
that workload alone; the parent process only collects the results.

Settings that matter for a fair comparison (also written into the JSON):

* Template ``{"placeholder":"text_a"} It was {"mask"}.``; OpenPrompt tokenizes
  each template piece separately; with the uncased WordPiece tokenizer this
  gives ``[CLS] <sentence> it was [MASK] . [SEP]``.
* Verbalizer words ``terrible`` (0) / ``great`` (1), OpenPrompt's default
  prefix " " (single tokens either way), ``post_log_softmax=True``: class
  scores are log-softmax over the two label-word logits at the mask, so the
  argmax and the cross-entropy loss equal those over the raw label-word logits.
* OpenPrompt pads every input to ``max_seq_length`` (64 = mini-mlm's limit)
  and runs the full MLM head (vocabulary logits at every position, plus
  ``output_hidden_states=True``) before picking the mask position.
* Truncation: only the shortenable part (``text_a``) is cut, never the template
  or the mask. OpenPrompt's "tail" (its default, used here) and "head" both cut
  tokens from the *end* of the sentence; with a single shortenable part they
  give identical ids. (One SST-2 dev sentence needs cutting at 64 tokens.)
* Timings include fetching/collating batches from the PromptDataLoader; the
  loader build (wrapping + tokenizing + padding every example) is timed apart.
  Throughput is N / median pass time (zero-shot) and B / median step time
  (training); the best (min-time) figures and every timing are kept as well,
  since a small shared CPU can vary a lot between passes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

TEMPLATE_TEXT = '{"placeholder":"text_a"} It was {"mask"}.'
CLASSES = ["negative", "positive"]
LABEL_WORDS = [["terrible"], ["great"]]
SEED = 42


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model directory (BERT-style MLM)")
    p.add_argument("--data", required=True, help="SST-2 directory with dev.tsv and train.tsv")
    p.add_argument("--n-examples", type=int, default=872, help="first N dev examples for zero-shot")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--truncate-method", default="tail", choices=["tail", "head"])
    p.add_argument("--reps", type=int, default=5, help="timed zero-shot passes")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up passes / training steps")
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default=None, help="write the JSON summary here")
    p.add_argument("--workload", default="all", choices=["all", "zeroshot", "train"],
                   help="'all' runs each workload in its own subprocess")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- helpers

def read_tsv(path, n=None):
    """SST-2 TSV with header ``sentence\\tlabel``; no quoting."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        assert header[:2] == ["sentence", "label"], header
        rows = [(r[0], int(r[1])) for r in reader]
    return rows if n is None else rows[:n]


def rss_mb():
    """Current resident set size in MB (MiB, as ru_maxrss / 1024), from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def versions():
    from importlib.metadata import version
    return {"python": sys.version.split()[0],
            **{pkg: version(pkg) for pkg in ("openprompt", "transformers", "torch")}}


class Setup:
    """Model, tokenizer, template and verbalizer built the OpenPrompt way."""

    def __init__(self, args):
        import torch
        from openprompt import PromptForClassification
        from openprompt.plms import load_plm
        from openprompt.prompts import ManualTemplate, ManualVerbalizer

        torch.set_num_threads(args.threads)
        random.seed(SEED)
        torch.manual_seed(SEED)
        self.torch = torch
        self.args = args
        self.device = torch.device(args.device)

        t0 = time.perf_counter()
        plm, tokenizer, _config, wrapper_class = load_plm("bert", args.model)
        self.template = ManualTemplate(tokenizer=tokenizer, text=TEMPLATE_TEXT)
        self.verbalizer = ManualVerbalizer(tokenizer=tokenizer, classes=CLASSES,
                                           label_words=LABEL_WORDS)
        self.model = PromptForClassification(plm=plm, template=self.template,
                                             verbalizer=self.verbalizer,
                                             freeze_plm=False).to(self.device)
        self.load_s = time.perf_counter() - t0
        self.tokenizer = tokenizer
        self.wrapper_class = wrapper_class
        self.param_dtype = str(next(plm.parameters()).dtype)
        self.n_params = sum(p.numel() for p in plm.parameters())

    def examples(self, rows):
        from openprompt.data_utils import InputExample
        return [InputExample(guid=i, text_a=s, label=y) for i, (s, y) in enumerate(rows)]

    def loader(self, rows):
        from openprompt import PromptDataLoader
        return PromptDataLoader(
            dataset=self.examples(rows), template=self.template, tokenizer=self.tokenizer,
            tokenizer_wrapper_class=self.wrapper_class, max_seq_length=self.args.max_seq_length,
            truncate_method=self.args.truncate_method, batch_size=self.args.batch_size,
            shuffle=False)

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def cuda_reset(self):
        if self.device.type == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def cuda_peak_mb(self):
        if self.device.type == "cuda":
            return self.torch.cuda.max_memory_allocated() / 2**20
        return None

    def settings(self):
        a = self.args
        return {
            "model": os.path.abspath(a.model), "param_dtype": self.param_dtype,
            "n_params": self.n_params,
            "template": TEMPLATE_TEXT, "classes": CLASSES, "label_words": LABEL_WORDS,
            "label_word_ids": self.verbalizer.label_words_ids.view(-1).tolist(),
            "verbalizer": "ManualVerbalizer(prefix=' ', multi_token_handler='first', "
                          "post_log_softmax=True)",
            "max_seq_length": a.max_seq_length,
            "padding": "every input padded to max_seq_length (OpenPrompt always does)",
            "truncate_method": a.truncate_method,
            "truncation": "only text_a is cut, from its end; template and mask are kept",
            "plm_forward": "BertForMaskedLM, full vocab logits at all positions, "
                           "output_hidden_states=True (OpenPrompt PromptModel)",
            "batch_size": a.batch_size, "threads": a.threads, "device": a.device,
            "reps": a.reps, "warmup": a.warmup, "seed": SEED,
        }


def describe_example(loader, tokenizer, idx):
    """input_ids/mask position of one example exactly as OpenPrompt feeds it."""
    feat = loader.tensor_dataset[idx]
    ids = feat.input_ids.tolist()
    n_real = int(feat.attention_mask.sum())
    mask_pos = [i for i, v in enumerate(feat.loss_ids.tolist()) if v == 1]
    return {"index": idx, "input_ids": ids, "n_non_pad": n_real, "mask_positions": mask_pos,
            "tokens": tokenizer.convert_ids_to_tokens(ids[:n_real])}


# ----------------------------------------------------------------------------- workloads

def run_zeroshot(args):
    t_start = time.perf_counter()
    s = Setup(args)
    torch = s.torch
    rows = read_tsv(os.path.join(args.data, "dev.tsv"), args.n_examples)
    labels = [y for _, y in rows]
    rss_before = rss_mb()

    t0 = time.perf_counter()
    loader = s.loader(rows)
    build_s = time.perf_counter() - t0
    wrapper = loader.tokenizer_wrapper
    n_truncated = wrapper.num_truncated_sentences
    truncated_idx = [i for i, f in enumerate(loader.tensor_dataset)
                     if int(f.attention_mask.sum()) == args.max_seq_length]

    s.model.eval()
    s.cuda_reset()
    times, preds, diffs = [], None, None
    with torch.no_grad():
        for rep in range(args.warmup + args.reps):
            s.sync()
            t0 = time.perf_counter()
            out = []
            for batch in loader:
                batch = batch.to(s.device)
                out.append(s.model(batch))
            logits = torch.cat(out).float().cpu()
            s.sync()
            dt = time.perf_counter() - t0
            if rep >= args.warmup:
                times.append(dt)
            preds = logits.argmax(-1).tolist()
            diffs = (logits[:, 1] - logits[:, 0]).tolist()

    n = len(rows)
    med = statistics.median(times)
    n_correct = sum(int(p == y) for p, y in zip(preds, labels))
    return {
        "workload": "zeroshot", "settings": s.settings(), "versions": versions(),
        "n_examples": n, "model_load_s": s.load_s, "loader_build_s": build_s,
        "loader_build_examples_per_s": n / build_s,
        "score_s_median": med, "score_s_min": min(times), "score_s_all": times,
        "examples_per_s": n / med, "examples_per_s_best": n / min(times),
        "accuracy": n_correct / n, "n_correct": n_correct,
        "frac_pred_positive": sum(preds) / n,
        "n_truncated": n_truncated, "truncated_indices": truncated_idx,
        "first_example": describe_example(loader, s.tokenizer, 0),
        "truncated_examples": [describe_example(loader, s.tokenizer, i) for i in truncated_idx],
        "predictions": preds,
        "score_diff_pos_minus_neg": [round(d, 5) for d in diffs],
        "rss_before_workload_mb": rss_before, "peak_rss_mb": maxrss_mb(),
        "cuda_max_allocated_mb": s.cuda_peak_mb(),
        "process_wall_s": time.perf_counter() - t_start,
    }


def run_train(args):
    t_start = time.perf_counter()
    s = Setup(args)
    torch = s.torch
    n_steps = args.warmup + args.train_steps
    rows = read_tsv(os.path.join(args.data, "train.tsv"), n_steps * args.batch_size)
    assert len(rows) == n_steps * args.batch_size, "train.tsv too short"
    rss_before = rss_mb()

    t0 = time.perf_counter()
    loader = s.loader(rows)
    build_s = time.perf_counter() - t0

    params = [p for p in s.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr)  # torch defaults otherwise
    loss_fn = torch.nn.CrossEntropyLoss()
    s.model.train()
    s.cuda_reset()
    times, losses = [], []
    it = iter(loader)
    for step in range(n_steps):
        s.sync()
        t0 = time.perf_counter()
        batch = next(it).to(s.device)
        logits = s.model(batch)
        loss = loss_fn(logits, batch["label"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        s.sync()
        dt = time.perf_counter() - t0
        losses.append(loss.item())
        if step >= args.warmup:
            times.append(dt)

    med = statistics.median(times)
    return {
        "workload": "train", "settings": s.settings(), "versions": versions(),
        "optimizer": f"torch.optim.AdamW(lr={args.lr}, torch defaults: betas=(0.9, 0.999), "
                     "eps=1e-8, weight_decay=0.01)",
        "loss": "CrossEntropyLoss over PromptForClassification class logits",
        "trainable_params": sum(p.numel() for p in params),
        "mode": "model.train() (dropout on)",
        "data": f"first {len(rows)} rows of train.tsv, in order, one new batch per step",
        "batch_size": args.batch_size, "warmup_steps": args.warmup,
        "timed_steps": args.train_steps, "model_load_s": s.load_s, "loader_build_s": build_s,
        "step_s_median": med, "step_s_min": min(times), "step_s_all": times,
        "examples_per_s": args.batch_size / med, "examples_per_s_best": args.batch_size / min(times),
        "losses": losses,
        "rss_before_workload_mb": rss_before, "peak_rss_mb": maxrss_mb(),
        "cuda_max_allocated_mb": s.cuda_peak_mb(),
        "process_wall_s": time.perf_counter() - t_start,
    }


# ----------------------------------------------------------------------------- driver

def run_child(name, argv):
    """Run one workload in a fresh interpreter; return its JSON result."""
    fd, path = tempfile.mkstemp(prefix=f"openprompt_{name}_", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--workload", name, "--out", path]
    t0 = time.perf_counter()
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            res = json.load(f)
    finally:
        os.unlink(path)
    res["subprocess_wall_s"] = time.perf_counter() - t0
    return res


def strip_driver_args(argv):
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--out", "--workload"):
            skip = True
            continue
        if a.startswith("--out=") or a.startswith("--workload="):
            continue
        out.append(a)
    return out


def summary_line(res):
    z, t = res.get("zeroshot"), res.get("train")
    lines = []
    if z:
        fe = z["first_example"]
        lines.append(f"zero-shot: n={z['n_examples']} acc={z['accuracy']:.4f} "
                     f"({z['n_correct']}/{z['n_examples']}) "
                     f"{z['examples_per_s']:.1f} ex/s, loader build {z['loader_build_s']:.2f}s, "
                     f"peak RSS {z['peak_rss_mb']:.0f} MiB, truncated {z['n_truncated']}")
        lines.append(f"first example ids: {fe['input_ids'][:fe['n_non_pad']]} "
                     f"(+{len(fe['input_ids']) - fe['n_non_pad']} pad), mask at {fe['mask_positions']}")
    if t:
        lines.append(f"train: B={t['batch_size']} {t['examples_per_s']:.1f} ex/s "
                     f"(median step {t['step_s_median']:.3f}s), peak RSS {t['peak_rss_mb']:.0f} MiB")
    return "\n".join(lines)


PER_EXAMPLE_KEYS = ("predictions", "score_diff_pos_minus_neg", "truncated_examples", "settings",
                    "versions", "score_s_all", "step_s_all")


def compact(result):
    """The summary printed to stdout: the --out JSON without per-example lists."""
    out = {k: v for k, v in result.items() if k not in ("zeroshot", "train")}
    for name in ("zeroshot", "train"):
        if name in result:
            out[name] = {k: v for k, v in result[name].items() if k not in PER_EXAMPLE_KEYS}
            fe = out[name].get("first_example")
            if fe:
                out[name]["first_example"] = {**fe, "input_ids": fe["input_ids"][:fe["n_non_pad"]]}
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.workload == "all":
        child_argv = strip_driver_args(argv)
        result = {"framework": "openprompt"}
        for name in ("zeroshot", "train"):
            result[name] = run_child(name, child_argv)
        result["versions"] = result["zeroshot"]["versions"]
        result["settings"] = result["zeroshot"]["settings"]
        print(summary_line(result), file=sys.stderr)
    else:
        warnings.filterwarnings("ignore", category=FutureWarning)
        import torch
        if args.device == "cuda" and not torch.cuda.is_available():
            sys.exit("--device cuda requested but CUDA is not available")
        result = run_zeroshot(args) if args.workload == "zeroshot" else run_train(args)

    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    if args.workload == "all":
        print(json.dumps(compact(result), indent=1))


if __name__ == "__main__":
    main()
