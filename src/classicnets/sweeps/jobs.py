"""What makes `-m` sweeps reliable: each job records its outcome, a failed job does not stop the others, a
re-run skips finished jobs, DDP stays inside its job, and parallel jobs share the cores and GPUs.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, read_write

from classicnets.run_status import read_status, write_status

log = logging.getLogger(__name__)

# a re-run of the sweep does not repeat these: `diverged` would diverge again with the same seed
FINISHED = ("completed", "diverged")
GPU_COUNT_VARIABLE = "CLASSICNETS_NUM_GPUS"
# overrides that say how a job runs, not what it runs: a re-run may add or change them and still skip
HOW_NOT_WHAT = ("resume=", "launcher=")


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
        log.info("%s already holds this job's finished run: skipped", output_dir)
        return _read_metrics(output_dir)
    # the other DDP ranks run this function too; the job's record is rank 0's to keep
    record = write_status if _global_rank() == 0 else _ignore
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
        log.exception("job %s %s; the sweep goes on", output_dir, status)
        return None
    # the pipeline may have recorded a more specific ending (e.g. diverged) itself
    if (read_status(output_dir) or {}).get("status") == "running":
        record(output_dir, "completed", wall_time_s=time.monotonic() - start)
    return metrics


def is_finished(output_dir: Path, overrides: list[str]) -> bool:
    """Whether `output_dir` holds a finished run of exactly these overrides (a re-run must not repeat it)."""
    status = read_status(output_dir)
    if status is None:
        return False
    if _what(status.get("overrides") or []) != _what(overrides):
        log.warning(
            "%s holds a run of other overrides (%s): it is run again with %s",
            output_dir,
            status.get("overrides"),
            overrides,
        )
        return False
    return status["status"] in FINISHED


def _what(overrides: list[str]) -> list[str]:
    return [override for override in overrides if not override.startswith(HOW_NOT_WHAT)]


def _read_metrics(output_dir: Path) -> dict[str, float]:
    path = output_dir / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


def _global_rank() -> int:
    # the variables Lightning's launchers (subprocess script, torchrun, SLURM) give the other processes
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


@contextmanager
def _ddp_stays_in_job(output_dir: Path) -> Iterator[None]:
    """Lightning starts the other DDP ranks by re-running `sys.argv` with `hydra.run.dir` set to Hydra's run
    directory. Under `-m` that would start the whole sweep again, in new directories: make the command this one
    job as a single run, and its run directory this job's directory.
    """
    hydra = HydraConfig.get()
    argv = sys.argv
    sys.argv = [argv[0], *hydra.overrides.task, "hydra.mode=RUN"]
    with read_write(hydra.run):
        hydra.run.dir = str(output_dir)
    try:
        yield
    finally:
        sys.argv = argv


class JobResources(Callback):
    """A Hydra callback that gives each job of a parallel sweep its share of the machine before it starts.

    - CPU: `threads_per_job` torch threads (default: the cores this process may use, divided among the
      launcher's `n_jobs`), so that N jobs at once do not oversubscribe the cores.
    - GPU: with `num_gpus` K > 0, each job process is pinned to one GPU of its own through
      `CUDA_VISIBLE_DEVICES`, set before the job touches CUDA. GPUs are leased per worker process (a file
      under `<sweep dir>/.gpu_leases/`), not by job number: a process that has used a GPU cannot move to
      another one, and with jobs of unequal length "job number modulo K" would put two running jobs on one GPU.
      The GPUs are the ids already in `CUDA_VISIBLE_DEVICES` when the sweep starts, else 0..K-1.

    Single runs are left alone.
    """

    def __init__(self, threads_per_job: int | None = None, num_gpus: int = 0) -> None:
        self.threads_per_job = threads_per_job
        self.num_gpus = num_gpus
        # read here, in the launching process: in the workers, the variable is what this callback set
        self.visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = self.visible.split(",") if self.visible else [str(i) for i in range(num_gpus)]
        self.gpu_ids = [i.strip() for i in ids if i.strip()][:num_gpus]

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        threads = self.threads_per_job or max(1, len(os.sched_getaffinity(0)) // _parallel_jobs(config))
        os.environ["OMP_NUM_THREADS"] = str(threads)  # for the processes the job starts (DDP ranks)
        import torch

        torch.set_num_threads(threads)
        if len(self.gpu_ids) < self.num_gpus:
            raise ValueError(
                f"num_gpus={self.num_gpus}, but CUDA_VISIBLE_DEVICES={self.visible!r} lists only "
                f"{len(self.gpu_ids)} GPUs"
            )
        if self.gpu_ids:
            os.environ["CUDA_VISIBLE_DEVICES"] = _lease_gpu(Path(config.hydra.sweep.dir), self.gpu_ids)
        log.info(
            "job %s: %d CPU threads, CUDA_VISIBLE_DEVICES=%s",
            config.hydra.job.num,
            threads,
            os.environ.get("CUDA_VISIBLE_DEVICES"),
        )


def _parallel_jobs(config: DictConfig) -> int:
    n_jobs = int(config.hydra.launcher.get("n_jobs") or 1)
    return n_jobs if n_jobs > 0 else len(os.sched_getaffinity(0))  # joblib's -1: one job per core


# the GPU this process holds for the rest of its life (CUDA cannot move once started)
_leased_gpu: str | None = None


def _lease_gpu(sweep_dir: Path, gpu_ids: list[str]) -> str:
    global _leased_gpu
    if _leased_gpu is not None:
        return _leased_gpu
    leases = sweep_dir / ".gpu_leases"
    leases.mkdir(parents=True, exist_ok=True)
    for gpu in gpu_ids:
        lease = leases / f"gpu{gpu}"
        if lease.exists() and not _process_alive(lease):
            lease.unlink(missing_ok=True)  # left by a worker of an earlier, interrupted run
        try:
            with lease.open("x") as file:
                file.write(str(os.getpid()))
        except FileExistsError:
            continue
        atexit.register(lease.unlink, missing_ok=True)
        _leased_gpu = gpu
        return gpu
    raise RuntimeError(
        f"all {len(gpu_ids)} GPUs ({', '.join(gpu_ids)}) are held by other jobs of this sweep "
        f"(see {leases}): run at most one job per GPU (hydra.launcher.n_jobs <= num_gpus)"
    )


def _process_alive(lease: Path) -> bool:
    try:
        os.kill(int(lease.read_text() or 0), 0)
    except (ProcessLookupError, ValueError, FileNotFoundError):
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def gpu_count() -> int:
    """GPUs a GPU sweep spreads over: $CLASSICNETS_NUM_GPUS, else the ids in CUDA_VISIBLE_DEVICES, else the
    GPUs `nvidia-smi` lists. Asked without importing torch: CUDA must not start in the launching process.
    """
    if GPU_COUNT_VARIABLE in os.environ:
        return int(os.environ[GPU_COUNT_VARIABLE])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([i for i in visible.split(",") if i.strip()])
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return sum(line.startswith("GPU ") for line in listing.splitlines())
