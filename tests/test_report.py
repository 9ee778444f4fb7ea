import json
import os
from pathlib import Path

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
    assert sorted(r["strategy"] for r in rows) == ["fixed_prompt lr=2e-05", "fixed_prompt lr=None"]
    c = [fake("sst2", "fixed_prompt", s, 0.7) for s in (13, 21)]
    for r in c:
        r["verbalizer"] = "another"  # not in the config: told apart by the signature
    assert all("cfg=" in r["strategy"] for r in aggregate(a + c))
    with pytest.raises(SystemExit, match="more than once"):
        aggregate(a + [fake("sst2", "fixed_prompt", 13, 0.6)])


# ------------------------------------------------------------------ grid selection on dev, LaTeX, plots

def grid_run(seed, lr, bs, dev, test, task="sst2", template="{text_a} It was {mask}.", k=16):
    r = fake(task, "fixed_prompt", seed, test, k=k)
    r["config"]["strategy"].update({"lr": lr, "batch_size": bs})
    r["config"]["seed"] = seed
    r["template"] = template
    r["train"] = {"best_dev": dev, "dev_metric": "accuracy"}
    return r


def write_runs(root, runs):
    for i, r in enumerate(runs):
        d = root / f"run{i}"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(r))


def test_select_on_dev_picks_by_dev_never_by_test():
    from promptlearn.report import select_on_dev

    # for every seed, lr=1e-5 has the better dev and the worse test: dev must win
    runs = []
    for seed, (dev_a, test_a, dev_b, test_b) in zip((13, 21, 42), ((0.8, 0.50, 0.6, 0.90), (0.7, 0.55, 0.5, 0.95),
                                                                   (0.9, 0.60, 0.4, 0.99))):
        runs += [grid_run(seed, 1e-5, 8, dev_a, test_a), grid_run(seed, 5e-5, 8, dev_b, test_b)]
    (row,) = select_on_dev(runs)
    assert [c["point"] for c in row["selected"]] == ["lr=1e-05"] * 3
    assert row["per_seed"] == [50.0, 55.0, 60.0] and abs(row["mean"] - 55.0) < 1e-9
    assert row["grid_keys"] == ["strategy.lr"] and row["strategy"] == "fixed_prompt (dev-selected of 2)"
    by_point = {g["point"]: g for g in row["grid"]}
    assert by_point["lr=5e-05"]["times_chosen"] == 0 and abs(by_point["lr=5e-05"]["test_mean"] - 94.666666) < 1e-4
    # the choice is per seed (LM-BFF): a seed whose dev prefers the other point gets it
    runs[3]["train"]["best_dev"] = 0.75  # seed 21, lr=5e-5: dev 0.75 > 0.7
    (row,) = select_on_dev(runs)
    assert [c["point"] for c in row["selected"]] == ["lr=1e-05", "lr=5e-05", "lr=1e-05"]
    assert row["per_seed"] == [50.0, 95.0, 60.0]


def test_select_on_dev_breaks_ties_deterministically():
    import random

    from promptlearn.report import select_on_dev

    runs = [grid_run(13, lr, bs, 0.75, test) for lr, bs, test in
            ((5e-5, 4, 0.1), (1e-5, 8, 0.2), (1e-5, 4, 0.3), (5e-5, 8, 0.4))]
    runs.append(grid_run(13, 2e-5, 2, 0.5, 0.9))  # worse dev: never chosen
    for order in range(4):  # whatever order the files come in
        random.Random(order).shuffle(runs)
        (row,) = select_on_dev(runs)
        # ties go to the point that sorts first: keys alphabetically (batch_size, lr), values by number
        assert row["selected"][0]["point"] == "batch_size=4,lr=1e-05" and row["per_seed"] == [30.0]
    assert row["grid_keys"] == ["strategy.batch_size", "strategy.lr"]


def test_select_on_dev_refuses_duplicates_and_untrained_grids():
    import pytest

    from promptlearn.report import select_on_dev

    with pytest.raises(SystemExit, match="more than once"):
        select_on_dev([grid_run(13, 1e-5, 8, 0.5, 0.5), grid_run(13, 1e-5, 8, 0.6, 0.6), grid_run(13, 2e-5, 8, 0.6, 0.6)])
    bad = [grid_run(13, 1e-5, 8, 0.5, 0.5), grid_run(13, 2e-5, 8, 0.5, 0.5)]
    del bad[0]["train"]
    with pytest.raises(SystemExit, match="no train.best_dev"):
        select_on_dev(bad)
    zero = [fake("sst2", "tuning_free", s, 0.5) for s in (13, 21)]  # one configuration, no dev: reported as is
    (row,) = select_on_dev(zero)
    assert row["mean"] == 50.0 and row["strategy"] == "tuning_free"


