"""A run's output folder is checked before training: a run that cannot save its checkpoints must not start."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# metrics, TensorBoard events and logs of one run, on top of its checkpoints
MARGIN_BYTES = 64 * 2**20


class OutputDirError(OSError):
    """The run directory cannot hold what the run will write."""


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
