"""Config → objects: the only place configs become a data module, a network, a task and a trainer."""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch
from hydra.utils import get_object, instantiate
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import Callback, ProgressBar
from omegaconf import DictConfig, ListConfig, open_dict

from classicnets.errors import ConfigError
from classicnets.run.checkpoints import data_state
from classicnets.tasks import Task

# the groups whose `_target_` trees become objects here
BUILT_GROUPS = ("data", "model", "task", "optimizer", "scheduler", "trainer", "callbacks", "logger")


def build(cfg: DictConfig, checkpoint: dict[str, Any] | None = None) -> tuple[LightningDataModule, Task]:
    """Instantiate the data module, then the model with the sizes the data decides, then the task around it.

    A checkpoint's data state (class names, vocabulary) is restored before `setup`, so that the data are encoded
    and the model sized as in the run that wrote it; the data module is then set up for the test alone, which
    lets those that can (image folders, text files) leave the training data unread: it may have moved since.
    """
    check_parameters(cfg)
    datamodule = instantiate(cfg.data)
    if checkpoint is not None and (state := data_state(checkpoint)):
        datamodule.load_state_dict(state)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:  # other DDP ranks start after rank 0 has the files
        datamodule.prepare_data()
    datamodule.setup("fit" if checkpoint is None else "test")
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
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    task = instantiate(cfg.task, net=net, optimizer=instantiate(cfg.optimizer), scheduler=scheduler)
    return datamodule, task


def check_parameters(cfg: DictConfig) -> None:
    """Every key of every `_target_` node must be a parameter of its target, or the value would never take
    effect (or fail deep inside Hydra): a regularization option sets `model.dropout` whether or not the chosen
    model has dropout. Checked before any data is read."""
    for group in BUILT_GROUPS:
        if cfg.get(group):
            _check_node(cfg[group], group)


def _check_node(node: Any, path: str) -> None:
    if isinstance(node, ListConfig):
        for i, item in enumerate(node):
            _check_node(item, f"{path}[{i}]")
        return
    if not isinstance(node, DictConfig):
        return
    target = node.get("_target_")
    if isinstance(target, str):
        accepted = _parameters(target)
        unknown = (
            [key for key in node if not str(key).startswith("_") and key not in accepted]
            if accepted is not None
            else []
        )
        if unknown:
            key = unknown[0]
            raise ConfigError(
                f"{path}.{key} is set, but {target} has no parameter {key!r} (it takes "
                f"{', '.join(sorted(accepted)) or 'no keywords'}). Remove the key, or choose a component that has "
                f"it; a regularization option sets such keys (this run's: {_regularization_choice()})."
            )
    for key in node:
        _check_node(node._get_node(key), f"{path}.{key}")


def _parameters(target: str) -> set[str] | None:
    """The keyword parameters `target` accepts; None when it takes any (`**kwargs` not passed on to a known
    base). classicnets' own classes pass their `**kwargs` to their base class, whose parameters count too."""
    try:
        obj = get_object(target)
    except Exception:  # an unimportable target fails in `instantiate` with Hydra's own message
        return None
    owners = [k for k in obj.__mro__ if "__init__" in vars(k)] if inspect.isclass(obj) else [obj]
    accepted: set[str] = set()
    for owner in owners:
        function = owner.__init__ if inspect.isclass(owner) else owner
        parameters = inspect.signature(function).parameters.values()
        accepted |= {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - {"self"}
        forwards = any(p.kind == p.VAR_KEYWORD for p in parameters)
        if not forwards:
            return accepted
        if not (inspect.isclass(owner) and owner.__module__.startswith("classicnets.")):
            return None
    return None


def _regularization_choice() -> str:
    """This run's regularization options, as far as Hydra recorded them (it records no list of options as a
    choice: the command line's override says it)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "see regularization="
    hydra = HydraConfig.get()
    given = [o for o in hydra.overrides.task if o.lstrip("+~").startswith("regularization=")]
    return given[-1] if given else f"regularization={hydra.runtime.choices.get('regularization', '[...]')}"


def make_trainer(cfg: DictConfig, run_callbacks: list[Callback]) -> Trainer:
    """The configured trainer, with the configured callbacks and loggers and the run layer's own callbacks."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if not cfg.trainer.get("enable_progress_bar", True):  # a configured bar would contradict the switch
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return instantiate(cfg.trainer, callbacks=callbacks + run_callbacks, logger=loggers or False)
