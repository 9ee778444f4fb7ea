"""Bad inputs get one clear message (exit 2, the fix named, no traceback) before any work, and write nothing.

Runs experiments/bad_inputs.py -- every bad input of the issue, each through the CLI in its own process --
and checks each row and that README.md shows the table the script produces.  Also: SIGTERM checkpoints a
training run like Ctrl-C, a rerun multirun skips finished jobs, and the data-file options.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import DATA, MINI_MLM, PLUGINS, ROOT, cli, needs_data, needs_mini_mlm


@needs_data
@needs_mini_mlm
def test_every_bad_input_gets_one_clear_message_and_writes_nothing(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import bad_inputs
    finally:
        sys.path.pop(0)
    rows = bad_inputs.main(["--json", str(tmp_path / "rows.json")])
    assert len(rows) == len(bad_inputs.CASES) >= 18
    for r in rows:
        assert r["rc"] == 2, (r["case"], r["stderr"])
        assert r["must"] in r["stderr"], (r["case"], r["stderr"])
        assert r["message"].startswith("error:") and not r["traceback"], (r["case"], r["stderr"])
        assert r["written"] == [], (r["case"], r["written"])
    # the README shows the table the script writes (the seconds column aside: it is a timing)
    readme = (ROOT / "README.md").read_text()
    shown = readme[readme.index(bad_inputs.BEGIN) + len(bad_inputs.BEGIN): readme.index(bad_inputs.END)].strip()
    drop_seconds = lambda t: [re.sub(r"\| [0-9]+ \|$", "|", line) for line in t.splitlines()]  # noqa: E731
    assert drop_seconds(shown) == drop_seconds(bad_inputs.table(rows))


def test_sigterm_checkpoints_a_training_run_and_resume_continues(tiny_model_dirs, toy_data_root, tmp_path):
    out = tmp_path / "run"
    common = ["--config-dir", PLUGINS / "conf", "+task=toy", "strategy=fixed_prompt", "strategy.k_shot=4",
              "strategy.eval_every=50000", f"model.name_or_path={tiny_model_dirs['bert']}", f"data_root={toy_data_root}",
              "progress=false", f"hydra.run.dir={out}"]
    args = [*common, "strategy.max_steps=100000"]
    proc = subprocess.Popen([sys.executable, "-m", "promptlearn.run", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1"))
    for line in proc.stdout:  # training has started
        if "strategy fixed_prompt: training" in line:
            break
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "SIGTERM" in err and "resume=true" in err
    assert (out / "checkpoint.pt").is_file() and not (out / "results.json").exists()
    import torch

    step = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    assert step > 0
    done = cli(*common, f"strategy.max_steps={step + 2}", "resume=true")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed from {out / 'checkpoint.pt'} at step {step}" in done.stdout
    log = json.loads((out / "results.json").read_text())["train"]["log"]
    assert log[-1]["step"] == step + 2


def test_a_rerun_multirun_skips_finished_jobs(tiny_model_dirs, toy_data_root, tmp_path):
    args = ["-m", "--config-dir", PLUGINS / "conf", "+task=toy", "seed=1,2", f"model.name_or_path={tiny_model_dirs['bert']}",
            f"data_root={toy_data_root}", "progress=false", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    first = cli(*args)
    assert first.returncode == 0 and "skipping" not in first.stdout, first.stderr[-2000:]
    results = sorted((tmp_path / "sweep").rglob("results.json"))
    assert len(results) == 2
    stamps = [p.stat().st_mtime_ns for p in results]
    again = cli(*args)
    assert again.returncode == 0 and again.stdout.count("skipping job") == 2
    assert [p.stat().st_mtime_ns for p in results] == stamps  # nothing was rewritten
    forced = cli(*args, "rerun=true")
    assert forced.returncode == 0 and "skipping" not in forced.stdout
    changed = cli(*args[:-1], "limit=3", args[-1])  # another configuration in the same folders: it runs
    assert changed.returncode == 0 and "skipping" not in changed.stdout


def test_blank_lines_are_dropped_by_default_and_kept_when_asked(tmp_path):
    from promptlearn.task import load_task

    (tmp_path / "pos.txt").write_text("good film\n\ngreat movie\n")
    (tmp_path / "neg.txt").write_text("bad film\n   \nawful movie\n")
    cfg = {"name": "lines", "data_dir": str(tmp_path), "format": "lines",
           "files": {"train": {"positive": "pos.txt", "negative": "neg.txt"},
                     "test": {"positive": "pos.txt", "negative": "neg.txt"}},
           "fields": {"text_a": "text"}, "labels": ["negative", "positive"], "template": "{text_a} {mask}",
           "verbalizer": {"negative": "bad", "positive": "good"}}
    assert len(load_task(cfg).splits["train"]) == 4
    with pytest.warns(UserWarning, match="pos.txt has 1 blank line"):
        kept = load_task({**cfg, "skip_blank": False}).splits["train"]
    assert len(kept) == 6 and "" in kept["text_a"]


def test_per_file_csv_options(tmp_path):
    from promptlearn.task import load_task

    (tmp_path / "train.csv").write_text("text,label\ngreat film,pos\nbad film,neg\n")
    (tmp_path / "test.csv").write_text("pos,a gorgeous film\nneg,a dull mess\n")
    cfg = {"name": "perfile", "data_dir": str(tmp_path), "format": "csv",
           "files": {"train": "train.csv", "test": {"path": "test.csv", "header": False, "columns": ["label", "text"]}},
           "fields": {"text_a": "text"}, "labels": ["neg", "pos"], "template": "{text_a} {mask}",
           "verbalizer": {"neg": "bad", "pos": "good"}}
    splits = load_task(cfg).splits
    assert splits["test"]["text_a"] == ["a gorgeous film", "a dull mess"] and len(splits["train"]) == 2
    from promptlearn.task import TaskConfigError

    with pytest.raises(TaskConfigError, match="unknown per-file option"):
        load_task({**cfg, "files": {"train": "train.csv", "test": {"path": "test.csv", "hedaer": False}}})
