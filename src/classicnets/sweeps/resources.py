"""Each job of a parallel sweep gets its share of the machine: CPU threads, and a GPU of its own."""

from __future__ import annotations

import atexit
import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from classicnets.run.status import process_alive

log = logging.getLogger(__name__)


class JobResources(Callback):
    """A Hydra callback that gives each job of a parallel sweep its share of the machine before it starts.

    - CPU: `threads_per_job` torch threads (default: the cores this process may use, divided among the
      `jobs_at_once` the launcher runs), so that N jobs at once do not oversubscribe the cores.
    - GPU: with `num_gpus` K > 0, each job process is pinned to one GPU of its own through
      `CUDA_VISIBLE_DEVICES`, set before the job touches CUDA. GPUs are leased per worker process (a file
      under `<sweep dir>/.gpu_leases/`), not by job number: a process that has used a GPU cannot move to
      another one, and with jobs of unequal length "job number modulo K" would put two running jobs on one GPU.
      The GPUs are the ids already in `CUDA_VISIBLE_DEVICES` when the sweep starts, else 0..K-1.

    Single runs are left alone.
    """

    def __init__(
        self, threads_per_job: int | None = None, num_gpus: int = 0, jobs_at_once: int | None = None
    ) -> None:
        self.threads_per_job = threads_per_job
        self.num_gpus = num_gpus
        # resolved here, in the launching process: a job's own config resolves `n_jobs` in its worker, where
        # `${gpu_count:}` counts the one GPU an earlier job of that worker narrowed CUDA_VISIBLE_DEVICES to
        self.jobs_at_once = None if jobs_at_once is None else _parallel_jobs(jobs_at_once)
        # read here, in the launching process: in the workers, the variable is what this callback set
        self.visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = self.visible.split(",") if self.visible else [str(i) for i in range(num_gpus)]
        self.gpu_ids = [i.strip() for i in ids if i.strip()][:num_gpus]

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        jobs_at_once = self.jobs_at_once or _parallel_jobs(int(config.hydra.launcher.get("n_jobs") or 1))
        threads = self.threads_per_job or max(1, len(os.sched_getaffinity(0)) // jobs_at_once)
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


def _parallel_jobs(n_jobs: int) -> int:
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
        if lease.exists() and not _lease_holder_alive(lease):
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


def _lease_holder_alive(lease: Path) -> bool:
    try:
        return process_alive(int(lease.read_text() or 0))
    except (ValueError, FileNotFoundError):
        return False
