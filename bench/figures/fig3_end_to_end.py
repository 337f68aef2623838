"""Figure 3, end to end: `python train.py experiment=lenet5_fashion_mnist` against `python bench/plain_loop.py`.

Both in fp32 (`trainer.precision=32-true`: on bf16 hardware `auto` would pick bf16-mixed).

The plain script gets the same recipe, read from the composed experiment config; both start cold, so imports,
data loading and the final test are included. Wall seconds, CPU seconds and both test accuracies, over
`--e2e-reps` repetitions (each one two complete trainings). Target: ≤ 1.2.
"""

from __future__ import annotations

import json
import sys

from core import BENCH, Bench, Record, alternate, cpu_ratio, figure, timed_run

NUMBER = 3
TITLE = "End to end"
NEEDS = None


def run(bench: Bench) -> Record:
    cfg = bench.config(["experiment=lenet5_fashion_mnist"])
    plain_args = [
        "--epochs",
        str(cfg.trainer.max_epochs),
        "--batch-size",
        str(cfg.data.batch_size),
        "--lr",
        str(cfg.optimizer.lr),
        "--channels",
        *map(str, cfg.model.channels),
    ]
    if cfg.model.batch_norm:
        plain_args.append("--batch-norm")
    if cfg.get("scheduler") and cfg.scheduler._target_.endswith("OneCycleLR"):
        plain_args.append("--onecycle")
    accuracy: dict[str, list[float]] = {"train.py": [], "plain script": []}
    cpu: dict[str, list[float]] = {"train.py": [], "plain script": []}

    def ours() -> float:
        out = bench.run_dir("e2e")
        command = [
            sys.executable,
            "train.py",
            "experiment=lenet5_fashion_mnist",
            "trainer.precision=32-true",  # the plain script's arithmetic (auto picks bf16 on bf16 hardware)
            f"paths.data_dir={bench.data_dir}",
            f"hydra.run.dir={out}",
        ]
        wall, _ = timed_run(command, cpu["train.py"])
        accuracy["train.py"].append(json.loads((out / "metrics.json").read_text())["test/acc"])
        return wall

    def plain() -> float:
        command = [
            sys.executable,
            str(BENCH / "plain_loop.py"),
            "--data-dir",
            str(bench.data_dir),
            *plain_args,
        ]
        wall, stdout = timed_run(command, cpu["plain script"])
        accuracy["plain script"].append(json.loads(stdout.strip().splitlines()[-1])["test_acc"])
        return wall

    print("figure 3: end to end, cold start", flush=True)
    runs = alternate({"train.py": ours, "plain script": plain}, bench.e2e_reps)
    return figure(
        NUMBER,
        f"End to end: LeNet-5 / Fashion-MNIST, {cfg.trainer.max_epochs} epochs, cold start",
        "s wall",
        runs,
        {"train.py / plain": ("train.py", "plain script")},
        ("train.py / plain", 0.0, 1.2),
        test_accuracy=accuracy,
        plain_args=plain_args,
        **cpu_ratio(cpu, "train.py", "plain script"),
    )
