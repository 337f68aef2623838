"""From a composed config to a trained, tested and evaluated model: the only place configs become objects."""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch import LightningDataModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from classicnets.callbacks import (
    CHECKPOINT_KEY,
    ConfigInCheckpoint,
    DivergedError,
    FiniteLoss,
    GracefulStop,
    RngStates,
)
from classicnets.checkpoints import load_checkpoint
from classicnets.output_dir import check_output_dir
from classicnets.resume import checkpoint_to_resume, report_interrupted
from classicnets.run_status import write_status
from classicnets.tasks import Task

log = logging.getLogger(__name__)

# Keys in a scheduler config that tell Lightning how to step it rather than configure the scheduler itself.
SCHEDULER_SETTINGS = ("interval", "monitor")
NVML_CUDA_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def build(cfg: DictConfig, checkpoint: dict[str, Any] | None = None) -> tuple[LightningDataModule, Task]:
    """Instantiate the data module, then the model with the sizes the data decides, then the task around it.

    A checkpoint's data state (class names, vocabulary) is restored before `setup`, so that the data are encoded
    and the model sized as in the run that wrote it.
    """
    datamodule = instantiate(cfg.data)
    if checkpoint is not None and (state := checkpoint.get(type(datamodule).__qualname__)) is not None:
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


def _trainer(cfg: DictConfig, extra_callbacks: list) -> Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if not cfg.trainer.get("enable_progress_bar", True):  # a configured bar would contradict the switch
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return instantiate(cfg.trainer, callbacks=callbacks + extra_callbacks, logger=loggers or False)


def skip_futile_nvml_probe() -> None:
    """Drops Lightning's `PYTORCH_NVML_BASED_CUDA_CHECK=1` where the NVML library is missing.

    Lightning sets it so that `torch.cuda.is_available()` asks NVML, which does not initialise CUDA before
    processes fork. Without NVML (no NVIDIA driver) torch falls back to the CUDA runtime's answer anyway, after
    failing to load the library again on every call, and torch's optimizers make that call on every step: about
    0.1 ms, half a per cent of a LeNet-5 step on a CPU. Where it is dropped, the answer is the same without it.
    """
    if os.environ.get(NVML_CUDA_CHECK) != "1":
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ[NVML_CUDA_CHECK]


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; write `metrics.json` into the run directory and return the metrics."""
    skip_futile_nvml_probe()
    output_dir = Path(cfg.paths.output_dir)
    seed_everything(cfg.seed, workers=True)
    ckpt_path = checkpoint_to_resume(cfg)
    datamodule, task = build(cfg)
    check_output_dir(output_dir, sum(p.numel() * p.element_size() for p in task.parameters()))
    config = OmegaConf.to_container(cfg, resolve=True)
    stop = GracefulStop(output_dir / "checkpoints" / "last.ckpt")
    safety = [RngStates(), FiniteLoss(cfg.get("nan_policy", "stop")), stop]
    trainer = _trainer(cfg, [ConfigInCheckpoint(config), *safety])
    _log_hyperparameters(trainer, config, datamodule, task)

    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics = _finite(trainer.callback_metrics)
        if cfg.get("test", True):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            metrics.update(_finite(trainer.callback_metrics))
            if best:
                log.info("tested the best checkpoint %s", best)
    except DivergedError as error:
        log.error("diverged: %s", error)
        if trainer.is_global_zero:
            write_status(output_dir, "diverged", reason=str(error))
        return {}
    except SIGTERMException:  # during the test too: Lightning's SystemExit would otherwise exit with status 0
        raise SystemExit(report_interrupted(output_dir, stop.checkpoint_path, stop.received)) from None
    if trainer.is_global_zero:
        _write_metrics(Path(cfg.paths.output_dir), metrics)
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Rebuild a run from the config saved in `cfg.ckpt_path` and test it; `cfg.data` and `cfg.task` keys override
    the saved ones."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    run = OmegaConf.create(checkpoint[CHECKPOINT_KEY]["config"])
    if "data_dir" in run.data:
        run.data.data_dir = cfg.paths.data_dir
    run.data = OmegaConf.merge(run.data, cfg.get("data") or {})
    run.task = OmegaConf.merge(run.task, cfg.get("task") or {})
    datamodule, task = build(run, checkpoint)
    task.load_state_dict(checkpoint["state_dict"])
    trainer = _trainer(cfg, [])
    trainer.test(task, datamodule=datamodule)
    metrics = _finite(trainer.callback_metrics)
    if trainer.is_global_zero:
        _write_metrics(Path(cfg.paths.output_dir), metrics)
        print(json.dumps(metrics, indent=2))
    return metrics


def _log_hyperparameters(trainer: Trainer, config: dict, datamodule: LightningDataModule, task: Task) -> None:
    params = {
        key: value
        for key, value in _flatten(config).items()
        if not key.startswith(("hydra.", "paths.", "callbacks.", "logger."))
    }
    params["data.source"] = getattr(datamodule, "source_used", "full")
    params["model.parameters"] = sum(p.numel() for p in task.net.parameters())
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            # declaring the summary metrics here is what makes TensorBoard's HPARAMS tab show them per run
            logger.log_hyperparams(params, metrics={name: 0.0 for name in task.summary_metrics})
        else:
            logger.log_hyperparams(params)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    """Final values only: `x_step`/`x_epoch` are Lightning's twins of `x`."""
    values = {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (torch.Tensor, float, int)) and not key.endswith(("_step", "_epoch"))
    }
    return {key: value for key, value in values.items() if math.isfinite(value)}


def _write_metrics(output_dir: Path, metrics: dict[str, float]) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "metrics.json"
    path.write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")
    log.info("final metrics written to %s", path)
