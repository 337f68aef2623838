"""The figures of the benchmark, one module each, in the table that `bench/run.py` runs.

A figure module defines

- `NUMBER`: its number in bench/README.md and in results.json;
- `TITLE`: what it measures, in a few words;
- `NEEDS`: a folder under `--data-dir` without which the figure is skipped (with a note), or None;
- `run(bench: core.Bench) -> Record | list[Record]`: measures it and returns its record(s) (`core.figure`).

To add a figure, write `figN_what.py` and add its name to `NAMES` below.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

# the figure modules, in the order they run
NAMES = (
    "fig1_loop",
    "fig2_data_path",
    "fig3_end_to_end",
    "fig4_start_up",
    "fig5_resnet",
    "fig6_recurrent",
    "fig8_short_run",
)
FIGURES: dict[int, ModuleType] = {
    module.NUMBER: module for module in (import_module(f".{name}", __name__) for name in NAMES)
}
