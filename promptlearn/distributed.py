"""Several processes and mixed precision, through ``accelerate``.

A plain ``python -m promptlearn.run ...`` is one process.  ``accelerate launch [--num_processes N]
[--mixed_precision bf16] -m promptlearn.run ...`` (or ``torchrun --nproc_per_node N -m promptlearn.run ...``)
starts N copies of the same run, one per device; they behave as one run:

* every process reads the task, samples the same few-shot split and builds the same model (same seed);
* **training**: ``strategy.batch_size`` is the *global* batch.  The seeded batcher draws the same global
  batch in every process and each process takes its slice (``batch_size / N`` rows); the model is wrapped in
  ``DistributedDataParallel`` (``Accelerator.prepare_model``), which averages the gradients, so an optimizer
  step sees the mean loss over the global batch exactly as one process would.  The learning-rate schedule, the
  number of steps and the dev selection are the single-process ones: a run on 8 GPUs is the run on 1 GPU,
  up to float rounding and dropout noise (each process draws its own dropout masks);
* **scoring** (dev evaluation, test, every split): each process scores every N-th length-sorted batch and the
  scores are gathered, so all processes hold the same ``[N, C]`` scores -- equal, batch for batch, to one
  process's;
* only the main process writes files (results, predictions, scores, checkpoints, logs, TensorBoard, saved
  models); the others wait for it where a later stage reads what it wrote.

Mixed precision (``mixed_precision=auto|no|bf16|fp16``) is a training setting: the training forward and loss run
under ``Accelerator.autocast``, fp16 scales the loss (``Accelerator.backward``, the prepared optimizer).  Scoring
-- dev selection, test, every split -- always runs in full precision, so the reported numbers of a bf16 run are
computed exactly as those of an fp32 run.  ``auto``: bf16 on a CUDA device that supports it (fp16 on older GPUs),
full precision on CPU; ``accelerate launch --mixed_precision bf16|fp16`` sets it for ``auto`` (the launcher's
default ``no`` does not, so ``python`` and ``accelerate launch`` train alike).

Only public ``accelerate`` / ``torch.distributed`` APIs are used.  The process topology is
``torch.distributed``'s (one process when no process group exists), so library code that is not run under a
launcher never sees any of this.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Sequence

import torch

from .errors import ConfigError

__all__ = ["launched_processes", "single_process_entry", "init", "world_size", "rank", "is_main", "barrier", "gather",
           "broadcast", "main_process_first", "resolve_mixed_precision", "check_process_precision", "accelerator",
           "Training", "MIXED_PRECISION"]

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
_SAID = {"one_process": False}


# ---------------------------------------------------------------------------------------------- topology
def launched_processes() -> int:
    """How many processes the launcher started (``WORLD_SIZE``; 1 for a plain run)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def one_process_asked_for_several() -> bool:
    """``accelerate launch --cpu --num_processes N`` (N > 1): accelerate's one-process launcher ran this process
    (it set ``MASTER_ADDR`` for N processes, but no ``WORLD_SIZE``)."""
    cpu = str(os.environ.get("ACCELERATE_USE_CPU", "")).lower() in ("1", "true", "yes")
    return cpu and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ


def _dist() -> Any:
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    """Processes in this run (1 without a process group)."""
    dist = _dist()
    return dist.get_world_size() if dist is not None else 1


def rank() -> int:
    """This process's index (the launcher's ``RANK`` without a process group: never two writers)."""
    dist = _dist()
    if dist is not None:
        return dist.get_rank()
    if launched_processes() <= 1:
        return 0
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def is_main() -> bool:
    """True in the process that writes files (the only one of a plain run)."""
    return rank() == 0


def _wants_cpu(device: str | None) -> bool:
    if str(os.environ.get("ACCELERATE_USE_CPU", "")).lower() in ("1", "true", "yes"):
        return True
    if device not in (None, "auto"):
        return torch.device(device).type == "cpu"
    return not torch.cuda.is_available()


