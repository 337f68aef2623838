"""Callbacks that make a training run receive a real signal at a chosen step; `+callbacks.<name>._target_=…`.

Sent at the start of a batch, after Lightning has saved any checkpoint due at the end of the previous one.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from classicnets.data import MNISTDataModule


class SignalAtStep(Callback):
    """Sends `signum` (default SIGKILL: no handler, no cleanup) to this process when `global_step == step`."""

    def __init__(self, step: int, signum: int = signal.SIGKILL) -> None:
        self.step = step
        self.signum = signum

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class NaNInputAtStep(Callback):
    """Fills the inputs of the batch of `step` with NaN: one non-finite loss, then normal batches again."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            batch[0].fill_(torch.nan)


class SignalAtEvaluationBatch(Callback):
    """Sends `signum` to this process as batch `batch` of a validation (`phase="validation"`, the sanity check
    included) or of the test (`phase="test"`) starts."""

    def __init__(self, phase: str, batch: int = 0, signum: int = signal.SIGINT) -> None:
        self.phase, self.batch, self.signum = phase, batch, signum
        self.sent = False

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._send("validation", args[1])

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._send("test", args[1])

    def _send(self, phase: str, batch: int) -> None:
        if phase == self.phase and batch == self.batch and not self.sent:
            self.sent = True  # once: a second Ctrl-C means "quit without saving"
            os.kill(os.getpid(), self.signum)


class SignalledInSetup(MNISTDataModule):
    """MNIST that receives `signum` while it reads its data (`data._target_=…`), before any training."""

    def __init__(self, *args: Any, signum: int = signal.SIGINT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signum = signum

    def setup(self, stage: str | None = None) -> None:
        os.kill(os.getpid(), self.signum)
        super().setup(stage)


class SignalGroupAtStep(SignalAtStep):
    """Sends `signum` to this process's whole process group, as a terminal's Ctrl-C does: under DDP every rank
    gets it. Sent by rank 0 only (start the run in a session of its own)."""

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero:
            os.killpg(os.getpgrp(), self.signum)


class RecordSaves(Callback):
    """Writes the global steps at which checkpoints were saved to `<default_root_dir>/saves.json` (rank 0)."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.steps.append(trainer.global_step)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            (Path(trainer.default_root_dir) / "saves.json").write_text(json.dumps(self.steps))
