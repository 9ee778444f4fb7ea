"""The grid protocol (promptlearn.grid) and the Hydra launcher presets.

Parsing and errors are checked in process; one smoke run goes end to end through the CLI with the joblib
launcher (2 grid points x 2 seeds on a tiny random BERT), is run again to check that finished jobs are skipped
and only a removed one reruns, and its report selects on dev.  SLURM cannot run here: the preset is composed.
"""

import json
import subprocess
import sys

import pytest

from conftest import PLUGINS, ROOT

from promptlearn.errors import ConfigError
from promptlearn.grid import LM_BFF_SEEDS, multirun_command, parse_args


def test_parse_grid_seeds_and_overrides():
    plan = parse_args(["+task=sst2", "strategy=fixed_prompt", "grid.lr=[1e-5,5e-5]", "grid.batch_size=4,8",
                       "grid.strategy.warmup_ratio=[0.0]", "seeds=[13,21]", "strategy.max_steps=10", "-m"])
    assert plan.grid == {"strategy.lr": ["1e-5", "5e-5"], "strategy.batch_size": ["4", "8"],
                         "strategy.warmup_ratio": ["0.0"]}
    assert plan.seeds == ["13", "21"] and plan.sweep_dir.endswith("grid/sst2_fixed_prompt")
    assert len(plan.points()) == 4 and plan.points()[1] == {"strategy.lr": "1e-5", "strategy.batch_size": "8",
                                                             "strategy.warmup_ratio": "0.0"}
    cmd = multirun_command(plan)
    assert cmd[1:4] == ["-m", "promptlearn.run", "-m"] and "strategy.max_steps=10" in cmd
    assert "strategy.lr=1e-5,5e-5" in cmd and "seed=13,21" in cmd and "resume=true" in cmd
    assert "hydra.sweep.subdir='lr=${strategy.lr},batch_size=${strategy.batch_size},warmup_ratio=" \
           "${strategy.warmup_ratio}/seed${seed}'" in cmd
    assert parse_args(["grid.lr=[1e-5]"]).seeds == [str(s) for s in LM_BFF_SEEDS]
    # a top-level option sweeps itself (the pattern chosen on dev too), any other name is a strategy option
    plan = parse_args(["grid.pattern=[0,1]", "grid.calibrate=[false,content_free]", "grid.warmup_ratio=[0.1]"])
    assert plan.grid == {"pattern": ["0", "1"], "calibrate": ["false", "content_free"],
                         "strategy.warmup_ratio": ["0.1"]}
    assert "hydra.sweep.subdir='pattern=${pattern},calibrate=${calibrate},warmup_ratio=${strategy.warmup_ratio}" \
           "/seed${seed}'" in multirun_command(plan)
    assert "resume=false" in multirun_command(parse_args(["grid.lr=[1e-5]", "resume=false"]))


@pytest.mark.parametrize("args, message", [
    (["+task=sst2"], "no grid.<key>=[...] given"),
    (["grid.lr=[]"], "grid.lr=[]: no values"),
    (["grid.lr=[1e-5,1e-5]"], "listed twice"),
    (["grid.lr=[1e-5]", "strategy.lr=2e-5"], "strategy.lr is also a grid key"),
    (["grid.lr=[1e-5]", "seed=13"], "fix: seeds=[13]"),
    (["grid.lr=[1e-5]", "seeds=[a]"], "is not a non-negative integer"),
    (["grid.lr=[1e-5]", "--bogus"], "unknown flag '--bogus'"),
    (["grid.lr=[1e-5]", "hydra.sweep.subdir=x"], "leave hydra.sweep.subdir out"),
])
def test_bad_grid_arguments_are_one_line_config_errors(args, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("$", r"\$")) as e:
        parse_args(args)
    assert "\n" not in str(e.value)