def init(device: str | None = "auto") -> torch.device:
    """The device of this process; under a launcher, also the process group (once per process).

    A plain run resolves ``device`` as before (``auto``: CUDA when there is one).  Under ``accelerate launch`` /
    ``torchrun`` (``WORLD_SIZE`` > 1) accelerate's process state is set up -- gloo on CPU, NCCL on GPUs -- and each
    process gets the device the launcher gave it; a process group that did not come up with every launched
    process is an error, never N independent copies of the run writing over each other."""
    n = launched_processes()
    if n <= 1:
        if one_process_asked_for_several() and not _SAID["one_process"]:
            import logging

            _SAID["one_process"] = True  # init runs more than once per process: said once

            logging.getLogger("promptlearn").warning(
                "accelerate launch started 1 process, not the --num_processes asked for: with --cpu (or a CPU-only "
                "accelerate config) accelerate runs its one-process launcher; this run is the single-process run. "
                "fix: several CPU processes: `accelerate launch --multi_gpu --num_processes N -m promptlearn.run "
                "...` on a machine without GPUs, or `torchrun --nproc_per_node N -m promptlearn.run ... device=cpu`")
        if device in (None, "auto"):
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(device)
    from accelerate import PartialState

    cpu = _wants_cpu(device)
    state = PartialState(cpu=cpu)
    if state.num_processes != n:
        raise ConfigError(f"the launcher started {n} processes (WORLD_SIZE={n}) but accelerate set up "
                          f"{state.num_processes} ({state.distributed_type}); fix: launch with `accelerate launch "
                          "--num_processes N -m promptlearn.run ...` (on CPU: `torchrun --nproc_per_node N -m "
                          "promptlearn.run ... device=cpu`)")
    if device not in (None, "auto"):
        want = torch.device(device)
        if want.type != state.device.type:
            raise ConfigError(f"device={device}: the launcher's {n} processes run on {state.device.type} devices; "
                              f"fix: device=auto (on a GPU machine, CPU processes need ACCELERATE_USE_CPU=1)")
        if want.index is not None and want.index != state.device.index:
            raise ConfigError(f"device={device}: under a launcher each process gets its own device "
                              f"(this one {state.device}); fix: device=auto, and pick GPUs with "
                              "`accelerate launch --gpu_ids 0,1` or CUDA_VISIBLE_DEVICES")
    return state.device


def single_process_entry(entry: str) -> None:
    """Stop an entry point that runs in one process (search, prediction, export, ...) when a launcher started
    several: one line with the fix from the main process, exit code 2 -- never N copies writing the same files."""
    n = launched_processes()
    if n <= 1:
        return
    if os.environ.get("RANK", "0") == "0":
        import sys

        print(f"error: python -m {entry} runs in one process, and a launcher started {n}; fix: run it without "
              f"accelerate launch / torchrun (python -m {entry} ...)", file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------------- collectives
def barrier() -> None:
    """Wait for every process (a no-op in a plain run)."""
    dist = _dist()
    if dist is not None and dist.get_world_size() > 1:
        dist.barrier()


def gather(items: list[Any]) -> list[Any]:
    """Every process's ``items``, concatenated in process order, in every process (``items`` in a plain run)."""
    if world_size() <= 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)


