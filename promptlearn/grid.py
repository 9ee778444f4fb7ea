"""The LM-BFF protocol in one command: a hyper-parameter grid per seed, chosen on few-shot dev, test reported.

    python -m promptlearn.grid +task=sst2 model.name_or_path=../shared/models/mini-mlm strategy=fixed_prompt \\
        grid.lr=[1e-5,5e-5] grid.batch_size=[4,8] seeds=[13,21,42,87,100] \\
        [grid.dir=multirun/grid/sst2_fixed_prompt] [hydra/launcher=joblib hydra.launcher.n_jobs=2] [other run overrides]

It runs one Hydra multirun of :mod:`promptlearn.run` over grid x seeds (with whichever Hydra launcher is
chosen: the basic sequential one, ``hydra/launcher=joblib`` for local processes, ``hydra/launcher=slurm`` for a
cluster), into a fixed sweep folder with one sub-folder per grid point and seed
(``lr=1e-05,batch_size=4/seed13``), then :func:`promptlearn.report.main` with ``--select dev``: for each seed the
grid point with the best few-shot dev score (``train.best_dev`` in ``results.json``; test is never looked at) is
chosen, ties going to the grid point that sorts first, and the table reports the test metric at the chosen points,
``mean (std)`` over seeds (as LM-BFF's ``tools/gather_result.py``).

Running the same command again resumes: jobs that finished with the same configuration are skipped
(:func:`promptlearn.run.finished`), interrupted training runs continue from their checkpoint (``resume=true`` is
passed for you), and grid points or seeds added later run alone.

``grid.<key>=[v1,v2,...]`` sweeps ``strategy.<key>`` (``grid.strategy.prompt_lr=[...]`` or any other dotted key
sweeps that key, and a top-level option of conf/config.yaml sweeps itself: ``grid.pattern=[0,1,2]`` chooses the
pattern on dev as well); ``seeds=[...]`` (default 13, 21, 42, 87, 100); ``grid.dir=`` the sweep folder (default
``multirun/grid/<task>_<strategy>``).  ``--no-report`` runs the sweep only, ``--report-only`` reports an existing
folder, ``--pdf`` also writes the plots as PDF, ``--dry-run`` prints the multirun command.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError, PromptlearnError

__all__ = ["LM_BFF_SEEDS", "GridPlan", "parse_args", "multirun_command", "check_plan", "main"]

LM_BFF_SEEDS = (13, 21, 42, 87, 100)
FLAGS = ("--no-report", "--report-only", "--pdf", "--dry-run")
USAGE = ("usage: python -m promptlearn.grid +task=sst2 strategy=fixed_prompt grid.lr=[1e-5,5e-5] grid.batch_size=[4,8] "
         "seeds=[13,21,42,87,100] [grid.dir=DIR] [hydra/launcher=joblib hydra.launcher.n_jobs=2] [run overrides] "
         f"[{' '.join(FLAGS)}]")


class GridPlan:
    """What one grid command runs: the grid (dotted key -> values), the seeds, the folder and the other overrides."""

    def __init__(self, grid: dict[str, list[str]], seeds: list[str], sweep_dir: str, overrides: list[str],
                 flags: set[str], config_dir: str | None = None):
        self.grid, self.seeds, self.sweep_dir, self.overrides, self.flags = grid, seeds, sweep_dir, overrides, flags
        self.config_dir = config_dir

    def points(self) -> list[dict[str, str]]:
        """Every grid point, in the order the keys were given (values in the order given)."""
        points: list[dict[str, str]] = [{}]
        for key, values in self.grid.items():
            points = [{**p, key: v} for p in points for v in values]
        return points


def _values(arg: str, key: str, text: str) -> list[str]:
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    vals = [v.strip() for v in inner.split(",") if v.strip()]
    if not vals:
        raise ConfigError(f"{arg}: no values; fix: {key}=[1e-5,5e-5] (a list of one or more values)")
    if len(set(vals)) != len(vals):
        raise ConfigError(f"{arg}: a value is listed twice; fix: list each value once")
    return vals


def _top_level_keys() -> set[str]:
    """The plain options of conf/config.yaml (``pattern``, ``calibrate``, ...): ``grid.pattern=[0,1]`` sweeps
    ``pattern``, while a name that is not one of them is a strategy option (``grid.lr`` sweeps ``strategy.lr``)."""
    from omegaconf import OmegaConf

    from .run import CONF_DIR

    cfg = OmegaConf.load(Path(CONF_DIR) / "config.yaml")
    return {k for k in cfg if k not in ("defaults", "hydra", "seed")}


def _override_key(arg: str) -> str:
    return arg.split("=", 1)[0].lstrip("+~")


def parse_args(argv: Sequence[str]) -> GridPlan:
    """Split the command line into the grid, the seeds, the sweep folder, flags and the run overrides."""
    grid: dict[str, list[str]] = {}
    seeds: list[str] | None = None
    sweep_dir = None
    overrides: list[str] = []
    flags: set[str] = set()
    config_dir = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        if arg in ("--config-dir", "-cd") or arg.startswith("--config-dir="):
            if "=" in arg:
                config_dir = arg.split("=", 1)[1]
            elif args:
                config_dir = args.pop(0)
            else:
                raise ConfigError("--config-dir: no folder given; fix: --config-dir /my/confs")
            continue
        if arg.startswith("--"):
            if arg not in FLAGS:
                raise ConfigError(f"unknown flag {arg!r}; fix: one of {', '.join(FLAGS)}")
            flags.add(arg)
            continue
        if arg in ("-m", "--multirun"):
            continue  # it is always a multirun
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not an override key=value; {USAGE}")
        key, value = arg.split("=", 1)
        if key.startswith("grid.") and key != "grid.dir":
            name = key[len("grid."):]
            if not name:
                raise ConfigError(f"{arg}: no key after 'grid.'; fix: grid.lr=[1e-5,5e-5]")
            dotted = name if "." in name or name in _top_level_keys() else f"strategy.{name}"
            if dotted in grid:
                raise ConfigError(f"{arg}: {dotted} is swept twice; fix: give one list of values")
            grid[dotted] = _values(arg, key, value)
        elif key == "seeds":
            seeds = _values(arg, key, value)
        elif key in ("grid.dir", "hydra.sweep.dir"):
            sweep_dir = value
        else:
            overrides.append(arg)
    seeds = seeds or [str(s) for s in LM_BFF_SEEDS]
    for s in seeds:
        if not s.isdigit():
            raise ConfigError(f"seeds: {s!r} is not a non-negative integer; fix: seeds=[13,21,42,87,100]")
    for arg in overrides:
        key = _override_key(arg)
        if key in grid:
            raise ConfigError(f"{arg}: {key} is also a grid key ({key}={grid[key]}); fix: drop one of the two")
        if key == "seed":
            raise ConfigError(f"{arg}: the grid runs every seed of seeds=; fix: seeds=[{_values(arg, key, arg.split('=', 1)[1])[0]}]"
                              " (or a list)")
        if key == "hydra.sweep.subdir":
            raise ConfigError(f"{arg}: the grid names its job folders itself (one per grid point and seed); fix: leave "
                              "hydra.sweep.subdir out")
    if not grid and "--report-only" not in flags:
        raise ConfigError(f"no grid.<key>=[...] given; fix: e.g. grid.lr=[1e-5,5e-5] grid.batch_size=[4,8]; {USAGE}")
    if sweep_dir is None:
        choice = lambda k, d: next((_o.split("=", 1)[1] for _o in overrides if _override_key(_o) == k), d)  # noqa: E731
        task = choice("task", "notask")
        sweep_dir = os.path.join("multirun", "grid", f"{task}_{choice('strategy', 'default')}".replace("/", "_"))
    return GridPlan(grid, seeds, sweep_dir, overrides, flags, config_dir)


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def subdir_pattern(grid: dict[str, list[str]]) -> str:
    """The job folder of a grid point and seed, e.g. ``lr=${strategy.lr},batch_size=${strategy.batch_size}/seed${seed}``
    (stable whatever the order or number of grid points, so an extended grid reruns only its new points)."""
    point = ",".join(f"{_short(k)}=${{{k}}}" for k in grid) or "default"
    return f"'{point}/seed${{seed}}'"  # quoted: '=' and ',' are override syntax


def multirun_command(plan: GridPlan) -> list[str]:
    """The ``python -m promptlearn.run -m ...`` command the grid runs."""
    resume = [] if any(_override_key(o) == "resume" for o in plan.overrides) else ["resume=true"]
    cdir = ["--config-dir", plan.config_dir] if plan.config_dir else []
    return [sys.executable, "-m", "promptlearn.run", "-m", *cdir, *plan.overrides,
            *(f"{k}={','.join(v)}" for k, v in plan.grid.items()), f"seed={','.join(plan.seeds)}", *resume,
            f"hydra.sweep.dir={plan.sweep_dir}", f"hydra.sweep.subdir={subdir_pattern(plan.grid)}"]


def check_plan(plan: GridPlan) -> int:
    """Compose the config of every grid point (first seed) and check its options before any job starts.

    Returns the number of jobs.  A key Hydra cannot set (a typo) or a value the option schema refuses is a
    ConfigError naming the grid key."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from .run import CONF_DIR, _plain, load_plugins
    from .validation import check_config

    plain = [o for o in plan.overrides if not _override_key(o).startswith("hydra")]
    if plan.config_dir:  # the run's --config-dir: searched before conf/, as promptlearn.run does
        plain.append(f"hydra.searchpath=[file://{Path(plan.config_dir).resolve()}]")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for point in plan.points():
            extra = [f"{k}={v}" for k, v in point.items()]
            try:
                cfg = compose(config_name="config", overrides=[*plain, *extra, f"seed={plan.seeds[0]}"])
            except HydraException as exc:
                first = str(exc).strip().splitlines()[0]
                raise ConfigError(f"grid point {point}: Hydra cannot compose it ({first}); fix: check the grid keys "
                                  "(grid.lr sweeps strategy.lr) and the overrides") from None
            c = _plain(cfg)
            load_plugins(c.get("plugins"))
            try:
                check_config(c)
            except ConfigError as exc:
                raise ConfigError(f"grid point {point}: {exc}") from None
            del cfg, c
    return len(plan.points()) * len(plan.seeds)


