"""From a composed config to a trained, tested and evaluated model."""

from __future__ import annotations

import logging
import math
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch import LightningDataModule, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from classicnets.errors import ConfigError
from classicnets.run import console
from classicnets.run.build import build, make_trainer
from classicnets.run.callbacks import (
    DivergedError,
    FiniteLoss,
    GracefulStop,
    RngStates,
    RunRecordInCheckpoint,
    SavedWeights,
    progress_bar,
)
from classicnets.run.checkpoints import (
    check_weights_fit,
    describe_model,
    load_checkpoint,
    saved_config,
    saved_step,
)
from classicnets.run.devices import skip_futile_nvml_probe
from classicnets.run.files import METRICS_FILE, last_checkpoint, write_metrics
from classicnets.run.hardware import configure as configure_hardware
from classicnets.run.output_dir import check_output_dir, claim_run_dir
from classicnets.run.resume import checkpoint_to_resume, newest_checkpoint, report_interrupted, resume_command
from classicnets.run.status import write_status
from classicnets.run.trackers import finish_runs, record_outcome
from classicnets.run.validate import check_config
from classicnets.tasks import Task

log = logging.getLogger(__name__)

# config groups eval.py takes from the checkpoint: an override of them would be ignored
REBUILT_FROM_CHECKPOINT = ("model", "optimizer", "scheduler", "regularization", "experiment")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; write `metrics.json` into the run directory and return the metrics.

    A Ctrl-C or SIGTERM in any phase ends with status `interrupted`, the command that carries on, and exit
    status 128 + signal (`report_interrupted`).
    """
    check_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    if not _in_sweep():  # a sweep decides per job whether its directory is reused (sweeps/jobs.py)
        claim_run_dir(output_dir, cfg.get("resume"), cfg.get("ckpt_path"), bool(cfg.get("overwrite")))
    skip_futile_nvml_probe()
    seed_everything(cfg.seed, workers=True, verbose=False)  # the header says the seed
    precision = configure_hardware(cfg)  # trainer.precision=auto, cuDNN's autotuner, TF32
    ckpt_path = checkpoint_to_resume(cfg)
    stop = GracefulStop(last_checkpoint(output_dir))
    phase, best = "setup", ""
    trainer: Trainer | None = None

    def interrupted(received: signal.Signals | None) -> SystemExit:
        checkpoint = {"test": Path(best or stop.checkpoint_path), "quit": newest_checkpoint(output_dir)}
        data_dir = cfg.paths.data_dir if "data_dir" in cfg.data else None
        code = report_interrupted(
            output_dir, received, phase, checkpoint.get(phase, stop.checkpoint_path), data_dir
        )
        return SystemExit(code)

    try:
        datamodule, task = build(cfg)
        config = OmegaConf.to_container(cfg, resolve=True)
        if ckpt_path:  # another model's checkpoint is named as such, not as Lightning's size mismatches
            check_weights_fit(task.state_dict(), load_checkpoint(ckpt_path), ckpt_path, config)
        check_output_dir(output_dir, sum(p.numel() * p.element_size() for p in task.parameters()))
        safety = [RngStates(), FiniteLoss(cfg.get("nan_policy", "stop")), stop]
        saved = SavedWeights()
        trainer = make_trainer(cfg, [RunRecordInCheckpoint(config), saved, *safety])
        _log_hyperparameters(trainer, config, datamodule, task)
        if trainer.is_global_zero:
            _run_header(cfg, trainer, datamodule, task, output_dir, precision)
        phase = "fit"
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics = final_metrics(trainer.callback_metrics)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if cfg.get("test", True):
            phase = "test"
            # the best checkpoint is read back unless it provably is the model in memory (the last epoch was
            # the best and nothing changed since); the test metrics go into the closing block only
            reread = best and not _holds_checkpoint(trainer, task, saved, best)
            ckpt = best if reread else None
            trainer.test(task, datamodule=datamodule, ckpt_path=ckpt, weights_only=True, verbose=False)
            metrics.update(final_metrics(trainer.callback_metrics))
        record_outcome(trainer, metrics, {"best": best, "last": last_checkpoint(output_dir)})
    except DivergedError as error:
        log.error("diverged: %s", error)
        if trainer.is_global_zero:
            write_status(output_dir, "diverged", reason=str(error))
        return {}
    except SIGTERMException:  # Lightning's SystemExit would otherwise exit with status 0
        raise interrupted(stop.received) from None
    except KeyboardInterrupt:  # outside Lightning's loops, where Python's own Ctrl-C handler is in place
        raise interrupted(signal.SIGINT) from None
    except SystemExit:
        if not stop.quit:
            raise
        # a second Ctrl-C: Lightning turned the KeyboardInterrupt into exit status 1
        phase = "quit" if phase == "fit" else phase
        raise interrupted(signal.SIGINT) from None
    finally:
        if trainer is not None:  # experiment trackers close their runs, marked failed on an exception
            finish_runs(trainer.loggers, failed=sys.exc_info()[0] is not None)
    if trainer.is_global_zero:
        write_metrics(output_dir, metrics)
        _closing_block(trainer, datamodule, metrics, best, output_dir, tested=cfg.get("test", True))
    return metrics


def _holds_checkpoint(trainer: Trainer, task: Task, saved: SavedWeights, path: str) -> bool:
    # every process takes rank zero's decision: they test together
    return trainer.strategy.broadcast(saved.holds(task, saved_step(path)))


def _choice(group: str) -> str | None:
    """The option this run chose in a config group (`model=lenet5` → "lenet5"), when Hydra composed it."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def _run_header(
    cfg: DictConfig,
    trainer: Trainer,
    datamodule: LightningDataModule,
    task: Task,
    output_dir: Path,
    precision: str,
) -> None:
    model, choice = type(task.net).__name__, _choice("model")
    device = console.device_name(trainer.strategy.root_device)
    if trainer.num_devices * trainer.num_nodes > 1:
        device += (
            f" × {trainer.num_devices * trainer.num_nodes} processes ({type(trainer.strategy).__name__})"
        )
    console.run_header(
        model=f"{model} ({choice})" if choice and choice != model.lower() else model,
        parameters=sum(p.numel() for p in task.net.parameters()),
        data=console.data_description(datamodule, _choice("data")),
        device=device,
        precision=precision,
        seed=cfg.seed,
        output_dir=output_dir,
    )


