"""Few-shot training: one flat loop, driven by a strategy (:mod:`promptlearn.strategies`).

The strategy says which parameter groups train with which learning rate and what the loss is;
this module does the rest, following the LM-BFF protocol: AdamW, linear warmup/decay,
``max_steps`` optimizer steps, evaluation on the few-shot dev split every ``eval_every`` steps, the
best state by dev metric is kept and restored at the end (the caller then scores test with it).  A
checkpoint is written at every evaluation and when the run is interrupted (Ctrl-C) or crashes;
``resume=true`` continues from it with the same data order and RNG state.  A NaN/inf loss stops
the run with a message.

Processes and precision come from ``accelerate`` (:mod:`promptlearn.distributed`): under ``accelerate launch``
each process trains on its slice of every global batch of ``strategy.batch_size`` rows through the DDP wrapper,
and ``mixed_precision`` (auto: bf16 on CUDA, off on CPU) runs the loss under autocast (scoring stays fp32).  The main process writes
the CSV log, the checkpoint and -- when ``tensorboard`` is on and the package is installed -- TensorBoard events
(``<run dir>/tensorboard``: the loss and learning rates of every step, the dev metric of every evaluation).
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .errors import ConfigError, PromptlearnError
from .data import Batches, encode_dataset
from .inference import predict_scores
from .metrics import compute_metrics
from .strategies import Strategy, get_strategy

log = logging.getLogger("promptlearn")

__all__ = ["train", "build_optimizer", "enable_activation_checkpointing", "count_parameters", "NonFiniteLossError"]

CHECKPOINT = "checkpoint.pt"


class NonFiniteLossError(PromptlearnError, RuntimeError):
    """The training loss became NaN or infinite."""


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, shared parameters counted once."""
    seen: dict[int, nn.Parameter] = {}
    for p in model.parameters():
        seen.setdefault(id(p), p)
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return trainable, total


