"""Figures 1–6 and 8 of the benchmark in one command (bench/README.md says what each one measures):

    python bench/run.py --data-dir /tmp/data

Every figure is a ratio of contenders measured in this invocation, alternating them (ABBA order) over
`--reps` repetitions and comparing medians. Writes bench/results.json and bench/results.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core import BENCH, Bench, hardware, markdown, write_results
from figures import FIGURES

from classicnets.run.config import register


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="FashionMNIST/raw, cifar-10-batches-py, aclImdb"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions per contender (medians reported)")
    parser.add_argument(
        "--e2e-reps", type=int, default=1, help="repetitions of figure 3 (two full trainings each)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies the batches timed per contender (< 1 on a busy machine)",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="figures 1 and 5 in images per wall second, or per CPU second of the process (a shared machine)",
    )
    parser.add_argument(
        "--accelerator",
        choices=("cpu", "gpu"),
        default="cpu",
        help="where figures 1 and 5 train (both contenders); the other figures are CPU figures",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="figure 5 also times both loops with torch.compile (minutes of compilation per contender on a CPU)",
    )
    parser.add_argument("--figures", type=int, nargs="+", default=list(FIGURES), choices=tuple(FIGURES))
    parser.add_argument("--out", type=Path, default=BENCH, help="folder for results.json and results.md")
    args = parser.parse_args()

    register()
    start = time.perf_counter()
    results: dict[str, Any] = {
        "hardware": hardware(),
        "command": " ".join(sys.argv),
        "figures": [],
        "figure_seconds": {},
        "notes": [],
    }
    with tempfile.TemporaryDirectory(prefix="classicnets-bench-") as workdir:
        bench = Bench(
            args.data_dir.resolve(),
            args.reps,
            args.e2e_reps,
            args.scale,
            args.clock == "cpu",
            Path(workdir),
            args.accelerator,
            args.compile,
        )
        for number in args.figures:
            module = FIGURES[number]
            if module.NEEDS is not None and not (args.data_dir / module.NEEDS).is_dir():
                results["notes"].append(f"Figure {number} skipped: no {module.NEEDS}/ in the data directory.")
                continue
            figure_start = time.perf_counter()
            record = module.run(bench)
            results["figure_seconds"][str(number)] = time.perf_counter() - figure_start
            results["figures"] += record if isinstance(record, list) else [record]
            results["wall_s"] = time.perf_counter() - start
            # after every figure: a long run that fails later keeps what it measured
            write_results(results, args.out)
    print(markdown(results))


if __name__ == "__main__":
    main()
