"""Callbacks of the run layer.

Two routes lead here. `conf/callbacks/default.yaml` lists the optional ones (with Lightning's own): `LastCheckpoint`
and `TrainingSpeed` are configured there like any other callback, and a user's callback is added the same way
(README, "Add a callback"). The pipeline always adds `RunRecordInCheckpoint`, `RngStates`, `FiniteLoss` and
`GracefulStop` itself: what `eval.py`, `predict.py`, `resume=auto` and `nan_policy` promise depends on them, so
no config can leave them out.
"""

from __future__ import annotations

import logging
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch import callbacks as lightning_callbacks
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.data import extract_batch_size
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.optim import Optimizer

from classicnets.run.checkpoints import record_run
from classicnets.run.console import epoch_summary, multirun
from classicnets.run.validate import NAN_POLICIES

# under DDP, LastCheckpoint asks rank 0's clock (a broadcast) once in this many steps
CLOCK_CHECK_EVERY_N_STEPS = 50

log = logging.getLogger(__name__)


class RunRecordInCheckpoint(Callback):
    """Stores the run's resolved config in every checkpoint, so eval/predict rebuild the run from the file alone.

    Plain containers only: checkpoints must load with `torch.load(weights_only=True)`.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        record_run(checkpoint, self.config)


class SavedWeights(Callback):
    """Tells whether the model in memory holds exactly what this run's checkpoints of a given step hold, so that
    testing the best checkpoint after fit need not read it back when it is the model at hand (`pipeline.train`).

    At the first checkpoint of each step it copies the model's state into host memory (a fraction of the cost of
    the write it accompanies); every later checkpoint of that step is compared with the copy, and so is the model
    when asked: the answer is yes only when every tensor is bitwise equal throughout.
    """

    def __init__(self) -> None:
        self.step: int | None = None
        self.state: dict[str, torch.Tensor] = {}
        self.consistent = False

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        step = int(checkpoint["global_step"])
        if step != self.step:
            self.step, self.consistent = step, True
            self.state = {
                key: value.detach().to("cpu", copy=True) for key, value in pl_module.state_dict().items()
            }
        elif self.consistent:
            self.consistent = self._equal(pl_module)

    def holds(self, pl_module: LightningModule, step: int) -> bool:
        """Whether the model is, tensor for tensor, what every checkpoint this run saved at `step` holds."""
        return step == self.step and self.consistent and self._equal(pl_module)

    def _equal(self, pl_module: LightningModule) -> bool:
        now = pl_module.state_dict()
        return now.keys() == self.state.keys() and all(
            torch.equal(now[key].detach().cpu(), value) for key, value in self.state.items()
        )


class TrainingSpeed(Callback):
    """Logs the iteration speed once per epoch, next to the learning curves.

    `perf/train_samples_per_s` counts the training steps only (data loading included; validation and
    checkpointing excluded), `perf/epoch_s` the whole epoch with its validation.
    """

    def __init__(self) -> None:
        self.samples = 0
        self.train_seconds = 0.0
        self.epoch_start = self.segment_start = 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # a run resumed in the middle of an epoch gets no `on_train_epoch_start` for that epoch
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.samples, self.train_seconds = 0, 0.0
        self.epoch_start = self.segment_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx + 1 == trainer.num_training_batches and pl_module.device.type == "cuda":
            # steps run asynchronously on a GPU: wait for the epoch's last one, once, before reading the clock
            torch.cuda.synchronize(pl_module.device)
        now = time.perf_counter()
        self.samples += extract_batch_size(batch)
        self.train_seconds += now - self.segment_start
        self.segment_start = now

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # a validation in the middle of an epoch is not training time
        self.segment_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.log("perf/epoch_s", time.perf_counter() - self.epoch_start)
        if self.train_seconds > 0:
            pl_module.log("perf/train_samples_per_s", self.samples / self.train_seconds)


def progress_bar(refresh_rate: int = 10) -> ProgressBar:
    """The progress callback (conf/callbacks/default.yaml): where standard output is a terminal, Lightning's bar,
    redrawn in place and left as one line per epoch; elsewhere (a file, CI, a sweep job) `EpochLines`."""
    if sys.stdout.isatty() and not multirun():
        return TQDMProgressBar(refresh_rate=refresh_rate, leave=True)
    return EpochLines()


class EpochLines(ProgressBar):
    """One line per finished epoch, with its metrics and speed: the progress of a run whose output is a file.

    Lightning logs the task's epoch means (`train/loss`) after the callbacks' `on_train_epoch_end`, so an epoch's
    line is written when the next epoch starts, or when training ends.
    """

    def __init__(self) -> None:
        super().__init__()
        self.enabled = True
        self.finished: int | None = None

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.finished = trainer.current_epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer)

    def _write(self, trainer: Trainer) -> None:
        if self.finished is None or not self.enabled:
            return
        epoch, self.finished = self.finished, None
        log.info("epoch %d/%d  %s", epoch + 1, trainer.max_epochs, epoch_summary(trainer.callback_metrics))


class RngStates(Callback):
    """Saves the random generators (torch, CUDA, numpy, Python) in checkpoints and restores them on resume.

    Dropout and batch augmentation draw from the global torch generator, so without this a resumed run takes
    different random decisions than the run it continues. They are restored when training starts, after the
    sanity check, the last thing before the first resumed step. Tensors and plain values only: checkpoints
    must load with `weights_only=True`.

    The CUDA generator saved is the one of the GPU the run trains on, and it is restored to the GPU the resumed
    run trains on: every DDP rank runs the same seeded stream on its own GPU, and rank 0 writes the checkpoint.
    (Saving every visible GPU's generator failed to resume with fewer GPUs visible, and gave the other ranks the
    unused generators of rank 0's process.)
    """

    def __init__(self) -> None:
        self.loaded: dict[str, Any] | None = None
        self.device = torch.device("cpu")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.device = trainer.strategy.root_device

    def state_dict(self) -> dict[str, Any]:
        _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "numpy": {
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "position": int(position),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached_gaussian),
            },
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.loaded = state_dict

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.loaded is None:
            return
        state, self.loaded = self.loaded, None
        torch.set_rng_state(state["torch"])
        if (
            pl_module.device.type == "cuda"
            and (cuda := cuda_rng_state(state["cuda"], pl_module.device)) is not None
        ):
            torch.cuda.set_rng_state(cuda, pl_module.device)
        numpy = state["numpy"]
        keys = numpy["keys"].numpy().astype(np.uint32)
        np.random.set_state(
            ("MT19937", keys, numpy["position"], numpy["has_gauss"], numpy["cached_gaussian"])
        )
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


def cuda_rng_state(
    saved: torch.Tensor | list[torch.Tensor] | None, device: torch.device
) -> torch.Tensor | None:
    """The saved CUDA generator state that belongs on `device`: the one saved, or from the list of every visible
    GPU's state that earlier versions saved, the entry of the same index (None when there is none)."""
    if saved is None or isinstance(saved, torch.Tensor):
        return saved
    index = device.index or 0
    if index < len(saved):
        return saved[index]
    log.warning(
        "the checkpoint has no CUDA generator state for GPU %d: its random numbers start afresh", index
    )
    return None


class DivergedError(FloatingPointError):
    """The training loss became NaN or infinite (a sweep records the job as `diverged`)."""


@dataclass
class _Verdict:
    """Whether one step's loss was finite on every process, on its way to the host."""

    step: int
    epoch: int
    loss: torch.Tensor  # as the task logged it (unscaled), on the device
    # on the host once `copied` has completed: the number of processes with a finite loss
    finite: torch.Tensor
    copied: torch.cuda.Event | None


class FiniteLoss(Callback):
    """Stops the run at the first non-finite training loss (`policy="stop"`), or skips that update ("skip").

    "skip" checks each loss before its backward pass and drops the optimizer step (all gradients set to None,
    so Adam's moments do not move either); with gradient accumulation that drops the whole accumulated batch.
    Deciding before the update costs a device-to-host sync per step, as AMP's gradient scaler does.

    "stop" on a CPU checks before the backward pass too, so the weights stay those of the last finite step. On a
    GPU that sync would keep the host from queueing a step while the GPU runs the one before (the whole
    overhead of Lightning's loop then adds to every step), so there each step's verdict is copied to the host
    asynchronously and read at the next step (`deferred`): the run stops one step later, after one update with
    non-finite gradients, and before any checkpoint is written (a save reads the pending verdict first), so no
    checkpoint holds a diverged model. Under DDP every process reads the same verdict (an all-reduce on the
    device), or the others would wait for a stopped one. The losses reported are the ones the task logged
    (16-mixed's gradient scaling and the accumulation taken out).
    """

    def __init__(self, policy: str = "stop", deferred: bool | None = None) -> None:
        if policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {policy!r}")
        self.policy = policy
        self.deferred = deferred  # None: on CUDA devices with policy "stop"
        self.pending: _Verdict | None = None
        self.last_finite: tuple[int, torch.Tensor] | None = None
        self.skip_update = False
        self.skipped = 0

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        verdict = self._verdict(trainer, loss.detach())
        deferred = self.policy == "stop" and (
            self.deferred if self.deferred is not None else loss.device.type == "cuda"
        )
        if deferred:
            self._settle(trainer)
            self.pending = verdict
        else:
            self._judge(trainer, verdict)

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer
    ) -> None:
        if self.skip_update:
            optimizer.zero_grad(set_to_none=True)  # optimizers step only parameters that have a gradient
            self.skip_update = False

    # a pending verdict is read before anything that would show or keep a diverged model
    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._settle(trainer)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._settle(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._settle(trainer)

    def _verdict(self, trainer: Trainer, loss: torch.Tensor) -> _Verdict:
        # the loss Lightning back-propagates is divided by the accumulation and, under 16-mixed, multiplied by
        # the gradient scaler's factor; undo both, on the device, so that messages show what the task logged
        logged = loss.float() * trainer.accumulate_grad_batches
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and getattr(scaler, "_scale", None) is not None:
            logged = logged / scaler._scale
        finite = torch.isfinite(loss).to(torch.int32)
        if trainer.world_size > 1:  # not strategy.reduce: Lightning's puts a blocking barrier before it
            torch.distributed.all_reduce(finite)
        copied = None
        if finite.device.type == "cuda":
            finite = finite.to("cpu", non_blocking=True)  # into pinned memory, without waiting
            copied = torch.cuda.Event()
            copied.record()
        return _Verdict(trainer.global_step, trainer.current_epoch, logged, finite, copied)

    def _settle(self, trainer: Trainer) -> None:
        verdict, self.pending = self.pending, None
        if verdict is not None:
            self._judge(trainer, verdict)

    def _judge(self, trainer: Trainer, verdict: _Verdict) -> None:
        if verdict.copied is not None:
            verdict.copied.synchronize()  # waits for that step's loss only, not for the work queued after it
        if int(verdict.finite) == trainer.world_size:
            self.last_finite = (verdict.step, verdict.loss)
            return
        last = (
            f"the last finite loss was {float(self.last_finite[1]):.6g} at step {self.last_finite[0]}"
            if self.last_finite is not None
            else "no finite loss was seen in this run"
        )
        where = f"step {verdict.step} (epoch {verdict.epoch})"
        if self.policy == "stop":
            weights = (
                "The weights are left as they were after the last finite step."
                if verdict.step == trainer.global_step
                else "The checkpoints hold weights from before it."
            )
            raise DivergedError(
                f"the training loss became {float(verdict.loss)} at {where}; {last}. {weights} Try a lower "
                "learning rate, gradient clipping (regularization=[grad_clip]), or nan_policy=skip to skip such "
                "steps."
            )
        self.skip_update = True
        self.skipped += 1
        log.warning(
            "non-finite loss %s at %s: update skipped (%d so far); %s",
            float(verdict.loss),
            where,
            self.skipped,
            last,
        )


class LastCheckpoint(Callback):
    """Keeps `last.ckpt`, the file `resume=auto` continues from, current: rewritten after every training epoch
    and, within long epochs, every `train_time_interval` (under DDP, at the first of every 50 steps after it)
    or every `every_n_train_steps` optimizer steps.

    Lightning's `ModelCheckpoint(save_last=True)` rewrites `last.ckpt` only when it also keeps a checkpoint, so a
    run killed after epochs that did not improve validation resumed from the last improvement.
    """

    def __init__(
        self,
        dirpath: str | Path,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
    ) -> None:
        if every_n_train_steps and train_time_interval:
            raise ValueError("LastCheckpoint: give every_n_train_steps or train_time_interval, not both")
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_train_steps = every_n_train_steps
        self.train_time_interval = train_time_interval
        self._saved_step = -1
        self._saved_at = time.monotonic()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._saved_at = time.monotonic()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._saved_step:  # micro-batches of one accumulated step
            return
        if self.every_n_train_steps:
            due = trainer.global_step % self.every_n_train_steps == 0
        elif self.train_time_interval:
            if trainer.world_size > 1 and trainer.global_step % CLOCK_CHECK_EVERY_N_STEPS:
                return
            elapsed = time.monotonic() - self._saved_at
            # rank zero's clock decides: every process must take part in the save. Under DDP that is a
            # broadcast, which waits for every rank's step, so the clock is read every few dozen steps only
            due = trainer.strategy.broadcast(elapsed >= self.train_time_interval.total_seconds())
        else:
            return
        if due:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer)

    def _save(self, trainer: Trainer) -> None:
        if trainer.fast_dev_run:
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable
        self._saved_step, self._saved_at = trainer.global_step, time.monotonic()


