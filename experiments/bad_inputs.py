"""Run every bad input of issue 8 through the CLI and tabulate what each prints.

    python experiments/bad_inputs.py                   # prints the markdown table
    python experiments/bad_inputs.py --update-readme   # also rewrites the table in README.md

Each case runs ``python -m promptlearn.run ...`` in its own process (as a user would) with a fresh run
directory, and records the exit code, the message on stderr (its first line), the seconds until the
process ended, and whether the run wrote any result (results.json, predictions.jsonl, scores/).  The
custom-task cases write their own small data files and task YAML into a temporary folder.
``tests/test_bad_inputs.py`` runs this script and checks every row.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = os.environ.get("PROMPTLEARN_MODEL") or str(ROOT.parent / "shared" / "models" / "mini-mlm")
BEGIN, END = "<!-- bad-inputs:begin (experiments/bad_inputs.py --update-readme) -->", "<!-- bad-inputs:end -->"

TASK_YAML = """\
# @package task
name: mytask
data_dir: {data}
format: csv
files:
  all: reviews.csv
derive:
  test: {{from: all, size: 0.5, seed: 42, rest: train}}
fields:
  text_a: review
label_column: sentiment
labels: [negative, positive]
label_map: {{neg: negative, pos: positive}}
template: "{{text_a|shortenable}} It was {{mask}}."
verbalizer: {{negative: bad, positive: great}}
"""

#: (what the user did, CLI arguments, a phrase the message must contain)
CASES = [
    ("a nonsense label word", ['verbalizer.label_words="negative: xqzvbn; positive: great"'], "max_subtokens"),
    ("the same label word for two classes", ['verbalizer.label_words="negative: great; positive: great"'],
     "allow_shared"),
    ("`limit=0`", ["limit=0"], "fix: limit="),
    ("`limit=-1`", ["limit=-1"], "fix: limit="),
    ("`eval_batch_size=0`", ["eval_batch_size=0"], "fix: eval_batch_size="),
    ("`eval_split=dev` (SST-2 has train/test)", ["eval_split=dev"], "fix: eval_split=test"),
    ("`device=cuda` on a CPU-only torch", ["device=cuda"], "fix: device="),
    ("`seed=abc`", ["seed=abc"], "fix: seed="),
    ("an unknown template field `{foo}`", ['template="{foo} It was {mask}."'], "fix: use one of those"),
    ("a template with two masks", ['template="{text_a} It was {mask} {mask}."'], "fix: keep exactly one {mask}"),
    ("K larger than a class", ["strategy=fixed_prompt", "strategy.k_shot=100000"], "fix: strategy.k_shot="),
    ("an unknown strategy option value", ["strategy=fixed_prompt", "strategy.batch_size=0"],
     "fix: strategy.batch_size="),
    ("a learning rate that makes the loss NaN", ["strategy=fixed_lm", "strategy.prompt_lr=1e30", "limit=8"],
     "Lower the learning rate"),
    ("a model directory that does not exist", ["model.name_or_path=/nonexistent/model"], "fix: model.name_or_path="),
    ("an empty model directory", ["model.name_or_path={empty}"], "fix: model.name_or_path="),
    ("the default `roberta-large` with no Hub and no cache", ["model.name_or_path=roberta-large"],
     "fix: model.name_or_path="),
    ("a custom CSV with a row missing a cell", ["--config-dir={conf}", "+task=mytask", "task.data_dir={short}"],
     "fix: complete the row"),
    ("a custom CSV with only a header", ["--config-dir={conf}", "+task=mytask", "task.data_dir={header_only}"],
     "fix: point files:"),
]


def _setup(tmp: Path) -> dict[str, str]:
    (tmp / "empty").mkdir()
    for name, body in (("short", 'id,review,sentiment\n1,"Great phone.",pos\n2,"Bad phone."\n3,"Fine.",neg\n'),
                       ("header_only", "id,review,sentiment\n")):
        (tmp / name).mkdir()
        (tmp / name / "reviews.csv").write_text(body)
    (tmp / "conf" / "task").mkdir(parents=True)
    (tmp / "conf" / "task" / "mytask.yaml").write_text(TASK_YAML.format(data=tmp / "short"))
    return {"empty": str(tmp / "empty"), "conf": str(tmp / "conf"), "short": str(tmp / "short"),
            "header_only": str(tmp / "header_only")}


def _fill(arg: str, paths: dict[str, str]) -> str:
    for key, value in paths.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def run_case(args: list[str], run_dir: Path) -> dict:
    has_task = any(a.startswith("+task=") for a in args)
    flags, args = [a for a in args if a.startswith("--")], [a for a in args if not a.startswith("--")]
    cmd = [sys.executable, "-m", "promptlearn.run", *flags, *([] if has_task else ["+task=sst2"]),
           *([] if any(a.startswith("model.name_or_path=") for a in args) else [f"model.name_or_path={MODEL}"]),
           *args, "progress=false", f"hydra.run.dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "HF_HUB_OFFLINE")}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    seconds = time.perf_counter() - t
    written = sorted(p.name for p in run_dir.glob("*") if p.name in ("results.json", "predictions.jsonl", "scores",
                                                                     "model"))
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    message = next((x for x in lines if x.startswith(("error:", "Error", "Traceback"))), lines[-1] if lines else "")
    fix = next((x.strip() for x in lines if x.strip().startswith("fix:")), None)
    if fix and fix not in message:  # a multi-line message (a template error's caret display): add its fix line
        message = f"{message} ... {fix}"
    return {"cmd": cmd[3:-2], "rc": proc.returncode, "message": message, "stderr": proc.stderr[-4000:],
            "traceback": "Traceback (most recent call last)" in proc.stderr, "seconds": round(seconds, 1),
            "written": written}


def table(rows: list[dict]) -> str:
    out = ["| what the user did | exit | what it prints (stderr) | s |", "|---|---|---|---|"]
    for r in rows:
        msg = r["message"].replace("|", "\\|")
        msg = re.sub(re.escape(str(r.get("tmp", ""))) + r"[^ ',]*", "/tmp/…", msg) if r.get("tmp") else msg
        out.append(f"| {r['case']} | {r['rc']} | `{msg}` | {r['seconds']:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        paths = _setup(tmp)
        for i, (case, cli, must) in enumerate(CASES):
            r = run_case([_fill(a, paths) for a in cli], tmp / f"run{i}")
            r.update(case=case, must=must, tmp=str(tmp))
            rows.append(r)
            print(f"{r['rc']:>3} {r['seconds']:5.1f}s {case}: {r['message'][:150]}", file=sys.stderr)
    text = table(rows)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.update_readme:
        readme = ROOT / "README.md"
        s = readme.read_text()
        start, end = s.index(BEGIN) + len(BEGIN), s.index(END)
        readme.write_text(s[:start] + "\n" + text + "\n" + s[end:])
    return rows


if __name__ == "__main__":
    main()
