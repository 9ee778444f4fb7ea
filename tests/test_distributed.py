"""Several processes through accelerate (gloo on CPU), mixed precision, TensorBoard logs.

The 2-process runs are real launches: ``torchrun --nproc_per_node 2 -m promptlearn.run ...`` and
``accelerate launch --multi_gpu --num_processes 2 -m promptlearn.run ...`` (on a machine without GPUs accelerate's
``--multi_gpu`` launcher starts the processes and promptlearn sets them up on CPU with gloo).  They are compared
with the plain single-process run of the same command where the result is mathematically the same:

* scoring: each process scores every other length-sorted batch of the single-process run, so the gathered
  scores equal the single-process scores exactly;
* training with dropout off: the global batch of ``strategy.batch_size`` rows is split over the processes and DDP
  averages their gradients, so each optimizer step is the single-process step up to float rounding.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import PLUGINS, ROOT, cli, tiny_mlm

VENV_BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: str, *args, timeout=600):
    """Run ``promptlearn.run`` in 2 CPU processes started by ``torchrun`` or ``accelerate launch``."""
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_port())]
    else:
        cmd = [str(VENV_BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_port())]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([*cmd, "-m", "promptlearn.run", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory, bert_tokenizer):
    """A tiny random BERT with dropout off (training is then deterministic: 1 and 2 processes can agree)."""
    d = tmp_path_factory.mktemp("tiny_bert_no_dropout")
    model = tiny_mlm("bert", len(bert_tokenizer))
    model.config.hidden_dropout_prob = 0.0
    model.config.attention_probs_dropout_prob = 0.0
    model.save_pretrained(d)
    bert_tokenizer.save_pretrained(d)
    return d


def _common(model_dir, data_root, out):
    return ["--config-dir", PLUGINS / "conf", "+task=toy", f"model.name_or_path={model_dir}",
            f"data_root={data_root}", "progress=false", "eval_batch_size=4", "device=cpu", f"hydra.run.dir={out}"]


def _predictions(out: Path) -> tuple[np.ndarray, list[int]]:
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return np.asarray([r["scores"] for r in rows]), [r["idx"] for r in rows]


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_two_process_scoring_equals_one_process(tiny_model_dirs, toy_data_root, tmp_path):
    """torchrun, zero-shot: 12 test rows in 3 batches of 4 (2 for process 0, 1 for process 1), gathered in order."""
    one, two = tmp_path / "one", tmp_path / "two"
    _ok(cli(*_common(tiny_model_dirs["bert"], toy_data_root, one)))
    proc = launch("torchrun", *_common(tiny_model_dirs["bert"], toy_data_root, two))
    _ok(proc)
    s1, idx1 = _predictions(one)
    s2, idx2 = _predictions(two)
    assert idx1 == idx2 and len(idx1) == 12
    assert np.array_equal(s1, s2)  # the same batches, so bit for bit
    r1, r2 = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert r1["metrics"] == r2["metrics"]
    assert r1["environment"]["processes"] == 1 and r2["environment"]["processes"] == 2
    assert proc.stdout.count("results: ") == 1  # only the main process prints (and writes)


def test_two_process_training_equals_one_process(no_dropout_bert, toy_data_root, tmp_path):
    """accelerate launch, fixed_prompt: global batch 8 = 2 processes x 4 rows, 2 micro-batches per step (the
    gradient exchange only after the second), dev selection every 2 steps; TensorBoard from the main process."""
    train = ["strategy=fixed_prompt", "strategy.k_shot=8", "strategy.batch_size=8", "strategy.grad_accum=2",
             "strategy.max_steps=4", "strategy.eval_every=2", "strategy.lr=1e-3", "tensorboard=true"]
    one, two = tmp_path / "one", tmp_path / "two"
    single = cli(*_common(no_dropout_bert, toy_data_root, one), *train)
    _ok(single)
    proc = launch("accelerate", *_common(no_dropout_bert, toy_data_root, two), *train, "keep_checkpoint=true")
    _ok(proc)
    r1, r2 = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert r2["train"]["processes"] == 2 and r1["train"]["processes"] == 1
    # the work was split: 4 steps x 2 micro-batches x 8 rows = 64 rows, 32 in each process
    assert r1["train"]["rows_per_process"] == [64] and r2["train"]["rows_per_process"] == [32, 32]
    assert r1["checksums"] == r2["checksums"]  # the same few-shot split
    log1, log2 = r1["train"]["log"], r2["train"]["log"]
    assert [r["step"] for r in log1] == [r["step"] for r in log2] == [2, 4]
    assert [r["dev"] for r in log1] == [r["dev"] for r in log2]
    np.testing.assert_allclose([r["loss"] for r in log1], [r["loss"] for r in log2], rtol=1e-4)
    assert r1["train"]["best_step"] == r2["train"]["best_step"]
    s1, _ = _predictions(one)
    s2, _ = _predictions(two)
    assert np.abs(s1 - s2).max() < 1e-4, np.abs(s1 - s2).max()
    assert (s1.argmax(1) == s2.argmax(1)).all() and r1["metrics"]["accuracy"] == r2["metrics"]["accuracy"]
    # the training moved the scores (so the comparison above is not of two untrained models)
    zero = tmp_path / "zero"
    _ok(cli(*_common(no_dropout_bert, toy_data_root, zero)))
    assert np.abs(_predictions(zero)[0] - s1).max() > 1e-3
    # one writer: one checkpoint (kept here), process 1's RNG state beside it, one CSV log, one event file
    import torch

    assert sorted(p.name for p in two.glob("checkpoint*")) == ["checkpoint.pt", "checkpoint.rank1.pt"]
    assert torch.load(two / "checkpoint.rank1.pt", weights_only=False)["step"] == 4
    assert torch.load(two / "checkpoint.pt", weights_only=False)["processes"] == 2
    assert (two / "train_log.csv").is_file()
    assert len(list((two / "tensorboard").rglob("events.out.tfevents.*"))) == 1
    line = "strategy fixed_prompt: training "
    assert proc.stdout.count(line) == single.stdout.count(line) > 0  # printed (and logged) by the main process only
    # a checkpoint of 2 processes is not resumed by 1 (its data position and RNG states are per process)
    more = [a if a != "strategy.max_steps=4" else "strategy.max_steps=6" for a in train]
    wrong = cli(*_common(no_dropout_bert, toy_data_root, two), *more, "resume=true", "keep_checkpoint=true")
    assert wrong.returncode == 2 and "was written by a run with 2 process(es), this one has 1" in wrong.stderr
    # resume under the launcher: every process continues from its own state; nothing is left afterwards
    again = launch("accelerate", *_common(no_dropout_bert, toy_data_root, two), *more, "resume=true")
    _ok(again)
    assert len(list((two / "tensorboard").rglob("events.out.tfevents.*"))) == 2  # a resumed run adds its events
    assert again.stdout.count(f"resumed from {two / 'checkpoint.pt'} at step 4") == 1
    r3 = json.loads((two / "results.json").read_text())
    assert [r["step"] for r in r3["train"]["log"]] == [2, 4, 6] and r3["train"]["log"][:2] == log2
    assert r3["train"]["rows_per_process"] == [16, 16]  # this session: 2 steps
    assert not list(two.glob("checkpoint*"))


def test_two_process_finetune_with_parameters_the_loss_does_not_reach(no_dropout_bert, toy_data_root, tmp_path):
    """finetune trains a [CLS] head; the MLM head gets no gradient -- DDP must not wait for it."""
    train = ["strategy=finetune", "strategy.k_shot=8", "strategy.batch_size=4", "strategy.max_steps=2",
             "strategy.eval_every=2", "strategy.lr=1e-3", "tensorboard=false"]
    one, two = tmp_path / "one", tmp_path / "two"
    _ok(cli(*_common(no_dropout_bert, toy_data_root, one), *train))
    _ok(launch("torchrun", *_common(no_dropout_bert, toy_data_root, two), *train))
    s1, _ = _predictions(one)
    s2, _ = _predictions(two)
    assert np.abs(s1 - s2).max() < 1e-4
    assert not (two / "tensorboard").exists()


def test_launch_refusals_before_anything_loads(tiny_model_dirs, toy_data_root, tmp_path):
    """A global batch that does not split over the processes: one line, exit 2, from the main process only."""
    proc = launch("torchrun", *_common(tiny_model_dirs["bert"], toy_data_root, tmp_path / "x"),
                  "strategy=fixed_prompt", "strategy.batch_size=3")
    assert proc.returncode != 0
    assert proc.stderr.count("error: strategy.batch_size=3 with 2 processes") == 1, proc.stderr[-3000:]
    assert "fix: strategy.batch_size=2" in proc.stderr
    assert not (tmp_path / "x" / "results.json").exists()


# ----------------------------------------------------------------------------------- single process, no launch
def test_tensorboard_logs_match_the_csv_log_and_bf16_trains_on_cpu(tiny_model_dirs, toy_data_root, tmp_path):
    """The fp32 run's TensorBoard events equal its CSV log; the same run with mixed_precision=bf16 (a new process:
    accelerate keeps one precision per process) trains under autocast (scoring stays fp32), so its scores move
    off the fp32 run's by the bf16 training, not more."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    args = ["strategy=fixed_prompt", "strategy.k_shot=8", "strategy.max_steps=6", "strategy.eval_every=3",
            "strategy.lr=1e-3"]
    (out / "tensorboard").mkdir(parents=True)  # an earlier run's events in this run directory: replaced
    (out / "tensorboard" / "events.out.tfevents.1.earlier").write_bytes(b"")
    _ok(cli(*_common(tiny_model_dirs["bert"], toy_data_root, out), *args))  # tensorboard=auto: installed
    with open(out / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(list((out / "tensorboard").rglob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(out / "tensorboard")).Reload()
    dev = acc.Scalars("dev/accuracy")
    assert [e.step for e in dev] == [int(r["step"]) for r in rows] == [3, 6]
    np.testing.assert_allclose([e.value for e in dev], [float(r["dev"]) for r in rows], rtol=1e-6)
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 7))
    lrs = acc.Scalars("train/lr_lm")
    assert len(lrs) == 6 and lrs[0].value > lrs[-1].value  # the linear decay
    results = json.loads((out / "results.json").read_text())
    assert results["train"]["tensorboard"] == str(out / "tensorboard")
    assert results["train"]["mixed_precision"] == "no"

    bf16 = tmp_path / "bf16"
    _ok(cli(*_common(tiny_model_dirs["bert"], toy_data_root, bf16), *args, "mixed_precision=bf16", "tensorboard=false"))
    assert json.loads((bf16 / "results.json").read_text())["train"]["mixed_precision"] == "bf16"
    assert not (bf16 / "tensorboard").exists()
    diff = np.abs(_predictions(out)[0] - _predictions(bf16)[0]).max()
    assert 0 < diff < 0.1, diff
    short = [a for a in args if not a.startswith("strategy.max_steps")] + ["strategy.max_steps=3"]
    _ok(cli(*_common(tiny_model_dirs["bert"], toy_data_root, out), *short, "tensorboard=false"))
    assert not (out / "tensorboard").exists()  # a fresh run without TensorBoard leaves no earlier run's events


