import json

from promptlearn.report import aggregate, collect, main, markdown_table


def fake(task, strategy, seed, acc, k=16, enc=None, checksum="c"):
    strat = {"name": strategy, **({"prompt_encoder": {"type": enc}} if enc else {})}
    return {"task": task, "strategy": strategy, "model": "/m/mini-mlm", "seed": seed, "k_shot": k,
            "metrics": {"main": acc, "accuracy": acc, "main_metric": "accuracy"},
            "checksums": {"few_shot": f"{checksum}{seed}"}, "config": {"strategy": strat}, "timings": {"total_s": 1.0}}


def test_mean_std_and_grouping(tmp_path):
    runs = [fake("sst2", "fixed_prompt", s, a) for s, a in zip((13, 21, 42), (0.9, 0.8, 0.7))]
    runs += [fake("sst2", "fixed_lm", 13, 0.6, enc="lstm"), fake("sst2", "fixed_lm", 21, 0.5, enc="lstm")]
    for i, r in enumerate(runs):
        d = tmp_path / str(i)
        d.mkdir()
        (d / "results.json").write_text(json.dumps(r))
    rows = aggregate(collect([tmp_path]))
    by = {r["strategy"]: r for r in rows}
    assert by["fixed_prompt"]["mean"] == 80.0 and abs(by["fixed_prompt"]["std"] - 8.16496580927726) < 1e-9
    assert by["fixed_prompt"]["seeds"] == [13, 21, 42] and by["fixed_prompt"]["checksums"]["21"] == "c21"
    assert by["fixed_lm/lstm"]["n_seeds"] == 2 and by["fixed_lm/lstm"]["mean"] == 55.0
    table = markdown_table(rows)
    assert "| fixed_prompt | 80.0 (8.2) n=3 |" in table
    main([str(tmp_path), "--out", str(tmp_path / "summary")])
    assert (tmp_path / "summary.md").read_text().startswith("| strategy | sst2 |")


def test_rows_split_by_k_when_mixed():
    rows = aggregate([fake("sst2", "finetune", 13, 0.5, k=16), fake("sst2", "finetune", 13, 0.7, k=256)])
    table = markdown_table(rows)
    assert "| finetune K=16 | 50.0 (0.0) n=1 |" in table and "| finetune K=256 | 70.0 (0.0) n=1 |" in table


def test_different_configs_are_not_averaged_and_duplicate_seeds_fail():
    import pytest

    a = [fake("sst2", "fixed_prompt", s, 0.5) for s in (13, 21)]
    b = [fake("sst2", "fixed_prompt", s, 0.9) for s in (13, 21)]
    for r in b:
        r["config"]["strategy"]["lr"] = 2e-5
    rows = aggregate(a + b)
    assert len(rows) == 2 and sorted(r["mean"] for r in rows) == [50.0, 90.0]
    assert all("cfg=" in r["strategy"] for r in rows)
    with pytest.raises(SystemExit, match="more than once"):
        aggregate(a + [fake("sst2", "fixed_prompt", 13, 0.6)])
