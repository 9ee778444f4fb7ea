"""End to end: the CLI on SST-2 with mini-mlm, checked against raw AutoModelForMaskedLM logits."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import DATA, MINI_MLM, ROOT, needs_data, needs_mini_mlm

pytestmark = [needs_data, needs_mini_mlm]


def independent_predictions(sentences):
    """Raw MLM logits at [MASK] for '<sentence> It was [MASK].', truncating the sentence to fit 64 tokens."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MINI_MLM)
    mlm = AutoModelForMaskedLM.from_pretrained(MINI_MLM).eval()
    words = [tok.convert_tokens_to_ids(w) for w in ("terrible", "great")]
    tail = tok("It was", add_special_tokens=False)["input_ids"] + [tok.mask_token_id] + \
        tok(".", add_special_tokens=False)["input_ids"]
    preds, diffs = [], []
    with torch.no_grad():
        for s in sentences:
            body = tok(s, add_special_tokens=False)["input_ids"][: 64 - 2 - len(tail)]
            ids = [tok.cls_token_id] + body + tail + [tok.sep_token_id]
            logits = mlm(input_ids=torch.tensor([ids])).logits[0, ids.index(tok.mask_token_id)]
            preds.append(int(logits[words[1]] > logits[words[0]]))
            diffs.append(float(logits[words[1]] - logits[words[0]]))
    return preds, diffs


def test_cli_sst2_zero_shot_matches_raw_mlm(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "promptlearn.run", "+task=sst2", f"model.name_or_path={MINI_MLM}",
           f"data_root={DATA}", "progress=false", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sst2 [tuning_free] test n=872: accuracy=" in proc.stdout
    res = json.loads((out / "results.json").read_text())
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 872 and res["metrics"]["n"] == 872

    import csv

    with open(DATA / "SST-2" / "dev.tsv", newline="") as f:
        dev = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    by_idx = {r["idx"]: r for r in rows}
    sentences = [dev[i]["sentence"].strip() for i in range(len(dev))]
    labels = [int(dev[i]["label"]) for i in range(len(dev))]
    preds, diffs = independent_predictions(sentences)
    ours = [by_idx[i]["pred"] for i in range(len(dev))]
    assert [by_idx[i]["label"] for i in range(len(dev))] == labels
    mismatches = [i for i in range(len(dev)) if ours[i] != preds[i]]
    assert not mismatches, f"{len(mismatches)} predictions differ, e.g. idx {mismatches[:5]}"
    # the class scores are log-softmax over the two label words: their difference is the raw logit gap
    for i in range(len(dev)):
        s = by_idx[i]["scores"]
        assert abs((s[1] - s[0]) - diffs[i]) < 1e-4
    acc = sum(p == y for p, y in zip(preds, labels)) / len(labels)
    assert res["metrics"]["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert res["checksums"]["test_ids"] and res["timings"]["total_s"] > 0