def test_latex_table_has_the_numbers_in_booktabs():
    from promptlearn.report import latex_table

    rows = aggregate([fake("sst2", "fixed_prompt", s, a) for s, a in zip((13, 21, 42), (0.9, 0.8, 0.7))]
                     + [fake("mr", "fixed_prompt", 13, 0.6)] + [fake("sst2", "fixed_lm", 13, 0.55, enc="lstm")])
    tex = latex_table(rows)
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "\\begin{tabular}{lcc}" in tex
    assert "Strategy & mr & sst2 \\\\" in tex
    assert "fixed\\_prompt & 60.0 (0.0) & 80.0 (8.2) \\\\" in tex
    assert "fixed\\_lm/lstm &  & 55.0 (0.0) \\\\" in tex
    assert "in \\%" in tex


def test_report_cli_writes_tables_and_plots_with_the_right_numbers(tmp_path):
    # a grid (2 lr x 2 seeds, dev and test disagree), two K for a learning curve, two templates
    runs = [grid_run(13, 1e-5, 8, 0.9, 0.6), grid_run(13, 5e-5, 8, 0.5, 0.9),
            grid_run(21, 1e-5, 8, 0.6, 0.8), grid_run(21, 5e-5, 8, 0.7, 0.7)]
    write_runs(tmp_path / "grid", runs)
    main([str(tmp_path / "grid"), "--select", "dev", "--pdf"])
    out = tmp_path / "grid" / "summary"
    md = out.with_suffix(".md").read_text()
    assert "| fixed_prompt (dev-selected of 2) | 65.0 (5.0) n=2 |" in md  # 60 (seed 13, lr 1e-5) and 70 (seed 21, 5e-5)
    assert "| 13 | lr=1e-05 | 90.00 | 60.00 |" in md and "| 21 | lr=5e-05 | 70.00 | 70.00 |" in md
    assert "| lr=1e-05 | 2 | 75.0 (15.0) | 70.0 (10.0) | 1 seed(s) |" in md
    assert "65.0 (5.0)" in out.with_suffix(".tex").read_text()
    rows = json.loads(out.with_suffix(".json").read_text())
    assert rows[0]["per_seed"] == [60.0, 70.0] and rows[0]["selected"][0]["seed"] == 13
    for name in ("summary_seeds.png", "summary_seeds.pdf"):
        assert (tmp_path / "grid" / name).stat().st_size > 1000
    assert (tmp_path / "grid" / "summary_seeds.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "grid" / "summary_k_curve.png").exists()  # one K: no learning curve
    assert (tmp_path / "grid" / "summary_dev_test.png").read_bytes()[:4] == b"\x89PNG"  # dev vs test of the grid
    by_point = {g["point"]: g for g in rows[0]["grid"]}
    assert by_point["lr=1e-05"]["per_seed_dev"] == [90.0, 60.0] and by_point["lr=1e-05"]["per_seed"] == [60.0, 80.0]

    curve = [fake("sst2", "finetune", s, a, k=k) for k, accs in ((4, (0.5, 0.6)), (16, (0.7, 0.8))) for s, a in
             zip((13, 21), accs)]
    temps = [grid_run(s, 1e-5, 8, 0.5, a, template=t) for t, accs in (("{text_a} It was {mask}.", (0.5, 0.7)),
                                                                     ("{text_a} A {mask} one.", (0.9, 0.9)))
             for s, a in zip((13, 21), accs)]
    write_runs(tmp_path / "more", curve + temps)
    main([str(tmp_path / "more"), "--out", str(tmp_path / "more" / "s")])
    md = (tmp_path / "more" / "s.md").read_text()
    assert "| finetune K=4 | 55.0 (5.0) n=2 |" in md and "| finetune K=16 | 75.0 (5.0) n=2 |" in md
    for name in ("s_seeds.png", "s_k_curve.png", "s_templates.png"):
        assert (tmp_path / "more" / name).read_bytes()[:4] == b"\x89PNG", name
    # --select dev on the templates: the template is a grid dimension like any other option
    main([str(tmp_path / "more"), "--select", "dev", "--no-plots", "--out", str(tmp_path / "more" / "d")])
    rows = {r["strategy"]: r for r in json.loads((tmp_path / "more" / "d.json").read_text())}
    picked = rows["fixed_prompt (dev-selected of 2)"]
    assert picked["grid_keys"] == ["template"] and picked["per_seed"] == [90.0, 90.0]  # dev ties: 'A {mask}' sorts first
    assert not list((tmp_path / "more").glob("d_*.png"))


def test_plot_helpers_write_files(tmp_path):
    from promptlearn.report import curve_plot, strip_plot

    files = strip_plot({"a": [1.0, 2.0], "b": [3.0]}, tmp_path / "x.png", highlight=["b"], horizontal=True, chance=2.0)
    files += curve_plot({"s": {4: [50.0, 52.0], 8: [55.0]}}, tmp_path / "c.png", chance=50.0, pdf=True)
    assert [f.name for f in files] == ["x.png", "c.png", "c.pdf"] and all(f.stat().st_size > 1000 for f in files)


def test_plots_leave_the_callers_matplotlib_backend_alone(tmp_path):
    """A report in a notebook must not switch its backend (its inline plots would stop showing)."""
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); from promptlearn.report import curve_plot, strip_plot; "
            f"curve_plot({{'s': {{4: [50.0], 8: [55.0]}}}}, {str(tmp_path / 'c.png')!r}); "
            f"strip_plot({{'a': [1.0, 2.0]}}, {str(tmp_path / 's.png')!r}); "
            "import sys; print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    import promptlearn

    root = str(Path(promptlearn.__file__).resolve().parents[1])  # the promptlearn under test, from any cwd
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env=env).stdout.split()
    assert out == ["svg", "False"], out
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_select_on_dev_never_reads_test():
    import random

    from promptlearn.report import select_on_dev

    # 4 grid points x 3 seeds with random dev and test; shuffling the test numbers among the runs (or making the
    # best-test point the worst on dev) must not move the choice, and the reported test is the chosen run's
    rng = random.Random(0)
    points = [(lr, bs) for lr in (1e-5, 1e-4) for bs in (4, 8)]
    runs = [grid_run(seed, lr, bs, rng.choice((0.5, 0.5625, 0.625, 0.6875)), rng.random())
            for seed in (13, 21, 42) for lr, bs in points]
    (row,) = select_on_dev(runs)
    chosen = [c["point"] for c in row["selected"]]
    lost = 0  # seeds whose best-test run is not the best on dev
    for trial in range(5):
        tests = [r["metrics"]["main"] for r in runs]
        random.Random(trial).shuffle(tests)
        for r, t in zip(runs, tests):
            r["metrics"]["main"] = r["metrics"]["accuracy"] = t
        (again,) = select_on_dev(runs)
        assert [c["point"] for c in again["selected"]] == chosen
        for c in again["selected"]:
            (run,) = [r for r in runs if r["seed"] == c["seed"] and
                      f"batch_size={r['config']['strategy']['batch_size']},lr={r['config']['strategy']['lr']:g}" == c["point"]]
            assert c["test"] == round(run["metrics"]["main"] * 100, 2)
            best_test = max((r for r in runs if r["seed"] == c["seed"]), key=lambda r: r["metrics"]["main"])
            if best_test["train"]["best_dev"] < c["dev"] / 100:  # the best-test point lost on dev: not chosen
                assert c["test"] < round(best_test["metrics"]["main"] * 100, 2)
                lost += 1
    assert lost >= 5  # the case that matters occurred

