"""Figure 1, training-loop overhead: images/s of the loop `train.py` runs against the plain loop.

LeNet-5 on Fashion-MNIST, batch 128 and 512, three contenders: `train.py`'s loop (`pipeline.train`, with the
default progress bar, TensorBoard logger, checkpoints and callbacks), read from `perf/train_samples_per_s` of
the second epoch; a bare Lightning `Trainer` on the same task, which separates what Lightning itself costs
from what `train.py` adds to it; and the plain loop, timed after one warm-up pass. Target: train.py / plain
≥ 0.95. All three keep the data on the training device (`data.placement=device`); at batch 128 a fourth,
`train.py` with `data.placement=host`, says what that placement gains (on a CPU both are the same memory: the
ratio shows that the device path costs nothing there; on a GPU, what gathering batches there saves).
"""

from __future__ import annotations

from core import Bench, Record, alternate, figure

NUMBER = 1
TITLE = "Training-loop overhead"
NEEDS = None


def run(bench: Bench) -> list[Record]:
    records = []
    for batch_size, batches in ((128, bench.batches(150)), (512, bench.batches(40))):
        print(f"figure 1: LeNet-5 / Fashion-MNIST, batch {batch_size}", flush=True)
        overrides = [
            "data=fashion_mnist",
            f"data.batch_size={batch_size}",
            f"trainer.accelerator={bench.accelerator}",
            "trainer.precision=32-true",  # the plain loop's arithmetic
            "data.placement=device",  # the plain loop's tensors sit on the device too (a CPU: the same memory)
        ]
        contenders = {
            "train.py": lambda o=overrides, n=batches: bench.ours(o, n),
            "bare Lightning": lambda o=overrides, n=batches: bench.bare_lightning(o, n),
            "plain loop": lambda o=overrides, n=batches: bench.plain(o, n),
        }
        ratios = {
            "train.py / plain": ("train.py", "plain loop"),
            "bare Lightning / plain": ("bare Lightning", "plain loop"),
            "train.py / bare Lightning": ("train.py", "bare Lightning"),
        }
        if batch_size == 128:
            host = [*overrides, "data.placement=host"]  # the later override wins
            contenders["train.py, data on the host"] = lambda o=host, n=batches: bench.ours(o, n)
            ratios["placement device / host (train.py)"] = ("train.py", "train.py, data on the host")
        runs = alternate(
            contenders,
            # its 5 % target is as small as the spread of one repetition on a shared machine
            max(bench.reps, 5),
        )
        records.append(
            figure(
                NUMBER,
                f"Training-loop overhead, LeNet-5 / Fashion-MNIST, batch {batch_size}, {bench.device.type.upper()}",
                bench.speed_unit,
                runs,
                ratios,
                ("train.py / plain", 0.95, float("inf")),
                batch_size=batch_size,
                batches_per_epoch=batches,
            )
        )
    return records