def test_tensorboard_off_and_required(tiny_model_dirs, toy_data_root, tmp_path, monkeypatch):
    from promptlearn.errors import ConfigError
    from promptlearn import trainer

    assert trainer._tensorboard_dir(tmp_path, {"tensorboard": False}) is None
    assert trainer._tensorboard_dir(None, {"tensorboard": True}) is None  # no run directory, nothing to write
    monkeypatch.setattr(trainer, "tensorboard_available", lambda: False)
    assert trainer._tensorboard_dir(tmp_path, {"tensorboard": "auto"}) is None
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        trainer._tensorboard_dir(tmp_path, {"tensorboard": True})


def test_mixed_precision_resolution(monkeypatch):
    import torch

    from promptlearn.distributed import resolve_mixed_precision
    from promptlearn.errors import ConfigError

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    cpu = torch.device("cpu")
    assert resolve_mixed_precision("auto", cpu) == "no"
    assert resolve_mixed_precision("bf16", cpu) == "bf16"
    assert resolve_mixed_precision(None, cpu) == "no"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # accelerate launch --mixed_precision fp16
    assert resolve_mixed_precision("auto", cpu) == "fp16"
    assert resolve_mixed_precision("no", cpu) == "no"  # an explicit setting wins
    with pytest.raises(ConfigError, match="fix: mixed_precision=auto"):
        resolve_mixed_precision("fp8", cpu)


