"""A run's outcome on disk: `status.json` in its directory, written while it runs and read by sweeps and reports.

Statuses: `running` (started, or killed before it could say otherwise), `completed` (final metrics written),
`failed` (an exception; `reason` holds it), `diverged` (the loss became NaN/inf), `interrupted` (a signal).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from classicnets.run.files import STATUS_FILE, write_json

STATUSES = ("running", "completed", "failed", "diverged", "interrupted")


def write_status(output_dir: str | os.PathLike, status: str, reason: str | None = None, **extra: Any) -> Path:
    """Record `status` (one of STATUSES) and why; extra keys (e.g. `wall_time_s`) are stored alongside.

    Extra keys of the previous record that this call does not set are kept: what a job was (its overrides,
    its device) stays while its status changes.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {', '.join(STATUSES)}")
    record = {
        **(read_status(output_dir) or {}),
        **extra,
        "status": status,
        "reason": reason,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return write_json(Path(output_dir) / STATUS_FILE, record)


def read_status(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The recorded status of the run in `output_dir`, or None when it has none (or an unreadable one)."""
    path = Path(output_dir) / STATUS_FILE
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "status" in record else None


def process_alive(pid: int, host: str | None = None) -> bool:
    """Whether process `pid` of `host` (this machine when None) still runs; a process of another machine
    cannot be asked, and counts as alive."""
    if host is not None and host != socket.gethostname():
        return True
    if int(pid) <= 0:  # 0 and negative ids name process groups, not a process
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True
