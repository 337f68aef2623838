"""From a composed config to a trained, tested and evaluated model."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from classicnets.run.build import build, make_trainer
from classicnets.run.callbacks import (
    DivergedError,
    FiniteLoss,
    GracefulStop,
    RngStates,
    RunRecordInCheckpoint,
)
from classicnets.run.checkpoints import load_checkpoint, saved_config
from classicnets.run.devices import skip_futile_nvml_probe
from classicnets.run.files import last_checkpoint, write_metrics
from classicnets.run.hardware import configure as configure_hardware
from classicnets.run.output_dir import check_output_dir
from classicnets.run.resume import checkpoint_to_resume, report_interrupted
from classicnets.run.status import write_status
from classicnets.tasks import Task

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; write `metrics.json` into the run directory and return the metrics."""
    skip_futile_nvml_probe()
    output_dir = Path(cfg.paths.output_dir)
    seed_everything(cfg.seed, workers=True)
    configure_hardware(cfg)  # trainer.precision=auto, cuDNN's autotuner, TF32
    ckpt_path = checkpoint_to_resume(cfg)
    datamodule, task = build(cfg)
    check_output_dir(output_dir, sum(p.numel() * p.element_size() for p in task.parameters()))
    config = OmegaConf.to_container(cfg, resolve=True)
    stop = GracefulStop(last_checkpoint(output_dir))
    safety = [RngStates(), FiniteLoss(cfg.get("nan_policy", "stop")), stop]
    trainer = make_trainer(cfg, [RunRecordInCheckpoint(config), *safety])
    _log_hyperparameters(trainer, config, datamodule, task)

    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics = final_metrics(trainer.callback_metrics)
        if cfg.get("test", True):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            metrics.update(final_metrics(trainer.callback_metrics))
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
        log.info("final metrics written to %s", write_metrics(output_dir, metrics))
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Rebuild a run from the config saved in `cfg.ckpt_path` and test it; `cfg.data` and `cfg.task` keys override
    the saved ones."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    run = OmegaConf.create(saved_config(checkpoint))
    if "data_dir" in run.data:
        run.data.data_dir = cfg.paths.data_dir
    run.data = OmegaConf.merge(run.data, cfg.get("data") or {})
    run.task = OmegaConf.merge(run.task, cfg.get("task") or {})
    datamodule, task = build(run, checkpoint)
    task.load_state_dict(checkpoint["state_dict"])
    configure_hardware(cfg)
    trainer = make_trainer(cfg, [])
    trainer.test(task, datamodule=datamodule)
    metrics = final_metrics(trainer.callback_metrics)
    if trainer.is_global_zero:
        write_metrics(cfg.paths.output_dir, metrics)
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


def final_metrics(logged: dict[str, Any]) -> dict[str, float]:
    """The run's final values as plain floats: Lightning's `x_step`/`x_epoch` twins of `x` and non-finite values
    (a metric never computed) left out."""
    values = {
        key: float(value)
        for key, value in logged.items()
        if isinstance(value, (torch.Tensor, float, int)) and not key.endswith(("_step", "_epoch"))
    }
    return {key: value for key, value in values.items() if math.isfinite(value)}