def enable_activation_checkpointing(mlm: nn.Module) -> None:
    """Recompute activations in the backward pass (less memory, roughly a third more compute)."""
    kwargs = {"use_reentrant": False}
    if hasattr(mlm, "activation_checkpointing_enable"):  # transformers >= 5
        mlm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        mlm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def build_optimizer(model: nn.Module, groups: Mapping[str, list[nn.Parameter]], lrs: Mapping[str, float],
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW over the training groups, each at its learning rate; no weight decay on biases, norms, embeddings."""
    no_decay_ids = set()
    for mod in model.modules():
        if isinstance(mod, (nn.LayerNorm, nn.Embedding)) or "norm" in type(mod).__name__.lower():
            no_decay_ids.update(id(p) for p in mod.parameters(recurse=False))
    param_groups = []
    for name, params in groups.items():
        decay = [p for p in params if id(p) not in no_decay_ids and p.ndim > 1]
        rest = [p for p in params if id(p) in no_decay_ids or p.ndim <= 1]
        if decay:
            param_groups.append({"params": decay, "lr": lrs[name], "weight_decay": weight_decay, "name": name})
        if rest:
            param_groups.append({"params": rest, "lr": lrs[name], "weight_decay": 0.0, "name": name})
    # the fused kernel updates every parameter in one pass, without foreach's temporary copies of all
    # parameters (less peak memory, faster); fall back where a device/dtype has no fused AdamW
    try:
        return torch.optim.AdamW(param_groups, betas=(0.9, 0.999), eps=1e-8, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(param_groups, betas=(0.9, 0.999), eps=1e-8)


def _linear_schedule(opt: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.named_parameters() if v.requires_grad}


def _boundary(batches: Batches, device: torch.device) -> dict[str, Any]:
    """Data position and RNG state between two optimizer steps: where a resumed run restarts."""
    return {"batches": batches.state(), "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None}


def _rank_file(path: Path, rank: int) -> Path:
    """Where process ``rank`` > 0 of a multi-process run keeps its own RNG state next to the checkpoint."""
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _tensorboard_dir(out: Path | None, cfg: Mapping[str, Any]) -> Path | None:
    """The run directory when TensorBoard events should be written (``tensorboard=auto``: if installed)."""
    want = cfg.get("tensorboard", "auto")
    if out is None or want in (False, "false", None):
        return None
    if not tensorboard_available():
        if want in (True, "true"):
            raise ConfigError("tensorboard=true but the tensorboard package is not installed; fix: pip install "
                              "tensorboard (or pip install -e \".[tensorboard]\"), or tensorboard=false")
        return None
    return out


def _save_checkpoint(path: Path | None, **state: Any) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _dev_metric(model: nn.Module, dev_batches: Batches | list[Batches], dev_labels: list[int], device: torch.device,
                metric: str) -> float:
    """The dev metric; several batchers (demonstration sets) are scored and their class scores averaged."""
    sets = dev_batches if isinstance(dev_batches, list) else [dev_batches]
    scores = [predict_scores(model, b, device, progress=False) for b in sets]
    scores = scores[0] if len(scores) == 1 else sum(scores) / len(scores)
    return compute_metrics(dev_labels, scores.argmax(-1), metric)["main"]


def train(model: nn.Module, few: Any, strategy: Strategy | Mapping[str, Any], cfg: Mapping[str, Any],
          device: torch.device, output_dir: str | Path | None = None, main_metric: str = "accuracy",
          remove_checkpoint: bool = True, augment: Any = None) -> dict[str, Any]:
    """Train ``model`` on ``few.train`` with ``strategy``, select on ``few.dev``; leaves the best state loaded.

    ``augment`` (e.g. :class:`promptlearn.demonstrations.Demonstrations`) rewrites examples before they are
    encoded: ``augment.train_set(dataset, epoch)`` for each training epoch, ``augment.dev_eval_sets(dataset)``
    for the dev sets whose scores are averaged.

    ``remove_checkpoint=False`` leaves ``checkpoint.pt`` for the caller to remove once its own results are
    safely written (the CLI does, so an interrupt while scoring test can still resume)."""
    strategy = get_strategy(strategy)
    s = strategy.cfg
    if few is None or len(few.train) == 0:
        raise ConfigError(f"strategy {strategy.name!r} needs training data: set strategy.k_shot > 0")
    seed = int(cfg.get("seed", 42))
    out = Path(output_dir) if output_dir is not None else None
    ckpt_path = out / CHECKPOINT if out is not None else None
    world, rank, main = distributed.world_size(), distributed.rank(), distributed.is_main()
    if world > 1 and strategy.mlm_weight > 0:
        raise ConfigError(f"strategy.mlm_weight={strategy.mlm_weight} with {world} processes: the auxiliary MLM loss "
                          "runs the LM outside the DDP wrapper; fix: one process, or strategy.mlm_weight=0")

    # --- what trains, and how fast (the strategy decides)
    groups = strategy.configure(model)
    lrs = strategy.learning_rates()
    idle = [g for g, ps in groups.items() if ps and lrs[g] == 0]
    if idle:
        warnings.warn(f"strategy {strategy.name!r} trains the {idle} parameters at learning rate 0: they will not "
                      f"change; set strategy.{'lr' if idle[0] == 'lm' else idle[0] + '_lr'}=...")
    model.mark_trained(strategy.name, [g for g, ps in groups.items() if ps])  # recorded in the spec
    if s["gradient_checkpointing"]:
        enable_activation_checkpointing(getattr(model, "mlm", model))
    trainable, total = count_parameters(model)
    sizes = ", ".join(f"{g} {sum(p.numel() for p in ps):,}" for g, ps in groups.items() if ps)
    adapter = getattr(model, "adapter", None)
    if adapter is not None:
        sizes += f" ({adapter.describe()})"
    msg = (f"strategy {strategy.name}: training {trainable:,} of {total:,} parameters "
           f"({100 * trainable / max(total, 1):.3f}%) -- LM {'trainable' if groups['lm'] else 'frozen'}; {sizes}")
    log.info(msg)
    if main and not log.hasHandlers():  # no logging set up (the Python API): say it anyway, once
        print(msg)

    # --- data: endless seeded training batches, length-sorted dev batches.  A model that encodes its own rows
    # (promptlearn.multitask.MultiTaskModel: each row with its task's template) provides encode_split(rows).
    # With several processes every one draws the same global batch and trains on its slice of it.
    own_encoding = getattr(model, "encode_split", None)
    if own_encoding is not None and augment is not None:
        raise ConfigError(f"{type(model).__name__} encodes its own rows, so augment= (demonstrations) cannot rewrite "
                          "them; fix: train without demonstrations")
    template = getattr(model, "template", None)
    pad_id = (model.tokenizer if own_encoding is not None else template.tokenizer).pad_token_id
    shard = (rank, world) if world > 1 else None

    def encode(data: Any, desc: str) -> Any:
        return own_encoding(data) if own_encoding is not None else encode_dataset(data, template, desc=desc)

    if augment is None:
        train_enc = encode(few.train, "tokenising train")
        dev_enc = encode(few.dev, "tokenising dev")
        batches = Batches(train_enc, int(s["batch_size"]), pad_id, order="shuffle", seed=seed, shard=shard)
        dev_batches: Any = Batches(dev_enc, int(cfg.get("eval_batch_size", 32)), pad_id, order="length",
                                   draw_base_seed=True)
    else:
        def epoch_data(epoch: int) -> Any:
            return encode_dataset(augment.train_set(few.train, epoch), template, desc=f"tokenising train {epoch}")

        train_enc = epoch_data(0)
        batches = Batches(train_enc, int(s["batch_size"]), pad_id, order="shuffle", seed=seed, epoch_data=epoch_data,
                          shard=shard)
        dev_encs = [encode_dataset(d, template, desc="tokenising dev") for d in augment.dev_eval_sets(few.dev)]
        dev_batches = [Batches(e, int(cfg.get("eval_batch_size", 32)), pad_id, order="length", draw_base_seed=i == 0)
                       for i, e in enumerate(dev_encs)]
        dev_enc = dev_encs[0]
    dev_labels = dev_enc["label"][:]

    # --- optimisation (accelerate: the DDP wrapper with several processes, mixed precision, fp16 loss scaling)
    accum, max_steps, eval_every = int(s["grad_accum"]), int(s["max_steps"]), int(s["eval_every"])
    warmup = int(s.get("warmup_steps") or 0) or int(float(s["warmup_ratio"]) * max_steps)
    clip = float(s["max_grad_norm"])
    tb_dir = _tensorboard_dir(out, cfg)
    resuming = bool(cfg.get("resume") and ckpt_path is not None and ckpt_path.exists())
    if out is not None and not resuming and distributed.is_main():
        # a run started afresh in a used run directory: its curves only (or none), as train_log.csv is rewritten
        shutil.rmtree(out / "tensorboard", ignore_errors=True)
    acc = distributed.accelerator(device, cfg.get("mixed_precision", "auto"), log_dir=tb_dir)
    opt = build_optimizer(model, groups, lrs, float(s["weight_decay"]))
    sched = _linear_schedule(opt, warmup, max_steps)  # steps once per optimizer step, whatever the processes
    run = distributed.Training(acc, model, opt)
    opt = run.optimizer
    params = [p for g in opt.param_groups for p in g["params"]]

    # --- state (fresh, or from the checkpoint)
    # dropout noise depends on the seed only, not on what ran before; every process draws its own masks
    torch.manual_seed(seed + 1_000_003 * rank)
    step, best, best_step, best_state, history, running = 0, -math.inf, 0, None, [], None
    if resuming:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["trainable"], strict=False)
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        batches.load(ck["batches"])
        if ck.get("processes", 1) != world:
            raise ConfigError(f"resume=true: {ckpt_path} was written by a run with {ck.get('processes', 1)} process(es), "
                              f"this one has {world}; fix: resume with the same number of processes, or rerun "
                              "without resume=true")
        own = ck
        if rank > 0:  # this process's RNG state, written next to the checkpoint
            own_path = _rank_file(ckpt_path, rank)
            own = torch.load(own_path, map_location="cpu", weights_only=False) if own_path.exists() else {}
            if own.get("step") != ck["step"]:
                raise ConfigError(f"resume=true: {own_path} does not belong to the checkpoint at step {ck['step']} "
                                  f"(was the run started with another number of processes?); fix: resume with the "
                                  f"same launcher settings, or rerun without resume=true")
        torch.set_rng_state(own["rng"])
        if own.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all(own["cuda_rng"])
        if ck.get("scaler") is not None and run.scaler is not None:
            run.scaler.load_state_dict(ck["scaler"])
        step, best, best_step, best_state, history, running = (ck["step"], ck["best"], ck["best_step"],
                                                               ck["best_state"], ck["history"], ck.get("running"))
        if main:
            print(f"resumed from {ckpt_path} at step {step}")
    elif cfg.get("resume") and main:
        print(f"resume=true but no checkpoint at {ckpt_path}; starting from scratch")
    if tb_dir is not None:  # after the checkpoint is accepted: a refused resume writes no event file
        acc.init_trackers("tensorboard")  # <run dir>/tensorboard/events.out.tfevents.*
    elapsed_before = history[-1]["elapsed_s"] if history else 0.0  # a resumed run's clock continues
    resume_point = _boundary(batches, device)  # where a resumed run restarts: after the last completed step

    def checkpoint() -> None:
        if ckpt_path is None:
            return
        if not main:  # the other processes keep only their own RNG state
            _save_checkpoint(_rank_file(ckpt_path, rank), step=step, rng=resume_point["rng"],
                             cuda_rng=resume_point["cuda_rng"])
            return
        _save_checkpoint(ckpt_path, trainable=_trainable_state(model), optimizer=opt.state_dict(),
                         scheduler=sched.state_dict(), **resume_point,
                         scaler=run.scaler.state_dict() if run.scaler is not None else None, step=step, best=best,
                         best_step=best_step, best_state=best_state, running=running, history=history,
                         processes=world)

    train_batches = iter(batches)
    rows = 0  # training rows this process ran forward/backward in this session
    t0 = time.perf_counter()
    strategy.train_mode(model, groups)
    bar = tqdm(total=max_steps, initial=step, desc=f"train {strategy.name}",
               disable=not cfg.get("progress", True) or not main)
    # a run interrupted during an evaluation redoes that evaluation before training on
    pending_eval = bool(step) and (step % eval_every == 0 or step == max_steps) and \
        not any(r["step"] == step for r in history)
    try:
        while step < max_steps or pending_eval:
            if not pending_eval:
                # --- one optimizer step (accum micro-batches; the gradient exchange only after the last)
                opt.zero_grad(set_to_none=True)
                loss_sum = 0.0
                for micro in range(accum):
                    batch = {k: v.to(device) for k, v in next(train_batches).items()}
                    with run.no_sync(last=micro == accum - 1):
                        with run.autocast():
                            loss = strategy.training_loss(run.forward, batch) / accum
                        if not run.all_finite(loss):
                            raise NonFiniteLossError(
                                f"loss is {_shown_loss(loss)} at step {step + 1} (strategy {strategy.name}, learning rates "
                                f"{ {g: lr for g, lr in lrs.items() if groups[g]} }); the run is stopped instead of training on garbage. "
                                f"Lower the learning rate (strategy.lr / strategy.prompt_lr).")
                        run.backward(loss)
                    loss_sum += loss.item()
                if clip > 0:
                    run.clip_grad_norm_(params, clip)
                opt.step()
                sched.step()
                step += 1
                resume_point = _boundary(batches, device)  # an interrupt from here on resumes after this step
                rows += accum * batches.batch_size // batches.world
                loss_sum = _mean_over_processes(loss_sum, world)
                running = loss_sum if running is None else 0.9 * running + 0.1 * loss_sum
                bar.update(1)
                bar.set_postfix(loss=f"{running:.4f}")
                if tb_dir is not None:
                    acc.log({"train/loss": loss_sum, **{f"train/lr_{g['name']}": g["lr"] for g in _lr_groups(opt)}},
                            step=step)
                pending_eval = step % eval_every == 0 or step == max_steps
            if pending_eval:
                # --- dev evaluation, best state, log, checkpoint
                dev = _dev_metric(model, dev_batches, dev_labels, device, main_metric)
                history.append({"step": step, "loss": round(running, 6) if running is not None else None,
                                "lr": sched.get_last_lr()[0], "dev": dev,
                                "elapsed_s": round(elapsed_before + time.perf_counter() - t0, 2)})
                if dev > best:
                    best, best_step, best_state = dev, step, _trainable_state(model)
                log.info("step %d loss %s dev %s %.4f (best %.4f @ %d)", step, history[-1]["loss"], main_metric, dev,
                         best, best_step)
                if out is not None and main:
                    _write_csv(out / "train_log.csv", history)
                if tb_dir is not None:
                    acc.log({f"dev/{main_metric}": dev, f"dev/best_{main_metric}": best}, step=step)
                checkpoint()
                strategy.train_mode(model, groups)
                pending_eval = False
    except (KeyboardInterrupt, Exception) as exc:
        bar.close()
        if tb_dir is not None:
            run.end_logging()
        run.finish()
        if not isinstance(exc, NonFiniteLossError):
            checkpoint()
            if ckpt_path is not None and main:
                print(f"\ninterrupted at step {step}; checkpoint saved to {ckpt_path} -- rerun with resume=true")
        raise
    bar.close()
    if tb_dir is not None:
        run.end_logging()
    run.finish()
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    model.eval()
    if remove_checkpoint and ckpt_path is not None and not cfg.get("keep_checkpoint", False):
        remove_checkpoints(ckpt_path)
    return {"steps": step, "best_step": best_step, "best_dev": best, "dev_metric": main_metric,
            "trainable_params": trainable, "total_params": total,
            "group_params": {g: sum(p.numel() for p in ps) for g, ps in groups.items()},
            "learning_rates": {g: lr for g, lr in lrs.items() if groups[g]},
            "train_examples": len(few.train), "dev_examples": len(few.dev), "processes": world,
            "rows_per_process": distributed.gather([rows]),  # the split of the work: [rows] in a plain run
            "mixed_precision": acc.mixed_precision, "tensorboard": str(tb_dir / "tensorboard") if tb_dir else None,
            "train_s": round(time.perf_counter() - t0, 2), "log": history}


def remove_checkpoints(path: Path) -> None:
    """Remove a run's checkpoint (and, with several processes, each process's RNG file next to it)."""
    path = Path(path)
    rank = distributed.rank()
    own = path if rank == 0 else _rank_file(path, rank)
    if own.exists():
        own.unlink()


def _shown_loss(loss: torch.Tensor) -> str:
    value = loss.item()
    return "not finite in another process" if math.isfinite(value) else str(value)


def _mean_over_processes(value: float, world: int) -> float:
    """The step's loss averaged over the processes (each saw its slice of the global batch)."""
    if world <= 1:
        return value
    return sum(distributed.gather([value])) / world


def _lr_groups(opt: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """One optimizer group per parameter group name (decay / no-decay halves share a learning rate)."""
    seen: dict[str, dict[str, Any]] = {}
    for g in opt.param_groups:
        seen.setdefault(g.get("name", "params"), g)
    return list(seen.values())


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the log through a temporary file (an interrupted write never leaves half a log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)