def _closing_block(
    trainer: Trainer,
    datamodule: LightningDataModule,
    metrics: dict[str, float],
    best: str,
    output_dir: Path,
    tested: bool,
) -> None:
    rows = {}
    if best:
        rows["best checkpoint"] = console.shown_path(best) + (" (tested)" if tested else "")
    rows["metrics"] = console.shown_path(output_dir / METRICS_FILE)
    commands = {}
    if any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers):
        commands[f"tensorboard --logdir {console.shown_path(output_dir)}"] = (
            "the curves, images and hyperparameters"
        )
    if best:
        ckpt = f"ckpt_path={console.shown_path(best)}"
        commands[console.command("eval.py", ckpt)] = "test it again, or on other data (data.<key>=…)"
        images = (getattr(datamodule, "sizes", None) or {}).get("image_size")
        inputs = "an image or a folder of images" if images else "a text file, one input a line"
        commands[console.command("predict.py", ckpt, "input=PATH")] = f"PATH: {inputs}"
    commands[resume_command(Path(console.shown_path(output_dir)))] = (
        "train on: with a larger trainer.max_epochs"
    )
    console.closing_block(metrics, rows, commands)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Rebuild a run from the config saved in `cfg.ckpt_path` and test it; `cfg.data` and `cfg.task` keys override
    the saved ones."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    run = OmegaConf.create(saved_config(checkpoint))
    if ignored := [key for key in REBUILT_FROM_CHECKPOINT if key in cfg]:
        held = describe_model(saved_config(checkpoint))
        raise ConfigError(
            f"{', '.join(ignored)}: eval.py rebuilds the run the checkpoint holds ({held}); only data.<key>=… "
            "and task.<key>=… change it. Drop the override, or evaluate a checkpoint of that model."
        )
    if "data_dir" in run.data:
        run.data.data_dir = cfg.paths.data_dir
    run.data = OmegaConf.merge(run.data, cfg.get("data") or {})
    run.task = OmegaConf.merge(run.task, cfg.get("task") or {})
    check_config(run, only=("data.",))
    datamodule, task = build(run, checkpoint)
    check_weights_fit(task.state_dict(), checkpoint, cfg.ckpt_path, OmegaConf.to_container(run, resolve=True))
    task.load_state_dict(checkpoint["state_dict"])
    # the progress of train.py: a bar on a terminal, nothing in a file (the closing block has the results)
    stop = GracefulStop()
    shown = [progress_bar()] if cfg.trainer.get("enable_progress_bar", True) else []
    precision = configure_hardware(cfg)
    trainer = make_trainer(cfg, [stop, *shown])
    output_dir = Path(cfg.paths.output_dir)
    if trainer.is_global_zero:
        console.run_header(
            model=f"{type(task.net).__name__} from {console.shown_path(cfg.ckpt_path)}",
            parameters=sum(p.numel() for p in task.net.parameters()),
            data=console.data_description(datamodule, type(datamodule).__name__),
            device=console.device_name(trainer.strategy.root_device),
            precision=precision,
            seed=None,
            output_dir=output_dir,
        )
    try:
        trainer.test(task, datamodule=datamodule, verbose=False)
    except SystemExit as stopped:
        if isinstance(stopped, SIGTERMException) or stop.quit:  # else not a signal's doing
            received = stop.received or signal.SIGTERM
            log.error("%s: the evaluation stopped; no metrics were written", received.name)
            raise SystemExit(128 + int(received)) from None
        raise
    metrics = final_metrics(trainer.callback_metrics)
    if trainer.is_global_zero:
        written = write_metrics(output_dir, metrics)
        console.closing_block(metrics, {"metrics": console.shown_path(written)}, {})
    return metrics


def _in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


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