def main(argv: Sequence[str] | None = None) -> int:
    from .distributed import single_process_entry

    single_process_entry("promptlearn.grid")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        plan = parse_args(argv)
        cmd = multirun_command(plan)
        if "--dry-run" in plan.flags:
            print(shlex.join(cmd))
            return 0
        t0 = time.perf_counter()
        if "--report-only" not in plan.flags:
            n = check_plan(plan)
            print(f"grid: {len(plan.points())} point(s) {dict(plan.grid)} x {len(plan.seeds)} seed(s) = {n} job(s) "
                  f"into {plan.sweep_dir}\n  {shlex.join(cmd)}", flush=True)
            rc = subprocess.call(cmd)  # inherits the environment
            if rc != 0:
                print(f"error: the multirun stopped (exit {rc}); run the same command again to resume: finished jobs "
                      "are skipped, interrupted ones continue from their checkpoint", file=sys.stderr)
                return rc
            print(f"grid: multirun done in {time.perf_counter() - t0:.0f} s", flush=True)
        if "--no-report" not in plan.flags:
            from . import report

            report.main([plan.sweep_dir, "--select", "dev", *(["--pdf"] if "--pdf" in plan.flags else [])])
        print(f"grid: wall time {time.perf_counter() - t0:.0f} s")
        return 0
    except PromptlearnError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
