"""Smoke runs of the benchmark scripts (seconds), so they cannot rot; the real numbers are in experiments/bench."""

import json
import subprocess
import sys

from conftest import DATA, MINI_MLM, ROOT, needs_data, needs_mini_mlm

pytestmark = [needs_data, needs_mini_mlm]
BENCH = ROOT / "experiments" / "bench"


def test_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH / "bench.py"), "--model", str(MINI_MLM), "--data",
                           str(DATA / "SST-2"), "--n-examples", "16", "--batch-size", "8", "--reps", "1",
                           "--warmup", "0", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["results"]) == {"raw_forward", "zeroshot", "zeroshot_multi", "raw_train", "train_fixed_prompt",
                                   "train_fixed_lm"}
    for r in res["results"].values():
        assert r["examples"] == 16 and r["examples_per_s"] > 0 and r["peak_rss_mb"] > 0
    assert res["results"]["zeroshot"]["restricted_head"] is True
    assert any(len(w) > 0 for w in res["results"]["zeroshot_multi"]["label_words"].values())
    assert all(v > 0 for v in res["ratios"].values()) and len(res["ratios"]) == 4


def test_promptlearn_side_of_openprompt_comparison(tmp_path):
    out = tmp_path / "pl.json"
    proc = subprocess.run([sys.executable, str(BENCH / "promptlearn_side.py"), "--model", str(MINI_MLM), "--data",
                           str(DATA / "SST-2"), "--n-examples", "16", "--reps", "1", "--warmup", "1",
                           "--train-steps", "1", "--threads", "1", "--workload", "zeroshot", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert len(res["predictions"]) == 16 and 0 <= res["accuracy"] <= 1
    assert res["peak_rss_mb"] >= res["rss_before_workload_mb"] > 0


def test_multi_token_bench_smoke(tmp_path):
    """The multi-token benchmark runs, and its check holds on mini-mlm: promptlearn's batched left-to-right scores
    equal PET-style scoring at batch size 1 with one forward per sub-token (the script exits non-zero otherwise)."""
    out = tmp_path / "mt.json"
    proc = subprocess.run([sys.executable, str(BENCH / "multi_token.py"), "--model", str(MINI_MLM), "--data",
                           str(DATA / "SST-2"), "--n-examples", "8", "--batch-size", "8", "--reps", "1",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["check"]["same_predictions"] and res["check"]["max_abs_diff_word_logprobs"] < 1e-3
    assert max(len(p) for p in res["splits"].values()) > 1  # the verbalizer really has multi-token words
    assert res["results"]["pet_per_token"]["forwards"] == 8 * sum(len(p) for p in res["splits"].values())
    assert set(res["ratios"]) == {"exact_parallel_vs_pet_per_token", "exact_left_to_right_vs_pet_per_token",
                                  "exact_parallel_vs_one_mask_mean", "exact_parallel_vs_single_token"}


def test_multitask_bench_smoke(tmp_path):
    """The multi-task serving benchmark runs, and its check holds on mini-mlm: every example's mixed-batch scores
    equal its own task model's; N copies load N LMs, the mixed workload one."""
    out = tmp_path / "mt.json"
    proc = subprocess.run([sys.executable, str(BENCH / "multitask.py"), "--model", str(MINI_MLM), "--data",
                           str(DATA / "SST-2"), "--tasks", "2", "--n-examples", "16", "--batch-size", "8", "--reps", "1",
                           "--warmup", "0", "--threads", "1", "--workloads", "mixed,copies", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    r = res["results"]
    assert set(r) == {"mixed/N=2", "copies/N=2"} and r["mixed/N=2"]["max_abs_diff_vs_per_task"] < 1e-4
    assert [r[f"{w}/N=2"]["lms_loaded"] for w in ("mixed", "copies")] == [1, 2]
    assert r["mixed/N=2"]["forwards_per_pass"] == 2 and r["copies/N=2"]["forwards_per_pass"] == 4
    assert all(x["examples"] == 16 and x["examples_per_s"] > 0 and x["peak_rss_mb"] > 0 for x in r.values())
    assert sorted(res["ratios"]) == sorted(f"N=2 mixed/copies {k}" for k in
                                           ("examples_per_s", "peak_rss", "models_rss", "padded_tokens"))
