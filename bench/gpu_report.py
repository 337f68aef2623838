"""One line on a training run of the GPU runbook (bench/gpu.sh): epochs done, time per epoch, accuracy, precision.

    python bench/gpu_report.py RUN_DIR [--jsonl FILE]

Reads what the run wrote: the CSV logger's `csv/metrics.csv` (`perf/epoch_s`, `val/acc` per epoch), `metrics.json`
(the test, when the run finished), `status.json` and `train.log` (the precision `auto` chose). Prints the line and,
with `--jsonl`, appends the same as JSON to FILE. Works on a run that was stopped part-way, or never started.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from pathlib import Path
from typing import Any


def summary(run: Path) -> dict[str, Any]:
    epochs: dict[int, dict[str, float]] = {}
    metrics_csv = run / "csv" / "metrics.csv"
    if metrics_csv.is_file():
        with metrics_csv.open() as file:
            for row in csv.DictReader(file):
                if not row.get("epoch"):  # the learning rate's rows
                    continue
                epoch = epochs.setdefault(int(row["epoch"]), {})
                epoch.update(
                    {
                        key: float(value)
                        for key, value in row.items()
                        if value and key.startswith(("perf/", "val/"))
                    }
                )
    epoch_seconds = [e["perf/epoch_s"] for e in epochs.values() if "perf/epoch_s" in e]
    val_acc = [e["val/acc"] for e in epochs.values() if "val/acc" in e]
    final = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    status = json.loads((run / "status.json").read_text()) if (run / "status.json").is_file() else {}
    log = (run / "train.log").read_text(errors="replace") if (run / "train.log").is_file() else ""
    precision = re.search(r"trainer\.precision=auto chose (\S+):", log)
    return {
        "run": run.name,
        "status": status.get("status", "not started"),
        "epochs": len(epoch_seconds),
        "epoch_s_median": statistics.median(epoch_seconds) if epoch_seconds else None,
        "epoch_s_total": sum(epoch_seconds),
        "val_acc_best": max(val_acc) if val_acc else None,
        "test_acc": final.get("test/acc"),
        "precision": precision.group(1) if precision else None,
    }


def line(facts: dict[str, Any]) -> str:
    parts = [f"{facts['status']}, {facts['epochs']} epochs"]
    if facts["epoch_s_median"] is not None:
        parts.append(
            f"{facts['epoch_s_median']:.2f} s per epoch (median), {facts['epoch_s_total']:.0f} s in all"
        )
    if facts["val_acc_best"] is not None:
        parts.append(f"best val acc {facts['val_acc_best']:.4f}")
    if facts["test_acc"] is not None:
        parts.append(f"test acc {facts['test_acc']:.4f}")
    if facts["precision"]:
        parts.append(facts["precision"])
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--jsonl", type=Path, help="append the summary as one JSON line to this file")
    args = parser.parse_args()
    facts = summary(args.run)
    if args.jsonl:
        with args.jsonl.open("a") as file:
            file.write(json.dumps(facts) + "\n")
    print(line(facts))


if __name__ == "__main__":
    main()
