"""Few-shot training for the strategies that train something.

A strategy is a config (``conf/strategy/*.yaml``) that says which parameter groups train and
with which learning rate:

==============  =========  ============  ===============================================
strategy        LM trains  prompt trains  what it is
==============  =========  ============  ===============================================
tuning_free     no         no            zero-shot scoring (no trainer)
fixed_lm        no         yes           prompt tuning: soft tokens / prompt encoder only
fixed_prompt    yes        --            PET / LM-BFF prompt-based fine-tuning (hard template)
prompt_lm       yes        yes           P-tuning: prompt and LM, each with its own lr
finetune        yes        (head)        classic [CLS] head fine-tuning, no template
==============  =========  ============  ===============================================

The loop follows the LM-BFF protocol: AdamW, linear warmup/decay, ``max_steps`` optimizer steps,
evaluation on the few-shot dev split every ``eval_every`` steps, the best state by dev metric is
kept and restored at the end (the caller then reports test with it).  A checkpoint is written
at every evaluation and when the run is interrupted (Ctrl-C) or crashes; ``resume=true`` continues
from it with the same data order and RNG state.  A NaN/inf loss stops the run with a message.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import PromptCollator, encode_dataset, make_loader
from .metrics import compute_metrics, predict_scores

log = logging.getLogger("promptlearn")

__all__ = ["train", "configure_trainable", "build_optimizer", "enable_activation_checkpointing", "count_parameters",
           "NonFiniteLossError"]

CHECKPOINT = "checkpoint.pt"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, shared parameters counted once."""
    seen: dict[int, nn.Parameter] = {}
    for p in model.parameters():
        seen.setdefault(id(p), p)
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return trainable, total



def configure_trainable(model: nn.Module, strategy: dict[str, Any]) -> dict[str, list[nn.Parameter]]:
    """Set ``requires_grad`` by strategy; returns the parameter groups ``{"lm": [...], "prompt": [...]}``."""
    train_lm = bool(strategy.get("train_lm", False))
    train_prompt = bool(strategy.get("train_prompt", True))
    soft_prompt = getattr(model, "soft_prompt", None)  # the prompt parameters (soft tokens, prompt encoder)
    prompt_params = {id(p): p for p in soft_prompt.parameters()} if soft_prompt is not None else {}
    if prompt_params and not train_prompt:
        warnings.warn(f"strategy {strategy.get('name')!r} keeps the template's soft tokens frozen at their "
                      "initial values (train_prompt=false); use prompt_lm or fixed_lm to train them")
    lm = getattr(model, "mlm", model)
    groups: dict[str, list[nn.Parameter]] = {"lm": [], "prompt": []}
    for p in lm.parameters():
        if id(p) in prompt_params:
            continue
        p.requires_grad_(train_lm)
        if train_lm:
            groups["lm"].append(p)
    for p in prompt_params.values():
        p.requires_grad_(train_prompt)
        if train_prompt:
            groups["prompt"].append(p)
    model.lm_trained = bool(groups["lm"]) or bool(getattr(model, "lm_trained", False))  # read by save_prompt_model
    if not groups["lm"] and not groups["prompt"]:
        raise ValueError(f"strategy {strategy.get('name')!r} trains nothing: the LM is frozen and the template has "
                         "no soft tokens; add {soft} tokens (strategy.soft_prefix=N or template=...) or set train_lm")
    return groups


def enable_activation_checkpointing(mlm: nn.Module) -> None:
    """Recompute activations in the backward pass (less memory, roughly a third more compute)."""
    kwargs = {"use_reentrant": False}
    if hasattr(mlm, "activation_checkpointing_enable"):  # transformers >= 5
        mlm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        mlm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def build_optimizer(model: nn.Module, groups: dict[str, list[nn.Parameter]], s: dict[str, Any]) -> torch.optim.Optimizer:
    wd = float(s.get("weight_decay", 0.0))
    no_decay_ids = set()
    for mod in model.modules():
        if isinstance(mod, (nn.LayerNorm, nn.Embedding)) or "norm" in type(mod).__name__.lower():
            no_decay_ids.update(id(p) for p in mod.parameters(recurse=False))
    param_groups = []
    for name, lr in (("lm", float(s.get("lr", 1e-5))), ("prompt", float(s.get("prompt_lr", s.get("lr", 1e-5))))):
        params = groups[name]
        decay = [p for p in params if id(p) not in no_decay_ids and p.ndim > 1]
        rest = [p for p in params if id(p) in no_decay_ids or p.ndim <= 1]
        if decay:
            param_groups.append({"params": decay, "lr": lr, "weight_decay": wd, "name": name})
        if rest:
            param_groups.append({"params": rest, "lr": lr, "weight_decay": 0.0, "name": name})
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