def test_batches_split_the_global_batch_over_processes(bert_tokenizer):
    """Each process's slice of a shuffled batch; the slices together are the single-process batch, and one-pass
    batchers hand out every world-th batch."""
    import datasets

    from promptlearn import Batches, Template, encode_dataset

    texts = [f"the movie was {'great ' * (i % 5)}fun" for i in range(20)]
    ds = datasets.Dataset.from_dict({"text_a": texts, "label": [i % 2 for i in range(20)], "idx": list(range(20))})
    enc = encode_dataset(ds, Template("{text_a} It was {mask}.", bert_tokenizer))
    whole = iter(Batches(enc, 6, 0, order="shuffle", seed=3))
    parts = [iter(Batches(enc, 6, 0, order="shuffle", seed=3, shard=(r, 2))) for r in range(2)]
    for _ in range(7):  # across an epoch boundary
        full = next(whole)["labels"].tolist()
        assert [x for it in parts for x in next(it)["labels"].tolist()] == full
    one_pass = Batches(enc, 6, 0, order="length")
    all_batches = [b["input_ids"].tolist() for b in one_pass]
    got = dict(kv for r in range(2) for kv in ((i, b["input_ids"].tolist()) for i, b in one_pass.shard(r, 2)))
    assert [got[i] for i in range(len(all_batches))] == all_batches
    from promptlearn.errors import ConfigError

    with pytest.raises(ConfigError, match="strategy.batch_size=4"):
        Batches(enc, 5, 0, order="shuffle", shard=(0, 2))


