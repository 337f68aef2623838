"""Figure 8, a short run: `python train.py` for 2 epochs of LeNet-5 on Fashion-MNIST against
`python bench/plain_loop.py` doing the same job (same data in memory, model, optimizer, seed, 2 epochs, test).

Figure 3's comparison with a short budget, where the fixed costs show: the interpreter, imports, the config,
loading the data, validation, checkpoints, TensorBoard, the final test of the best checkpoint, and the
interpreter's teardown. Both start cold. Wall seconds, CPU seconds and both test accuracies, over `--reps`
alternated repetitions. Target: ≤ 1.15. Alone: `python bench/run.py --data-dir DIR --figures 8 --reps 3`.
"""

from __future__ import annotations

from core import Bench, Record, cpu_ratio, figure, whole_runs

NUMBER = 8
TITLE = "Short run"
NEEDS = "FashionMNIST"
# the command of issue 23: a quick check, one cell of a sweep
OVERRIDES = [
    "model=lenet5",
    "data=fashion_mnist",
    "optimizer=adam",
    "optimizer.lr=0.001",
    "data.batch_size=128",
    "trainer.max_epochs=2",
    "seed=0",
]


def run(bench: Bench) -> Record:
    print("figure 8: a short run (2 epochs), cold start", flush=True)
    _, result = whole_runs(bench, OVERRIDES, bench.reps)
    return figure(
        NUMBER,
        "Short run: LeNet-5 / Fashion-MNIST, 2 epochs, cold start",
        "s wall",
        result["runs"],
        {"train.py / plain": ("train.py", "plain script")},
        ("train.py / plain", 0.0, 1.15),
        test_accuracy=result["test_accuracy"],
        plain_args=result["plain_args"],
        **cpu_ratio(result["cpu"], "train.py", "plain script"),
    )
