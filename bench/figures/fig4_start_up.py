"""Figure 4, start-up: `python train.py --help` and `python train.py --cfg job` against `python -c "import torch"`.

The entry points import torch and Lightning only once Hydra has composed the config and a run really starts,
so `--help` and `--cfg` cost Hydra + OmegaConf only. Wall and CPU seconds. Target: `--help` ≤ 1.2× importing
torch.
"""

from __future__ import annotations

import sys

from core import Bench, Record, alternate, cpu_ratio, figure, timed_run

NUMBER = 4
TITLE = "Start-up"
NEEDS = None


def run(bench: Bench) -> Record:
    print("figure 4: start-up", flush=True)
    commands = {
        "import torch": [sys.executable, "-c", "import torch"],
        "train.py --help": [sys.executable, "train.py", "--help"],
        "train.py --cfg job": [sys.executable, "train.py", "--cfg", "job"],
    }
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    runs = alternate(
        {name: lambda n=name, c=c: timed_run(c, cpu[n])[0] for name, c in commands.items()},
        max(bench.reps, 5),
    )
    return figure(
        NUMBER,
        TITLE,
        "s wall",
        runs,
        {
            "--help / import torch": ("train.py --help", "import torch"),
            "--cfg job / import torch": ("train.py --cfg job", "import torch"),
        },
        ("--help / import torch", 0.0, 1.2),
        **cpu_ratio(cpu, "train.py --help", "import torch"),
    )
