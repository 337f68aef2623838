"""Where a run continues from: an explicit `ckpt_path`, or with `resume=auto` the newest readable checkpoint of
its own run directory. Also what to tell the user so that re-running resumes."""

from __future__ import annotations

import logging
import shlex
import signal
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from classicnets.run.checkpoints import CheckpointError, load_checkpoint
from classicnets.run.status import write_status

log = logging.getLogger(__name__)

RESUME_MODES = (None, "auto")


def checkpoint_to_resume(cfg: DictConfig) -> str | None:
    """The checkpoint `trainer.fit` should start from, checked to load before any training starts."""
    explicit, mode = cfg.get("ckpt_path"), cfg.get("resume")
    if mode not in RESUME_MODES:
        raise ValueError(f"resume must be one of {RESUME_MODES}, got {mode!r}")
    if explicit:
        if mode:
            raise ValueError("give either ckpt_path=FILE or resume=auto, not both")
        # a truncated or foreign file is refused here, with its name, rather than deep inside Lightning
        load_checkpoint(explicit)
        return str(explicit)
    if mode != "auto":
        return None
    output_dir = Path(cfg.paths.output_dir)
    found = newest_checkpoint(output_dir)
    if found is None:
        log.warning(
            "resume=auto: no checkpoint in %s yet, training from the start (to continue an earlier run, pass "
            "its directory: hydra.run.dir=DIR)",
            output_dir,
        )
        return None
    log.info("resume=auto: continuing from %s", found)
    return str(found)


def newest_checkpoint(output_dir: Path) -> Path | None:
    """The most recently written checkpoint under `output_dir` that loads; unreadable ones are skipped, loudly.

    Looks in `checkpoints/` and at Lightning's SLURM requeue checkpoints (`hpc_ckpt_*.ckpt`).
    """
    candidates = [*(output_dir / "checkpoints").glob("*.ckpt"), *output_dir.glob("hpc_ckpt_*.ckpt")]
    for path in sorted(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True):
        try:
            load_checkpoint(path)
        except CheckpointError as error:
            log.warning("resume=auto: skipping %s", error)
            continue
        return path
    return None


def resume_command(output_dir: Path) -> str:
    """The command line that continues the run in `output_dir`: this one, pinned to that directory."""
    overrides: list[str] = []
    if HydraConfig.initialized():
        pinned = ("hydra.run.dir=", "hydra.sweep.dir=", "hydra.sweep.subdir=", "resume=", "ckpt_path=")
        overrides = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(pinned)]
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0].endswith(".py") else "train.py"
    return shlex.join(["python", script, *overrides, f"hydra.run.dir={output_dir}", "resume=auto"])


def report_interrupted(output_dir: Path, checkpoint: Path, received: signal.Signals | None) -> int:
    """Say where the checkpoint of a stopped run is and how to resume it, record status `interrupted`, and
    return the exit status a shell expects after that signal (128 + its number)."""
    received = received or signal.SIGTERM
    command = resume_command(output_dir)
    log.error(
        "%s: training stopped, state saved in %s. To resume, run:\n  %s", received.name, checkpoint, command
    )
    if rank_zero_only.rank == 0:
        write_status(
            output_dir, "interrupted", reason=received.name, checkpoint=str(checkpoint), resume=command
        )
    return 128 + int(received)
