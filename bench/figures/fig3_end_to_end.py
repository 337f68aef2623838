"""Figure 3, end to end: `python train.py experiment=lenet5_fashion_mnist` against `python bench/plain_loop.py`.

Both in fp32 (`trainer.precision=32-true`: on bf16 hardware `auto` would pick bf16-mixed).

The plain script gets the same recipe, read from the composed experiment config; both start cold, so imports,
data loading and the final test are included. Wall seconds, CPU seconds and both test accuracies, over
`--e2e-reps` repetitions (each one two complete trainings). Target: ≤ 1.2.
"""

from __future__ import annotations

from core import Bench, Record, cpu_ratio, figure, whole_runs

NUMBER = 3
TITLE = "End to end"
NEEDS = None


def run(bench: Bench) -> Record:
    print("figure 3: end to end, cold start", flush=True)
    cfg, result = whole_runs(bench, ["experiment=lenet5_fashion_mnist"], bench.e2e_reps)
    return figure(
        NUMBER,
        f"End to end: LeNet-5 / Fashion-MNIST, {cfg.trainer.max_epochs} epochs, cold start",
        "s wall",
        result["runs"],
        {"train.py / plain": ("train.py", "plain script")},
        ("train.py / plain", 0.0, 1.2),
        test_accuracy=result["test_accuracy"],
        plain_args=result["plain_args"],
        **cpu_ratio(result["cpu"], "train.py", "plain script"),
    )
