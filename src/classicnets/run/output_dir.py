"""A run's output folder is checked before training: a run that cannot save its checkpoints must not start, and
a folder that holds an earlier run is not silently reused."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from classicnets.errors import UserError
from classicnets.run.devices import launched_rank
from classicnets.run.files import CHECKPOINT_DIR, HYDRA_DIR, METRICS_FILE, STATUS_FILE, TEST_DIR
from classicnets.run.status import read_status

log = logging.getLogger(__name__)

# metrics, TensorBoard events and logs of one run, on top of its checkpoints
MARGIN_BYTES = 64 * 2**20


class OutputDirError(UserError, OSError):
    """The run directory cannot hold what the run will write, or holds an earlier run."""


def check_output_dir(output_dir: str | Path, parameter_bytes: int) -> None:
    """Fail now if `output_dir` is not writable or has less room than this run's checkpoints will take.

    A checkpoint holds the weights and up to two optimizer moments per weight (Adam); up to three exist at a
    time: last, best, and the temporary file while one of them is rewritten.
    """
    output_dir = Path(output_dir)
    checkpoints = output_dir / "checkpoints"
    try:
        checkpoints.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=checkpoints, prefix=".write-test-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise OutputDirError(
            f"cannot write to the run directory {output_dir} ({error.strerror}: {error.filename}). "
            "Point paths.log_dir (or hydra.run.dir) at a writable location."
        ) from error
    needed = 3 * 3 * parameter_bytes + MARGIN_BYTES
    free = shutil.disk_usage(checkpoints).free
    if free < needed:
        raise OutputDirError(
            f"only {free / 2**20:.0f} MiB free where the run directory {output_dir} is; its checkpoints need "
            f"about {needed / 2**20:.0f} MiB. Free some space or point paths.log_dir elsewhere."
        )


def earlier_run_files(output_dir: str | Path, hydra_written: bool) -> list[Path]:
    """The files by which an earlier run in `output_dir` is recognised: its status, metrics, checkpoints,
    logger folders (TensorBoard events, CSV metrics), the metrics of its `test/` folder and, unless Hydra has
    written this run's own already (`hydra_written`), its `.hydra/` configs and job log. Other files in the
    folder are not a run's."""
    output_dir = Path(output_dir)
    found = [output_dir / name for name in (STATUS_FILE, METRICS_FILE) if (output_dir / name).is_file()]
    status_file = output_dir / STATUS_FILE
    if status_file in found and (read_status(output_dir) or {}).get("pid") == os.getpid():
        found.remove(status_file)  # this run's own record (sweeps/jobs.py)
    found += sorted((output_dir / CHECKPOINT_DIR).glob("*.ckpt")) + sorted(output_dir.glob("hpc_ckpt_*.ckpt"))
    found += sorted(output_dir.glob("*/events.out.tfevents.*")) + sorted(output_dir.glob("*/metrics.csv"))
    found += sorted(output_dir.glob(f"{TEST_DIR}/{METRICS_FILE}"))
    if not hydra_written:
        found += sorted((output_dir / HYDRA_DIR).glob("*.yaml")) + sorted(output_dir.glob("*.log"))
    return found


def claim_run_dir(
    output_dir: str | Path,
    resume: str | None = None,
    ckpt_path: str | Path | None = None,
    overwrite: bool = False,
    hydra_written: bool = True,
) -> None:
    """Refuse a run directory that holds an earlier run, unless this run continues it (`resume=auto`, or a
    `ckpt_path` inside it) or `overwrite` discards it first: its checkpoints, metrics, status, logger folders,
    vocabulary and (before Hydra writes this run's) `.hydra/` and job log are deleted. Only the process the user
    started decides; the DDP processes Lightning starts in the same directory follow it."""
    output_dir = Path(output_dir).absolute()
    if launched_rank() != 0:
        return
    files = earlier_run_files(output_dir, hydra_written)
    if not files:
        return
    inside = ckpt_path and Path(ckpt_path).expanduser().resolve().is_relative_to(output_dir.resolve())
    if resume == "auto" or inside:
        return
    if not overwrite:
        shown = [str(path.relative_to(output_dir)) for path in files]
        raise OutputDirError(
            f"{output_dir} already holds {_describe(output_dir)} ({', '.join(shown[:4])}"
            f"{', …' if len(shown) > 4 else ''}); nothing was written to it. Add resume=auto to continue that "
            "run, or overwrite=true to delete it and start over, or choose another hydra.run.dir."
        )
    discard_earlier_run(output_dir, hydra_written)


def discard_earlier_run(output_dir: Path, hydra_written: bool) -> None:
    """Delete what an earlier run left in `output_dir` (`overwrite=true`), and say so."""
    from classicnets.data.text.datamodule import VOCAB_FILE  # only here: it imports torch

    files = earlier_run_files(output_dir, hydra_written)
    # logger folders, and the folder of the test the printed eval.py command ran after a Ctrl-C
    logger_folders = {path.parent for path in files if path.parent.parent == output_dir} - {
        output_dir / CHECKPOINT_DIR,
        output_dir / HYDRA_DIR,
    }
    for folder in sorted(logger_folders):
        shutil.rmtree(folder)
    for path in files:
        path.unlink(missing_ok=True)
    for partial in (output_dir / CHECKPOINT_DIR).glob(".*.tmp"):
        partial.unlink()
    (output_dir / VOCAB_FILE).unlink(missing_ok=True)
    log.warning(
        "overwrite=true: deleted the earlier run in %s (%s)",
        output_dir,
        ", ".join(sorted({str(p.relative_to(output_dir)).split("/")[0] for p in files})),
    )


def _describe(output_dir: Path) -> str:
    status = read_status(output_dir)
    if status is None:
        return "an earlier run"
    overrides = " ".join(status.get("overrides") or []) or "no overrides"
    return f"a {status['status']} run ({overrides}; {status.get('time', 'time unknown')})"
