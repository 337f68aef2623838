"""What experiment trackers (MLflow, W&B, any logger that keeps runs outside the run directory) get beyond the
hyperparameters and what the task logs: the run's final metrics and checkpoint files, and the end of the run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

# loggers whose files are in the run directory, beside metrics.json and the checkpoints
IN_RUN_DIRECTORY = (TensorBoardLogger, CSVLogger)


def record_outcome(trainer: Trainer, metrics: dict[str, float], checkpoints: dict[str, Path | str]) -> None:
    """The final metrics (what metrics.json holds) as `final/<name>` at the last step, and the checkpoint files as
    the hyperparameters `checkpoint.<which>`, for every logger outside the run directory."""
    files = {
        f"checkpoint.{which}": str(path)
        for which, path in checkpoints.items()
        if path and Path(path).is_file()
    }
    for logger in trainer.loggers:
        if isinstance(logger, IN_RUN_DIRECTORY):
            continue
        logger.log_metrics(
            {f"final/{name}": value for name, value in metrics.items()}, step=trainer.global_step
        )
        if files:
            logger.log_hyperparams(files)
        logger.save()


def finish_runs(loggers: Sequence[Logger], failed: bool = False) -> None:
    """End the W&B run: its logger's `finalize` leaves it open, and the next job of a sweep in this process would
    log into it."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish(exit_code=1 if failed else 0)
