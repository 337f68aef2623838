"""Config → objects: the only place configs become a data module, a network, a task and a trainer."""

from __future__ import annotations

import os
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import Callback, ProgressBar
from omegaconf import DictConfig, OmegaConf, open_dict

from classicnets.run.checkpoints import data_state
from classicnets.tasks import Task

# Keys in a scheduler config that tell Lightning how to step it rather than configure the scheduler itself.
SCHEDULER_SETTINGS = ("interval", "monitor")


def build(cfg: DictConfig, checkpoint: dict[str, Any] | None = None) -> tuple[LightningDataModule, Task]:
    """Instantiate the data module, then the model with the sizes the data decides, then the task around it.

    A checkpoint's data state (class names, vocabulary) is restored before `setup`, so that the data are encoded
    and the model sized as in the run that wrote it.
    """
    datamodule = instantiate(cfg.data)
    if checkpoint is not None and (state := data_state(checkpoint)):
        datamodule.load_state_dict(state)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:  # other DDP ranks start after rank 0 has the files
        datamodule.prepare_data()
    datamodule.setup("fit")
    with open_dict(cfg):
        cfg.sizes = datamodule.sizes
    net = instantiate(cfg.model)
    if cfg.get("channels_last"):
        # NHWC weights make every convolution run NHWC (inputs are converted inside the first one)
        net = net.to(memory_format=torch.channels_last)
    if cfg.get("compile"):
        # compiled in place: the module, its parameters and its state_dict keys stay as they are (checkpoints,
        # eval and predict do not see it); the first steps, and the first evaluation, pay for the compilation
        net.compile(mode=cfg.get("compile_mode"))
    task = instantiate(
        cfg.task, net=net, optimizer=instantiate(cfg.optimizer), **_scheduler(cfg.get("scheduler"))
    )
    return datamodule, task


def _scheduler(cfg: DictConfig | None) -> dict[str, Any]:
    if not cfg:
        return {}
    settings = OmegaConf.to_container(cfg, resolve=True)
    lightning_keys = {f"scheduler_{key}": settings.pop(key) for key in SCHEDULER_SETTINGS if key in settings}
    return {"scheduler": instantiate(settings), **lightning_keys}


def make_trainer(cfg: DictConfig, run_callbacks: list[Callback]) -> Trainer:
    """The configured trainer, with the configured callbacks and loggers and the run layer's own callbacks."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if not cfg.trainer.get("enable_progress_bar", True):  # a configured bar would contradict the switch
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return instantiate(cfg.trainer, callbacks=callbacks + run_callbacks, logger=loggers or False)