def grid_cli(*args):
    return subprocess.run([sys.executable, "-m", "promptlearn.grid", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


def test_bad_grid_values_fail_before_any_job(tiny_model_dirs, toy_data_root, tmp_path):
    common = ["--config-dir", PLUGINS / "conf", "+task=toy", f"model.name_or_path={tiny_model_dirs['bert']}",
              f"data_root={toy_data_root}", "strategy=fixed_prompt", f"grid.dir={tmp_path / 'g'}"]
    bad = grid_cli(*common, "grid.batch_size=[4,0]")
    assert bad.returncode == 2 and not (tmp_path / "g").exists()
    assert bad.stderr.strip().splitlines()[-1] == ("error: grid point {'strategy.batch_size': '0'}: strategy.batch_size=0 "
                                                   "is below its minimum 1; fix: strategy.batch_size=8")
    typo = grid_cli(*common, "grid.lrr=[1e-5]")
    assert typo.returncode == 2 and "Could not override 'strategy.lrr'" in typo.stderr and "Traceback" not in typo.stderr


def test_grid_smoke_joblib_resume_and_dev_selection(tiny_model_dirs, toy_data_root, tmp_path):
    sweep = tmp_path / "grid"
    args = ["--config-dir", PLUGINS / "conf", "+task=toy", f"model.name_or_path={tiny_model_dirs['bert']}",
            f"data_root={toy_data_root}", "strategy=fixed_prompt", "strategy.k_shot=4", "strategy.max_steps=4",
            "strategy.eval_every=2", "grid.lr=[1e-5,1e-3]", "seeds=[1,2]", "progress=false", "threads=1",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"grid.dir={sweep}"]
    first = grid_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "grid: 2 point(s) {'strategy.lr': ['1e-5', '1e-3']} x 2 seed(s) = 4 job(s)" in first.stdout
    assert first.stdout.count("skipping job") == 0
    assert "Joblib.Parallel(n_jobs=2" in first.stdout + first.stderr  # the joblib launcher ran the jobs
    results = sorted(sweep.rglob("results.json"))
    assert [p.relative_to(sweep).as_posix() for p in results] == [
        "lr=0.001/seed1/results.json", "lr=0.001/seed2/results.json",
        "lr=1e-05/seed1/results.json", "lr=1e-05/seed2/results.json"]
    rows = json.loads((sweep / "summary.json").read_text())
    (row,) = rows
    runs = {(r["config"]["strategy"]["lr"], r["seed"]): r for r in map(lambda p: json.loads(p.read_text()), results)}
    for c in row["selected"]:  # each seed's choice is the best dev (ties: the smaller lr), and test is read there
        cands = {lr: runs[(lr, c["seed"])]["train"]["best_dev"] for lr in (1e-5, 1e-3)}
        best = max(cands.values())
        want = min(lr for lr, d in cands.items() if d == best)
        assert c["values"] == {"strategy.lr": want}
        assert c["test"] == round(runs[(want, c["seed"])]["metrics"]["main"] * 100, 2)
    assert (sweep / "summary.md").is_file() and (sweep / "summary.tex").is_file()
    assert (sweep / "summary_seeds.png").read_bytes()[:4] == b"\x89PNG"
    assert "grid: wall time" in first.stdout

    stamps = {p: p.stat().st_mtime_ns for p in results}
    results[0].unlink()  # as if that job had been interrupted
    again = grid_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipping job") == 3
    assert all(p.stat().st_mtime_ns == stamps[p] for p in results[1:]) and results[0].is_file()


def test_launcher_presets_compose():
    from hydra import compose, initialize_config_dir

    from promptlearn.run import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        slurm = compose("config", overrides=["+task=sst2", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                             "hydra.launcher.timeout_min=30"], return_hydra_config=True)
        joblib = compose("config", overrides=["+task=sst2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                         return_hydra_config=True)
    launcher = slurm.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu" and launcher.timeout_min == 30 and launcher.gpus_per_node == 1
    assert launcher.cpus_per_task == 8 and launcher.mem_gb == 32 and launcher.array_parallelism == 32
    assert list(launcher.setup) == [] and launcher.max_num_timeout == 0 and "qos" in launcher  # inherited keys
    assert joblib.hydra.launcher._target_.endswith("JoblibLauncher") and joblib.hydra.launcher.n_jobs == 2


def test_slurm_preset_on_the_command_line():
    out = subprocess.run([sys.executable, "-m", "promptlearn.run", "+task=sst2", "hydra/launcher=slurm",
                          "hydra.launcher.setup=[\"export HF_HUB_OFFLINE=1\"]", "--cfg", "hydra", "--package",
                          "hydra.launcher"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in out.stdout
    assert "- export HF_HUB_OFFLINE=1" in out.stdout and "signal_delay_s: 120" in out.stdout