def broadcast(obj: Any) -> Any:
    """The main process's ``obj`` in every process."""
    if world_size() <= 1:
        return obj
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([obj], from_process=0)[0]


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block first (it fills the ``datasets`` cache), then the others (they read it)."""
    if world_size() <= 1:
        yield
        return
    from accelerate import PartialState

    with PartialState().main_process_first():
        yield


# ---------------------------------------------------------------------------------------------- precision
def resolve_mixed_precision(value: Any, device: torch.device) -> str:
    """``no`` | ``bf16`` | ``fp16`` for ``mixed_precision=value`` on ``device`` (see the module doc for ``auto``)."""
    value = "no" if value in (None, False, "false") else str(value).lower()
    if value not in MIXED_PRECISION:
        raise ConfigError(f"mixed_precision={value!r} is not one of {'|'.join(MIXED_PRECISION)}; "
                          "fix: mixed_precision=auto")
    if value != "auto":
        return value
    launched = str(os.environ.get("ACCELERATE_MIXED_PRECISION", "")).lower()
    if launched in ("bf16", "fp16"):  # `accelerate launch --mixed_precision X` (its default "no" always set: ignored)
        return launched
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def accelerator(device: torch.device, mixed_precision: Any = "auto", log_dir: Any = None) -> Any:
    """An ``accelerate.Accelerator`` for ``device`` and ``mixed_precision`` (DDP that tolerates parameters a
    strategy's loss does not reach, e.g. the MLM head under ``finetune``); ``log_dir`` adds TensorBoard logging
    (``<log_dir>/tensorboard``, written by the main process).

    accelerate keeps one precision per Python process: asking for another one later in the same process is
    an error with the fix, not a silent switch."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    mp = resolve_mixed_precision(mixed_precision, device)
    kwargs: dict[str, Any] = {"cpu": device.type == "cpu", "mixed_precision": mp, "device_placement": False,
                              "kwargs_handlers": [DistributedDataParallelKwargs(find_unused_parameters=True)]}
    if log_dir is not None:
        kwargs.update(log_with="tensorboard",
                      project_config=ProjectConfiguration(project_dir=str(log_dir), logging_dir=str(log_dir)))
    check_process_precision(mp, device)
    return Accelerator(**kwargs)


def check_process_precision(mp: str, device: torch.device) -> None:
    """accelerate keeps one precision (and CPU/GPU choice) per Python process; a run asking for another one is an
    error with the fix -- raised before the model loads (:func:`promptlearn.validation.check_config`)."""
    from accelerate.state import AcceleratorState, is_initialized

    if not is_initialized():
        return
    state = AcceleratorState()
    have, cpu = state.mixed_precision, state.device.type == "cpu"
    if have != mp or (device.type == "cpu") != cpu:
        raise ConfigError(f"mixed_precision={mp} on {device.type}: this Python process already trained with "
                          f"mixed_precision={have} on {state.device.type}, and accelerate keeps one setting per "
                          f"process; fix: mixed_precision={have}, or start a new Python process for it (a sweep over "
                          f"mixed_precision: one command per value, or hydra/launcher=joblib)")


# ---------------------------------------------------------------------------------------------- training
class Training:
    """What the trainer needs from accelerate for one training run.

    ``forward`` is the model as the strategy's loss sees it: calls go through the DDP wrapper when there are
    several processes (their gradients are averaged), every attribute is the model's own.  ``backward``,
    ``clip_grad_norm_`` and ``step`` handle fp16 loss scaling; ``no_sync`` skips the gradient exchange on the
    micro-batches of a gradient-accumulation step before the last; ``finish`` lets go of the DDP wrapper."""

    def __init__(self, acc: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.acc = acc
        self.model = model
        self.wrapped = model
        if acc.num_processes > 1:
            self.wrapped = acc.prepare_model(model, device_placement=False)  # DistributedDataParallel
            # prepare_model also puts the model's own forward under autocast; take that back: the trainer's loss
            # runs under self.autocast(), and scoring (which calls the model directly) stays in full precision
            acc.unwrap_model(self.wrapped, keep_fp32_wrapper=False)
        self.optimizer = acc.prepare_optimizer(optimizer, device_placement=False)
        self.forward = _Forward(model, self.wrapped)

    @property
    def scaler(self) -> Any:
        return self.acc.scaler

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.acc.autocast()

    def no_sync(self, last: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if last or self.wrapped is self.model else self.acc.no_sync(self.wrapped)

    def backward(self, loss: torch.Tensor) -> None:
        self.acc.backward(loss)

    def clip_grad_norm_(self, params: Sequence[torch.nn.Parameter], max_norm: float) -> None:
        """Clip the (averaged, unscaled) gradients to ``max_norm`` -- torch's clip, after accelerate unscales fp16."""
        self.acc.unscale_gradients()
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    def all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite in every process (all stop together, none waits in a gradient exchange)."""
        finite = bool(torch.isfinite(loss))
        return all(gather([finite])) if self.acc.num_processes > 1 else finite

    def end_logging(self) -> None:
        """Close the trackers (TensorBoard).  Not ``Accelerator.end_training``: that also ends the process group,
        which the scoring after training still uses."""
        for tracker in self.acc.trackers:
            tracker.finish()

    def finish(self) -> None:
        """Nothing of the run stays on the model: the DDP wrapper is dropped with this object."""
        self.wrapped = self.model
        self.forward = _Forward(self.model, self.model)


class _Forward:
    """The model for a strategy's loss: ``forward(**batch)`` goes through ``wrapped``; attributes are the model's."""

    def __init__(self, model: torch.nn.Module, wrapped: torch.nn.Module):
        self.__dict__["_model"], self.__dict__["_wrapped"] = model, wrapped

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)
