"""One job of a `-m` sweep: it records its outcome, a failed job does not stop the others, a re-run skips
finished jobs, and DDP stays inside its job.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, read_write

from classicnets.errors import UserError
from classicnets.run.console import SWEEP_LOGGER, shown_path
from classicnets.run.devices import launched_rank
from classicnets.run.files import read_metrics
from classicnets.run.status import read_status, write_status

log = logging.getLogger(__name__)
# a sweep's console shows this logger's lines: one per finished job
job_lines = logging.getLogger(SWEEP_LOGGER)

# a re-run of the sweep does not repeat these: `diverged` would diverge again with the same seed
FINISHED = ("completed", "diverged")
# overrides that say how a job runs, not what it runs: a re-run may add or change them and still skip
LAUNCH_OVERRIDES = ("resume=", "launcher=")


def run_job(cfg: DictConfig, train: Callable[[DictConfig], dict[str, float]]) -> dict[str, float] | None:
    """Run `train(cfg)` as one job and record its outcome in `status.json` next to its metrics.

    Under `-m`, a job whose directory already holds a finished run of the same overrides is skipped (its
    metrics are returned), and an exception is recorded and logged instead of raised, so the sweep goes on;
    the job then returns None. A single run raises as usual.
    """
    output_dir = Path(cfg.paths.output_dir)
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    if multirun and is_finished(output_dir, overrides):
        job_lines.info("%s already holds this job's finished run: skipped", shown_path(output_dir))
        return read_metrics(output_dir)
    # the other DDP ranks run this function too; the job's record is rank 0's to keep
    record = write_status if launched_rank() == 0 else _ignore
    record(
        output_dir,
        "running",
        overrides=overrides,
        host=socket.gethostname(),
        pid=os.getpid(),
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
    start = time.monotonic()
    try:
        with _ddp_stays_in_job(output_dir) if multirun else nullcontext():
            metrics = train(cfg)
    except Exception as error:
        status = "diverged" if isinstance(error, FloatingPointError) else "failed"
        # "unknown activation 'swish'" says more than Hydra's "Error in call to target ..." around it
        cause = error.__cause__ if isinstance(error, InstantiationException) and error.__cause__ else error
        record(output_dir, status, f"{type(cause).__name__}: {cause}", wall_time_s=time.monotonic() - start)
        if not multirun:
            raise
        # the sweep's console gets one line; the traceback of an unexpected error goes to the job's log file
        if not isinstance(cause, UserError):  # a UserError's message says it all
            log.info("job %s %s", output_dir, status, exc_info=True)
        job_lines.error(
            "%s: %s (%s: %s); the sweep goes on",
            _job_name(output_dir, overrides),
            status,
            type(cause).__name__,
            cause,
        )
        return None
    # the pipeline may have recorded a more specific ending (e.g. diverged) itself
    if (read_status(output_dir) or {}).get("status") == "running":
        record(output_dir, "completed", wall_time_s=time.monotonic() - start)
    if multirun and launched_rank() == 0:
        ending = (read_status(output_dir) or {}).get("status", "completed")
        shown = _headline(metrics or {}, cfg.get("optimized_metric"))
        job_lines.info(
            "%s: %s in %.0f s  %s", _job_name(output_dir, overrides), ending, time.monotonic() - start, shown
        )
    return metrics


def _job_name(output_dir: Path, overrides: list[str]) -> str:
    return f"{shown_path(output_dir)} [{' '.join(overrides)}]"


def _headline(metrics: dict[str, float], optimized: str | None) -> str:
    """The optimized metric and its test counterpart (`val/acc_best 0.874  test/acc 0.860`)."""
    names = [optimized, f"test/{optimized.split('/')[-1].removesuffix('_best')}"] if optimized else []
    return "  ".join(f"{name} {metrics[name]:.4f}" for name in names if name in metrics)


def is_finished(output_dir: Path, overrides: list[str]) -> bool:
    """Whether `output_dir` holds a finished run of exactly these overrides (a re-run must not repeat it)."""
    status = read_status(output_dir)
    if status is None:
        return False
    if _experiment_overrides(status.get("overrides") or []) != _experiment_overrides(overrides):
        log.warning(
            "%s holds a run of other overrides (%s): it is run again with %s",
            output_dir,
            status.get("overrides"),
            overrides,
        )
        return False
    return status["status"] in FINISHED


def _experiment_overrides(overrides: list[str]) -> list[str]:
    """The overrides that say what a job runs (`LAUNCH_OVERRIDES` only say how)."""
    return [override for override in overrides if not override.startswith(LAUNCH_OVERRIDES)]


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


@contextmanager
def _ddp_stays_in_job(output_dir: Path) -> Iterator[None]:
    """Lightning starts the other DDP ranks by re-running `sys.argv` with `hydra.run.dir` set to Hydra's run
    directory. Under `-m` that would start the whole sweep again, in new directories: make the command this one
    job as a single run, and its run directory this job's directory.

    Afterwards nothing of the job's DDP is left in the process for the next job: its process group is destroyed
    and the variables Lightning set (`LOCAL_RANK`, `MASTER_PORT`, ...) are put back. With `LOCAL_RANK` set, the
    next DDP job took itself for a rank started from outside and waited for ranks that never came; with the old
    group alive, it talked to the first job's finished ranks.
    """
    hydra = HydraConfig.get()
    argv, environment = sys.argv, dict(os.environ)
    sys.argv = [argv[0], *hydra.overrides.task, "hydra.mode=RUN"]
    with read_write(hydra.run):
        hydra.run.dir = str(output_dir)
    try:
        yield
    finally:
        sys.argv = argv
        _end_process_group()
        for name in set(os.environ) - set(environment):
            del os.environ[name]
        os.environ.update(environment)


def _end_process_group() -> None:
    import torch.distributed  # here: a sweep of CPU jobs without DDP never needs it

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