def curve_runs(strategy="fixed_prompt"):
    """A dev-selected grid (2 lr x 2 seeds) at K = 4, 16 and 64; lr=1e-4 wins dev at K=4, lr=1e-5 above."""
    runs = []
    for k in (4, 16, 64):
        for seed in (13, 21):
            good, bad = (1e-4, 1e-5) if k == 4 else (1e-5, 1e-4)
            runs.append(grid_run(seed, good, 8, 0.75, 0.5 + k / 200 + seed / 1000, k=k))
            runs.append(grid_run(seed, bad, 8, 0.5, 0.99, k=k))
            for r in runs[-2:]:
                r["strategy"] = r["config"]["strategy"]["name"] = strategy
                r["config"]["strategy"]["k_shot"] = k
    return runs


def test_learning_curve_from_any_results_with_several_k(tmp_path):
    from promptlearn.report import k_curve_series, select_on_dev

    runs = curve_runs()
    # dev-selected: one series whatever the chosen points, test at the chosen point per K and seed
    series = k_curve_series(select_on_dev(runs))
    assert list(series) == ["fixed_prompt (dev-selected)"]
    assert series["fixed_prompt (dev-selected)"] == {4: [53.3, 54.1], 16: [59.3, 60.1], 64: [83.3, 84.1]}
    # without selection: every configuration is its own curve (its signature ignores K), K ascending
    series = k_curve_series(aggregate(runs))
    assert len(series) == 2 and all(list(s) == [4, 16, 64] for s in series.values())
    assert sorted(s[16][0] for s in series.values()) == [59.3, 99.0]
    assert sorted(series) == ["fixed_prompt lr=0.0001", "fixed_prompt lr=1e-05"]
    # a second configuration at one K only: the first configuration's curve stays one series, named at every K
    lone = [r for r in runs if r["config"]["strategy"]["lr"] == 1e-5 or r["k_shot"] == 16]
    series = k_curve_series(aggregate(lone))
    assert sorted(series["fixed_prompt lr=1e-05"]) == [4, 16, 64] and "fixed_prompt" not in series
    # one K only: nothing to draw; a second task gets its own series
    assert k_curve_series(aggregate([r for r in runs if r["k_shot"] == 16])) == {}
    other = curve_runs("finetune")
    for r in other:
        r["task"] = "mr"
    series = k_curve_series(select_on_dev(runs + other))
    assert sorted(series) == ["mr finetune (dev-selected)", "sst2 fixed_prompt (dev-selected)"]
    # the CLI draws it from a results folder
    write_runs(tmp_path / "k", runs)
    main([str(tmp_path / "k"), "--select", "dev"])
    assert (tmp_path / "k" / "summary_k_curve.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "k" / "summary.md").read_text()
    assert "| fixed_prompt (dev-selected of 2) K=4 | 53.7 (0.4) n=2 |" in md
