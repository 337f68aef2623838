"""What experiment trackers (MLflow, W&B, any logger that keeps runs outside the run directory) get beyond the
hyperparameters and what the task logs: the run's final metrics and checkpoint files, and the end of the run."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch import loggers as lightning_loggers
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


class MLFlowLogger(lightning_loggers.MLFlowLogger):
    """Lightning's MLflow logger, which opens an SQLite store, and creates its experiment, holding a lock on it:
    MLflow creates a new store's tables with migrations that fail when two processes run them at once, as the
    jobs of a parallel sweep starting together would (`duplicate column name`, `table _alembic_tmp_metrics
    already exists`), and two processes may both find the experiment missing."""

    def __init__(self, *args: Any, tracking_uri: str | None = None, **kwargs: Any) -> None:
        if tracking_uri is not None:  # else Lightning's default ($MLFLOW_TRACKING_URI, or a folder)
            kwargs["tracking_uri"] = tracking_uri
        with _locked(tracking_uri or ""):
            super().__init__(*args, **kwargs)

    @property
    def experiment(self) -> Any:
        if self._initialized:
            return super().experiment
        with _locked(self._tracking_uri):
            return super().experiment


@contextmanager
def _locked(tracking_uri: str) -> Iterator[None]:
    """An exclusive lock on `<store>.lock` beside an SQLite store (other stores, and systems without `fcntl`,
    go unlocked)."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is None or not tracking_uri.startswith("sqlite:///"):
        yield
        return
    store = Path(tracking_uri.removeprefix("sqlite:///"))
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(store.with_name(store.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