class GracefulStop(Callback):
    """SIGINT, SIGTERM or SIGUSR1 (SLURM's pre-emption warning): finish the step, save, and stop.

    Lightning already handles SIGTERM this way: its handler sets `trainer.received_sigterm`, the loops raise
    `SIGTERMException` at the next batch boundary (of training, validation and test alike) and the callbacks'
    `on_exception` runs. SIGINT and SIGUSR1 are routed to that same handler (SIGUSR1 only when Lightning's SLURM
    auto-requeue does not own it), so a Ctrl-C no longer breaks off in the middle of an optimizer step, and
    stops a validation or a test within a batch. They are routed from the first validation (the sanity check),
    training or test batch on; Lightning restores the previous handlers when `fit` or `test` ends. A second
    Ctrl-C quits without saving (`quit` is then set: Lightning turns that KeyboardInterrupt into exit status 1).
    The pipeline turns the exception into an exit status `128 + signal`. Without `checkpoint_path` (eval) nothing
    is saved.

    Under DDP a Ctrl-C in the terminal reaches every rank, and rank 0 forwards each signal it gets to the ranks it
    started, so those see it twice. Only the first signal a process gets goes on to Lightning's handler (which
    broadcasts from rank 0 to all: once on each rank); a repeat is dropped on the other ranks, and only rank 0 quits
    on a second Ctrl-C (Lightning then kills the others). Otherwise the ranks took the forwarded copy for a second
    Ctrl-C and quit while rank 0 waited for them in the checkpoint's barrier.
    """

    def __init__(self, checkpoint_path: str | Path | None = None) -> None:
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.received: signal.Signals | None = None
        self.quit = False
        self.started_by_another_rank = False
        self.lightning_handler: Any = None
        self.trainer: Trainer | None = None

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._route_signals(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._route_signals(trainer)
        if trainer.received_sigterm:  # during the sanity check's last batch, which does not stop by itself
            raise SIGTERMException

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._route_signals(trainer)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            # a stop asked on any rank ends this batch on every rank: Lightning's loop checks its flag locally
            # right after this hook, and ranks that stopped at different batches would wait for each other
            asked = torch.tensor([int(self.received is not None)], device=pl_module.device)
            torch.distributed.all_reduce(asked)
            if asked.item():
                trainer._signal_connector.received_sigterm = True

    def _route_signals(self, trainer: Trainer) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self.trainer = trainer
        self.started_by_another_rank = trainer.local_rank != 0
        # Lightning's SIGTERM handler, registered anew by each fit and test
        if signal.getsignal(signal.SIGTERM) != self._forward:
            self.lightning_handler = signal.getsignal(signal.SIGTERM)
        # installed after Lightning registered its own, so that its teardown puts back the user's handlers;
        # an ignored SIGINT stays ignored: shells start background jobs that way, immune to the terminal's Ctrl-C
        if signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, self._forward):
            signal.signal(signal.SIGINT, self._forward)
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.signal(signal.SIGUSR1, self._forward)
        if callable(self.lightning_handler):
            signal.signal(signal.SIGTERM, self._forward)

    def _forward(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            if (
                signum == signal.SIGINT
                and self.received == signal.SIGINT
                and not self.started_by_another_rank
            ):
                raise KeyboardInterrupt  # the second Ctrl-C
            return  # a repeat, or rank 0 forwarding what this rank got from the terminal already
        self.received = signal.Signals(signum)
        saving = f" and saving {self.checkpoint_path}" if self.checkpoint_path else ""
        log.warning(
            "received %s: stopping after this batch%s%s",
            signal.Signals(signum).name,
            saving,
            " (Ctrl-C again to quit without saving)" if signum == signal.SIGINT and saving else "",
        )
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1 and trainer.training:
            # Lightning's handler broadcasts inside the signal handler: a collective at whatever point the signal
            # lands, which deadlocked against another collective in flight (the loss check's all-reduce). Here
            # the signal is only recorded (and passed on by rank 0 to the ranks it started); the ranks agree at
            # the end of the batch (`on_train_batch_end`) and all stop after that same batch.
            if trainer.global_rank == 0 and trainer.strategy.launcher is not None:
                trainer.strategy.launcher.kill(signum)
            return
        if callable(self.lightning_handler):
            self.lightning_handler(signum, frame)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.quit = True
        if isinstance(exception, SIGTERMException):
            self.received = self.received or signal.SIGTERM
            # during the test after fit, the model holds the best weights and last.ckpt is already complete
            if trainer.state.fn == TrainerFn.FITTING and self.checkpoint_path is not None:
                trainer.save_checkpoint(self.checkpoint_path, weights_only=False)


class EMAWeightAveraging(lightning_callbacks.EMAWeightAveraging):
    """Lightning's exponential moving average of the weights, except that a checkpoint loaded to test it (the best
    one, right after training) keeps the averaged weights its `state_dict` holds.

    Lightning's callback, once it has averaged in this trainer's `fit`, loads the raw training weights that the
    checkpoint also keeps (`current_model_state`) whatever the stage: the run would test the raw weights while
    eval.py tested the averaged ones. Resuming a fit restores both, as Lightning does.
    """

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class StochasticWeightAveraging(lightning_callbacks.StochasticWeightAveraging):
    """Lightning's SWA, always ending with the epoch Lightning adds for BatchNorm models: in it the averaged
    weights replace the model's, BatchNorm statistics are recomputed (a forward pass over the training data),
    and the averaged model is validated and checkpointed like any epoch's model.

    Without BatchNorm, Lightning copies the average into the model only when training ends, after the last
    checkpoint was written: no checkpoint, hence neither the test of the best one nor eval.py or predict.py, would
    see the averaged weights.
    """

    @staticmethod
    def pl_module_contains_batch_norm(pl_module: LightningModule) -> bool:
        return True
