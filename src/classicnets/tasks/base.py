"""What every task shares: an injected backbone, optimizer and learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.optim import Optimizer
from torch.utils.tensorboard import SummaryWriter
from torchmetrics import Metric

OptimizerFactory = Callable[..., Optimizer]
SchedulerFactory = Callable[..., Any]


@dataclass
class LRSchedule:
    """A learning-rate scheduler and how Lightning steps it: the `lr_scheduler` entry of `configure_optimizers`.

    `scheduler` is a partial (Hydra `_partial_: true`) that receives the optimizer; a keyword among
    `total_steps`/`T_max` left as None is filled in from the trainer, so one-cycle and cosine schedules fit
    whatever epochs and batch size the run has. `interval` is "epoch" or "step"; `monitor` is the metric a
    scheduler such as `ReduceLROnPlateau` watches.
    """

    scheduler: SchedulerFactory
    interval: str = "epoch"
    monitor: str = "val/loss"


class Task(LightningModule):
    """A LightningModule around any `nn.Module`, with an injected optimizer (a partial that receives the
    parameters) and learning-rate schedule."""

    #: metrics shown in TensorBoard's HPARAMS tab, next to the run's hyperparameters
    summary_metrics: tuple[str, ...] = ()

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: LRSchedule | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.schedule = scheduler
        self._train_sums: dict[str, torch.Tensor] = {}
        self._train_count: torch.Tensor | int = 0

    def forward(self, inputs: Any) -> Any:
        return self.net(inputs)

    def log_training_step(self, loss: torch.Tensor, batch_size: int, **sums: torch.Tensor) -> None:
        """Logs `train/loss_step`, and adds the step to the epoch means `train/loss` and `train/<name>`.

        `sums` are the batch's totals (e.g. `acc=` the number of correct predictions). Small models take a
        step in a few milliseconds on a CPU, where a `self.log` or a torchmetrics `update()` per step is a
        measurable part of it (bench/README.md, figure 1): the step value is logged only on the steps where
        Lightning writes to the loggers anyway (`trainer.log_every_n_steps`), and the epoch means are plain
        tensor sums on the model's device, with no host sync, kept in fp32 whatever the step's precision (a
        bf16 sum of a few hundred losses would round away most of their digits). Steps with a non-finite loss
        (skipped under `nan_policy=skip`) do not count.
        """
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss, prog_bar=True, batch_size=batch_size)
        finite = torch.isfinite(loss.detach())
        for name, total in {"loss": loss.detach().float() * batch_size, **sums}.items():
            self._train_sums[name] = self._train_sums.get(name, 0) + torch.where(finite, total, 0)
        self._train_count = self._train_count + finite * batch_size

    def on_train_epoch_start(self) -> None:
        self._train_sums, self._train_count = {}, 0

    def on_train_epoch_end(self) -> None:
        for name, total in self._train_sums.items():
            # equal shards per process under DDP, so the mean of the processes' means is the epoch's mean
            self.log(f"train/{name}", total / self._train_count, sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.schedule is None:
            return optimizer
        scheduler = self.schedule.scheduler(optimizer, **self._schedule_lengths())
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.schedule.interval,
                "monitor": self.schedule.monitor,
            },
        }

    def _schedule_lengths(self) -> dict[str, int]:
        factory = self.schedule.scheduler
        keywords = factory.keywords if isinstance(factory, partial) else {}
        steps = self.trainer.estimated_stepping_batches
        length = steps if self.schedule.interval == "step" else self.trainer.max_epochs
        return {
            key: int(length) for key in ("total_steps", "T_max") if key in keywords and keywords[key] is None
        }

    @property
    def tensorboard(self) -> SummaryWriter | None:
        """The TensorBoard writer when one of the loggers is TensorBoard (figures and images go there)."""
        return next((lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)


class WeightedMean(Metric):
    """The weighted mean of everything `update` is given, summed on the device with no host sync.

    torchmetrics' `MeanMetric` checks every update for NaN (`.any()`, one device-to-host sync per validation
    step); with the check disabled (`nan_strategy="disable"`, torchmetrics 1.9) it drops the weights. Here a NaN
    simply makes the mean NaN. Sums are fp32 whatever the precision of the values.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor, weight: torch.Tensor | float = 1.0) -> None:
        value = value.detach().float()
        if isinstance(weight, torch.Tensor):
            weight = torch.broadcast_to(weight.detach().float(), value.shape)
            self.total += (value * weight).sum()
            self.weight += weight.sum()
        else:  # a Python number stays a scalar argument: no host-to-device copy
            self.total += value.sum() * weight
            self.weight += value.numel() * weight

    def compute(self) -> torch.Tensor:
        return self.total / self.weight