def test_what_a_launch_refuses(monkeypatch, capsys):
    """Under a launcher (WORLD_SIZE > 1): PET/iPET, the auxiliary MLM loss, a batch that does not split, and the
    one-process entry points are refused with the fix before anything loads."""
    from promptlearn.distributed import single_process_entry
    from promptlearn.errors import ConfigError
    from promptlearn.strategies import get_strategy
    from promptlearn.validation import _check_processes

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    train = {"name": "fixed_prompt", "k_shot": 16, "lr": 1e-5, "batch_size": 8, "max_steps": 10}
    _check_processes({"method": {"name": "single"}}, get_strategy(train))  # fine: 8 = 4 x 2
    with pytest.raises(ConfigError, match="method=pet under a launcher with 4 processes"):
        _check_processes({"method": {"name": "pet"}}, get_strategy(train))
    with pytest.raises(ConfigError, match="method=ipet under a launcher"):
        _check_processes({"method": "ipet"}, get_strategy(train))  # a method given by name
    with pytest.raises(ConfigError, match="fix: strategy.batch_size=8"):
        _check_processes({}, get_strategy({**train, "batch_size": 10}))
    with pytest.raises(ConfigError, match="mlm_weight=0.5 with 4 processes"):
        _check_processes({}, get_strategy({**train, "mlm_weight": 0.5}))
    _check_processes({}, get_strategy({"name": "tuning_free"}))  # nothing trains: any batch size
    from promptlearn.validation import _check_split_batch

    _check_split_batch(get_strategy(train), 32)
    with pytest.raises(ConfigError, match="the global batch \\(6 rows.*fix: strategy.batch_size=4"):
        _check_split_batch(get_strategy(train), 6)  # batch 8 capped at 6 training rows
    with pytest.raises(ConfigError, match="launch at most 2 processes"):
        _check_split_batch(get_strategy(train), 2)
    with pytest.raises(SystemExit) as exit_:
        single_process_entry("promptlearn.predict")
    assert exit_.value.code == 2
    assert "error: python -m promptlearn.predict runs in one process, and a launcher started 4" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "1")
    single_process_entry("promptlearn.predict")  # a plain run goes on


