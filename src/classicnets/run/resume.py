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

from classicnets.errors import ConfigError
from classicnets.run.checkpoints import CheckpointError, load_checkpoint
from classicnets.run.files import TEST_DIR
from classicnets.run.status import write_status
from classicnets.run.validate import RESUME_MODES

log = logging.getLogger(__name__)


def checkpoint_to_resume(cfg: DictConfig) -> str | None:
    """The checkpoint `trainer.fit` should start from, checked to load before any training starts."""
    explicit, mode = cfg.get("ckpt_path"), cfg.get("resume")
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume={mode}: must be auto, or left out")
    if explicit:
        if mode:
            raise ConfigError("ckpt_path and resume: give either ckpt_path=FILE or resume=auto, not both")
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
    """The checkpoint under `output_dir` that is furthest into training and loads; unreadable ones are skipped,
    loudly.

    Looks in `checkpoints/` and at Lightning's SLURM requeue checkpoints (`hpc_ckpt_*.ckpt`). "Furthest" is the
    highest `global_step`, then the latest write: file times alone are not the order of training once a run
    directory has been copied (`cp -r`, or `rsync` without `-t`), which made a best checkpoint of epoch 26 look
    newer than a `last.ckpt` from the middle of epoch 30.
    """
    candidates = [*(output_dir / "checkpoints").glob("*.ckpt"), *output_dir.glob("hpc_ckpt_*.ckpt")]
    progress: dict[Path, tuple[int, int, str]] = {}
    for path in candidates:
        try:
            step = int(load_checkpoint(path).get("global_step", -1))
        except CheckpointError as error:
            log.warning("resume=auto: skipping %s", error)
            continue
        progress[path] = (step, path.stat().st_mtime_ns, path.name)
    return max(progress, key=progress.__getitem__) if progress else None


def resume_command(output_dir: Path) -> str:
    """The command line that continues the run in `output_dir`: this one, pinned to that directory."""
    overrides: list[str] = []
    if HydraConfig.initialized():
        pinned = ("hydra.run.dir=", "hydra.sweep.dir=", "hydra.sweep.subdir=", "resume=", "ckpt_path=")
        overrides = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(pinned)]
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0].endswith(".py") else "train.py"
    return shlex.join(["python", script, *overrides, f"hydra.run.dir={output_dir}", "resume=auto"])


def eval_command(checkpoint: Path, output_dir: Path, data_dir: str | None = None) -> str:
    """The command that tests `checkpoint` as the run's test phase would have: eval.py, writing into the run's
    `test/` folder (`paths.data_dir` where the run read its data from one)."""
    arguments = ["python", "eval.py", f"ckpt_path={checkpoint}"]
    if data_dir:
        arguments.append(f"paths.data_dir={data_dir}")
    return shlex.join([*arguments, f"hydra.run.dir={output_dir / TEST_DIR}"])


def report_interrupted(
    output_dir: Path,
    received: signal.Signals | None,
    phase: str,
    checkpoint: Path | None = None,
    data_dir: str | None = None,
) -> int:
    """Say what a stopped run kept and the command that carries on, record status `interrupted`, and return the
    exit status a shell expects after that signal (128 + its number).

    `phase` is where it stopped: "setup" (building and reading the data: nothing trained yet), "fit" (training,
    stopped at a step boundary with its state saved in `checkpoint`), "quit" (a second Ctrl-C during training:
    `checkpoint` is the newest one saved before, or None), "test" (training done: `checkpoint` is the one to
    test, and the command tests it with eval.py).
    """
    received = received or signal.SIGTERM
    if phase == "test":
        command = eval_command(checkpoint, output_dir, data_dir)
        message = f"stopped during the test; training had finished, its best checkpoint is {checkpoint}"
        then, extra = "To test it, run", {"checkpoint": str(checkpoint), "finish": command}
    else:
        command = resume_command(output_dir)
        then = (
            "To resume, run" if checkpoint is not None and checkpoint.is_file() else "To start it again, run"
        )
        if phase == "setup":
            message = "stopped while preparing the run (reading the data), before any training"
        elif phase == "quit":
            kept = f"the newest checkpoint is {checkpoint}" if then == "To resume, run" else "none was saved"
            message = f"quit at once, without saving (Ctrl-C twice); {kept}"
        elif then == "To resume, run":
            message = f"training stopped, state saved in {checkpoint}"
        else:
            message = "training stopped before any checkpoint was saved"
        extra = {"checkpoint": str(checkpoint) if checkpoint else None, "resume": command}
    log.error("%s: %s. %s:\n  %s", received.name, message, then, command)
    if rank_zero_only.rank == 0:
        write_status(output_dir, "interrupted", reason=received.name, **extra)
    return 128 + int(received)
