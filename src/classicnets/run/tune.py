"""`python train.py tune=lr_find`: Lightning's learning-rate finder on the composed model and data, before (or
instead of) training."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch import seed_everything
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig, open_dict

from classicnets.errors import ConfigError, UserError
from classicnets.run.build import build
from classicnets.run.files import LR_FIND_PLOT
from classicnets.run.hardware import configure as configure_hardware
from classicnets.run.pipeline import train

log = logging.getLogger(__name__)


def tune(cfg: DictConfig) -> dict[str, float]:
    """Find the learning rate; with `tune.apply` train with it (the run's saved config records it), else stop."""
    lr = find_lr(cfg)
    if not cfg.tune.get("apply"):
        return {}
    with open_dict(cfg):
        cfg.optimizer.lr = lr
    log.info("training with the suggested learning rate optimizer.lr=%.3g", lr)
    return train(cfg)


def find_lr(cfg: DictConfig) -> float:
    """Run the finder with the `tune` settings; save its plot in the run directory, print and return the
    suggested learning rate."""
    settings = {key: value for key, value in cfg.tune.items() if key != "apply"}
    accepted = set(inspect.signature(Tuner.lr_find).parameters)
    if unknown := sorted(set(settings) - accepted):
        raise ConfigError(f"tune.{unknown[0]} is not a setting of Lightning's learning-rate finder")
    seed_everything(cfg.seed, workers=True)
    datamodule, task = build(cfg)
    task.schedule = None  # the finder ramps the learning rate itself
    output_dir = Path(cfg.paths.output_dir)
    configure_hardware(cfg)  # trainer.precision=auto: the precision the training would use
    # no loggers, checkpoints or callbacks, and the step count alone bounds the search (not max_epochs)
    trainer = instantiate(
        cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False, max_epochs=-1, max_steps=-1
    )
    finder = Tuner(trainer).lr_find(task, datamodule=datamodule, update_attr=False, **settings)
    lr = finder.suggestion()
    steps = len(finder.results.get("lr", []))
    if trainer.is_global_zero:
        plot = output_dir / LR_FIND_PLOT
        output_dir.mkdir(parents=True, exist_ok=True)
        figure = finder.plot(suggest=lr is not None, show=False)
        suggested = f"suggested optimizer.lr={lr:.3g}" if lr is not None else "no suggestion"
        figure.axes[0].set_title(f"learning-rate finder, {steps} steps: {suggested}", fontsize=10)
        figure.savefig(plot, dpi=110, bbox_inches="tight")
        log.info("learning-rate finder: %d steps, loss against learning rate in %s", steps, plot)
    if lr is None:
        raise UserError(
            f"the learning-rate finder could not suggest a learning rate from {steps} steps (it needs more than "
            f"10 after the loss is smoothed): raise tune.num_training, or tune.early_stop_threshold, or "
            f"lower tune.max_lr (it stopped at {settings.get('max_lr')})"
        )
    print(f"suggested learning rate: optimizer.lr={lr:.3g}")
    return lr