def test_accelerate_cpu_launcher_running_one_process_is_said(monkeypatch, caplog):
    """`accelerate launch --cpu --num_processes 2` runs accelerate's one-process launcher (MASTER_ADDR set for 2
    processes, no WORLD_SIZE): the run is the single-process run, and it says so with the command that gives 2."""
    import logging

    from promptlearn import distributed

    for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setitem(distributed._SAID, "one_process", False)
    with caplog.at_level(logging.WARNING, logger="promptlearn"):
        assert distributed.init("cpu").type == "cpu"  # a plain run: nothing said
        monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # a cluster's environment, or accelerate without --cpu
        monkeypatch.setenv("ACCELERATE_USE_CPU", "False")
        distributed.init("cpu")
        assert not caplog.records
        monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
        assert distributed.init("cpu").type == "cpu" and distributed.world_size() == 1
        distributed.init("cpu")
    assert len(caplog.records) == 1  # said once per process
    assert "accelerate launch started 1 process" in caplog.text and "--multi_gpu --num_processes N" in caplog.text


def test_fp16_on_cpu_is_refused_before_loading():
    from promptlearn.errors import ConfigError
    from promptlearn.validation import _check_precision

    with pytest.raises(ConfigError, match="fix: mixed_precision=bf16"):
        _check_precision("cpu", "fp16")
    _check_precision("cpu", "bf16")
    _check_precision("cpu", "auto")


def test_every_process_of_a_launched_multirun_uses_the_main_process_start_time(monkeypatch):
    """${pl_now:...} in hydra.sweep.dir: the main process's start time, sent to the others, so the processes of a
    launched multirun write into one timestamped folder, not one each."""
    from omegaconf import OmegaConf

    from promptlearn import distributed, run

    sent = []
    monkeypatch.setattr(run, "_START", 123456789.0)  # this process's own start
    monkeypatch.setattr(distributed, "launched_processes", lambda: 2)
    monkeypatch.setattr(distributed, "init", lambda device=None: None)
    monkeypatch.setattr(distributed, "broadcast", lambda obj: sent.append(obj) or 0.0)  # the main process's: epoch 0
    run.register_resolvers()
    assert sent == [123456789.0]
    import time

    assert OmegaConf.create({"d": "multirun/${pl_now:%Y-%m-%d_%H-%M-%S}"}).d == \
        "multirun/" + time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(0))


def test_scoring_is_split_over_processes_and_gathered_in_order(bert_tokenizer, monkeypatch):
    """infer as process 1 of 2 runs the model on batches 1, 3, ... only; the gathered batches come back in
    dataset order (process 0's share stands in for what the gather would bring)."""
    import datasets
    import torch

    from promptlearn import Batches, PromptModel, Template, Verbalizer, distributed, encode_dataset, infer

    texts = [f"the movie was {'very ' * (i % 7)}fun" for i in range(10)]
    ds = datasets.Dataset.from_dict({"text_a": texts, "label": [i % 2 for i in range(10)], "idx": list(range(10))})
    template = Template("{text_a} It was {mask}.", bert_tokenizer)
    model = PromptModel(tiny_mlm("bert", len(bert_tokenizer)), template,
                        Verbalizer({"negative": ["bad"], "positive": ["great"]}, bert_tokenizer)).eval()
    batches = Batches(encode_dataset(ds, template), 3, bert_tokenizer.pad_token_id, order="length")
    whole = infer(model, batches, "cpu")["logits"]
    seen = []
    forward = model.forward

    def counting(**batch):
        seen.append(batch["input_ids"].shape[0])
        return forward(**batch)

    mine_only = {}

    def fake_gather(items):  # process 0's batches (0 and 2), as the real gather would bring them
        mine_only["items"] = [i for i, _ in items]
        others = [(i, {"logits": whole[[batches.order_index[j] for j in range(3 * i, min(3 * i + 3, 10))]]})
                  for i in (0, 2)]
        return others + items

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(distributed, "gather", fake_gather)
    got = infer(model, batches, "cpu", forward=counting)["logits"]
    assert mine_only["items"] == [1, 3] and seen == [3, 1]  # 4 batches of 3, 3, 3, 1 rows: this process ran 2
    assert torch.equal(torch.from_numpy(got), torch.from_numpy(whole))