class _Batches:
    """Endless seeded batches: epoch ``e`` uses permutation ``randperm(n, seed + e)``; resumable."""

    def __init__(self, encoded: Any, batch_size: int, seed: int, collate: PromptCollator):
        cols = [c for c in ("input_ids", "token_type_ids", "soft_ids", "mask_pos", "label") if c in encoded.column_names]
        self.rows = encoded.with_format(None, columns=cols)
        self.n, self.bs, self.seed, self.collate = len(encoded), min(batch_size, len(encoded)), seed, collate
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation()

    def _permutation(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._perm = self._permutation()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.pos + self.bs > self.n:  # drop the ragged tail; next epoch
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._permutation()
        idx = self._perm[self.pos: self.pos + self.bs]
        self.pos += self.bs
        return self.collate([self.rows[i] for i in idx])


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.named_parameters() if v.requires_grad}


def _autocast(device: torch.device, amp: Any) -> tuple[contextlib.AbstractContextManager, Any]:
    """bf16/fp16 autocast on CUDA when ``amp`` is auto/true; never on CPU."""
    if device.type != "cuda" or amp in (False, "false", "no", None):
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def train(model: nn.Module, few: Any, strategy: dict[str, Any], cfg: dict[str, Any], device: torch.device,
          output_dir: str | Path | None = None, main_metric: str = "accuracy") -> dict[str, Any]:
    """Train ``model`` on ``few.train``, select on ``few.dev``; leaves the best state loaded."""
    if few is None or len(few.train) == 0:
        raise ValueError(f"strategy {strategy.get('name')!r} needs training data: set strategy.k_shot > 0")
    s = dict(strategy)
    seed = int(cfg.get("seed", 42))
    out = Path(output_dir) if output_dir is not None else None
    groups = configure_trainable(model, s)
    if s.get("gradient_checkpointing"):
        enable_activation_checkpointing(getattr(model, "mlm", model))
    trainable, total = count_parameters(model)
    msg = (f"strategy {s.get('name')}: training {trainable:,} of {total:,} parameters "
           f"({100 * trainable / max(total, 1):.3f}%) -- LM {'trainable' if groups['lm'] else 'frozen'}, "
           f"prompt params {sum(p.numel() for p in groups['prompt']):,}")
    log.info(msg)
    print(msg)

    template = model.template
    pad_id = template.tokenizer.pad_token_id
    train_enc = encode_dataset(few.train, template, desc="tokenising train")
    dev_enc = encode_dataset(few.dev, template, desc="tokenising dev")
    batches = _Batches(train_enc, int(s.get("batch_size", 8)), seed, PromptCollator(pad_id))
    dev_loader = make_loader(dev_enc, int(cfg.get("eval_batch_size", 32)), pad_id, sort_by_length=True)
    dev_labels = dev_enc["label"][:]

    accum = int(s.get("grad_accum", 1))
    max_steps = int(s.get("max_steps", 1000))
    eval_every = int(s.get("eval_every", 100))
    warmup = int(s.get("warmup_steps", 0)) or int(float(s.get("warmup_ratio", 0.0)) * max_steps)
    clip = float(s.get("max_grad_norm", 1.0))
    opt = build_optimizer(model, groups, s)
    sched = _linear_schedule(opt, warmup, max_steps)
    amp_ctx, scaler = _autocast(device, s.get("amp", "auto"))

    torch.manual_seed(seed)  # dropout noise depends on the seed only, not on what ran before
    step, best, best_step, best_state, history, running = 0, -math.inf, 0, None, [], None
    ckpt_path = out / CHECKPOINT if out is not None else None
    if cfg.get("resume") and ckpt_path is not None and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["trainable"], strict=False)
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        batches.load(ck["batches"])
        torch.set_rng_state(ck["rng"])
        if ck.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        if ck.get("scaler") is not None and scaler is not None:
            scaler.load_state_dict(ck["scaler"])
        step, best, best_step, best_state, history, running = (ck["step"], ck["best"], ck["best_step"],
                                                               ck["best_state"], ck["history"], ck.get("running"))
        print(f"resumed from {ckpt_path} at step {step}")
    elif cfg.get("resume"):
        print(f"resume=true but no checkpoint at {ckpt_path}; starting from scratch")

    def step_boundary() -> dict[str, Any]:  # data position and RNG state between two optimizer steps
        return {"batches": batches.state(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None}

    # where a resumed run restarts: the state at the end of the last completed step
    resume_point = step_boundary()

    def save_checkpoint() -> None:
        if ckpt_path is None:
            return
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"trainable": _trainable_state(model), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), **resume_point,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "step": step, "best": best, "best_step": best_step, "best_state": best_state, "running": running,
                    "history": history}, tmp)
        tmp.replace(ckpt_path)

    def evaluate_dev() -> float:
        scores = predict_scores(model, dev_loader, device, progress=False)
        return compute_metrics(dev_labels, scores.argmax(-1), main_metric)["main"]

    log_rows = history
    t0 = time.perf_counter()
    frozen_lm_eval = not groups["lm"] and bool(s.get("lm_eval_mode", True))

    def train_mode() -> None:
        model.train()
        if frozen_lm_eval:
            getattr(model, "mlm", model).eval()  # frozen LM: no dropout noise (OpenPrompt's plm_eval_mode)

    def eval_and_checkpoint() -> None:
        nonlocal best, best_step, best_state
        dev = evaluate_dev()
        log_rows.append({"step": step, "loss": round(running, 6) if running is not None else None,
                         "lr": sched.get_last_lr()[0], "dev": dev, "elapsed_s": round(time.perf_counter() - t0, 2)})
        if dev > best:
            best, best_step, best_state = dev, step, _trainable_state(model)
        log.info("step %d loss %s dev %s %.4f (best %.4f @ %d)", step, log_rows[-1]["loss"], main_metric, dev, best,
                 best_step)
        if out is not None:
            _write_csv(out / "train_log.csv", log_rows)
        save_checkpoint()
        train_mode()

    train_mode()
    bar = tqdm(total=max_steps, initial=step, desc=f"train {s.get('name')}", disable=not cfg.get("progress", True))
    try:
        # a run interrupted during an evaluation redoes that evaluation before training on
        if step and (step % eval_every == 0 or step == max_steps) and not any(r["step"] == step for r in log_rows):
            eval_and_checkpoint()
        while step < max_steps:
            opt.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for _ in range(accum):
                batch = {k: v.to(device) for k, v in next(batches).items()}
                with amp_ctx:
                    loss = model(**batch).loss / accum
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"loss is {loss.item()} at step {step + 1} (strategy {s.get('name')}, lr {s.get('lr')}, "
                        f"prompt_lr {s.get('prompt_lr')}); the run is stopped instead of training on garbage. "
                        f"Lower the learning rate, enable gradient clipping (max_grad_norm), or disable fp16 (amp=false).")
                (scaler.scale(loss) if scaler else loss).backward()
                loss_sum += loss.item()
            if scaler:
                scaler.unscale_(opt)
            if clip > 0:
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            step += 1
            running = loss_sum if running is None else 0.9 * running + 0.1 * loss_sum
            # an interrupt from here on (e.g. during the dev evaluation) resumes after this step
            resume_point = step_boundary()
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}")
            if step % eval_every == 0 or step == max_steps:
                eval_and_checkpoint()
    except (KeyboardInterrupt, Exception) as exc:
        bar.close()
        if not isinstance(exc, NonFiniteLossError):
            save_checkpoint()
            if ckpt_path is not None:
                print(f"\ninterrupted at step {step}; checkpoint saved to {ckpt_path} -- rerun with resume=true")
        raise
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    model.eval()
    if ckpt_path is not None and ckpt_path.exists() and not cfg.get("keep_checkpoint", False):
        ckpt_path.unlink()
    return {"steps": step, "best_step": best_step, "best_dev": best, "dev_metric": main_metric,
            "trainable_params": trainable, "total_params": total, "train_examples": len(few.train),
            "dev_examples": len(few.dev), "train_s": round(time.perf_counter() - t0, 2), "log": log_rows}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

