"""A run's outcome on disk: `status.json` in its directory, written while it runs and read by sweeps and reports.

Statuses: `running` (started, or killed before it could say otherwise), `completed` (final metrics written),
`failed` (an exception; `reason` holds it), `diverged` (the loss became NaN/inf), `interrupted` (a signal).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
STATUSES = ("running", "completed", "failed", "diverged", "interrupted")


def write_status(output_dir: str | os.PathLike, status: str, reason: str | None = None, **extra: Any) -> Path:
    """Record `status` (one of STATUSES) and why; extra keys (e.g. `wall_time_s`) are stored alongside.

    Extra keys of the previous record that this call does not set are kept: what a job was (its overrides,
    its device) stays while its status changes.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {', '.join(STATUSES)}")
    path = Path(output_dir) / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        **(read_status(output_dir) or {}),
        **extra,
        "status": status,
        "reason": reason,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    # write-then-rename: a report reading a running sweep never sees half a file
    temporary = path.with_name(f".{STATUS_FILE}.{os.getpid()}")
    temporary.write_text(json.dumps(record, indent=2, default=str) + "\n")
    temporary.replace(path)
    return path


def read_status(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The recorded status of the run in `output_dir`, or None when it has none (or an unreadable one)."""
    path = Path(output_dir) / STATUS_FILE
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "status" in record else None
