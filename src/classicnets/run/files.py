"""The files a run leaves in its directory, named once: every module that reads or writes one uses these."""

from __future__ import annotations

import json
import os
from pathlib import Path

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
METRICS_FILE = "metrics.json"
STATUS_FILE = "status.json"
HYDRA_DIR = ".hydra"
TEST_DIR = "test"  # where the eval.py command printed after a Ctrl-C in the test phase writes
OVERRIDES_FILE = f"{HYDRA_DIR}/overrides.yaml"
CONFIG_FILE = f"{HYDRA_DIR}/config.yaml"
LR_FIND_PLOT = "lr_find.png"


def last_checkpoint(output_dir: str | os.PathLike) -> Path:
    """Where a run keeps the checkpoint `resume=auto` continues from."""
    return Path(output_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def write_json(path: Path, record: dict) -> Path:
    """Write-then-rename: a reader (a report of a running sweep) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record, indent=2, default=str) + "\n")
    temporary.replace(path)
    return path


def write_metrics(output_dir: str | os.PathLike, metrics: dict[str, float]) -> Path:
    return write_json(Path(output_dir) / METRICS_FILE, dict(sorted(metrics.items())))


def read_metrics(output_dir: str | os.PathLike) -> dict[str, float]:
    """The final metrics of the run in `output_dir`; empty when it has none (yet)."""
    path = Path(output_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
