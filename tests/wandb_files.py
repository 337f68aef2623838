"""Reads what an offline W&B run wrote: `run-<id>.wandb`, the run's whole record (wandb ≥ 0.19 writes no
config.yaml or wandb-summary.json offline, and no longer ships a Python reader for this file).

The file is a LevelDB-style log of `wandb_internal_pb2.Record` protobufs: a 7-byte header (b":W&B", the uint16
magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each with a 7-byte header (uint32 CRC, uint16 length,
uint8 type: 1 whole record, 2 first, 3 middle, 4 last part); a block's tail shorter than a header is padding.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:HEADER]) == (b":W&B", 0xBEE1, 0), f"{path} is not a W&B run file"
    position, pieces = HEADER, b""
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        if left < HEADER or (length == 0 and kind == 0):  # a block's padding
            position += left
            continue
        if position + HEADER + length > len(data):  # still being written
            return
        chunk = data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        pieces = chunk if kind in (FULL, FIRST) else pieces + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            yield record


def read_run(path: Path) -> dict[str, Any]:
    """{"run": name, group, project; "config": key → value; "history": rows; "summary": key → last value}."""
    found: dict[str, Any] = {"run": {}, "config": {}, "history": [], "summary": {}}

    def items(updates: Any) -> dict[str, Any]:
        return {(u.key or "/".join(u.nested_key)): json.loads(u.value_json) for u in updates}

    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            found["run"] = {"name": run.display_name, "group": run.run_group, "project": run.project}
            found["config"].update(items(run.config.update))
        elif kind == "config":
            found["config"].update(items(record.config.update))
        elif kind == "history":
            found["history"].append(items(record.history.item))
        elif kind == "summary":
            found["summary"].update(items(record.summary.update))
    return found


def offline_runs(directory: Path, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every offline run below `directory` (`wandb/offline-run-*/run-*.wandb`), oldest first.

    wandb's writer process may still be flushing a file when `wandb.finish()` has returned: a file is read once
    it holds the run's `exit` record (the last one written).
    """
    paths = sorted(directory.glob("**/wandb/offline-run-*/run-*.wandb"))
    deadline = time.monotonic() + timeout_s
    for path in paths:
        while not any(r.WhichOneof("record_type") == "exit" for r in records(path)):
            assert time.monotonic() < deadline, f"{path} has no exit record after {timeout_s} s"
            time.sleep(0.2)
    return [read_run(path) for path in paths]
