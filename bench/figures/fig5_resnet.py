"""Figure 5, ResNet-20 / CIFAR-10: images/s of our loop and of the plain loop in fp32, `channels_last` and bf16
(and, with `--compile`, torch.compile).

Batch 128, no augmentation, the paper's SGD, 8 batches per epoch, the data on the training device
(`data.placement=device`; the plain loop likewise). Each switch is one config key: `channels_last=true` (the
model's weights in NHWC), `trainer.precision=bf16-mixed` (Lightning) and `compile=true`; the plain loop gets the
same through `plain_loop.train_epoch`'s options. On a CPU without native bf16, bf16 is timed over one batch: it
is an order of magnitude slower there. No target.
"""

from __future__ import annotations

from core import Bench, Record, alternate, figure

from classicnets.run.hardware import choose_precision, cpu_capabilities

NUMBER = 5
TITLE = "ResNet-20 / CIFAR-10"
NEEDS = None


def run(bench: Bench) -> Record:
    print("figure 5: ResNet-20 / CIFAR-10", flush=True)
    base = [
        "experiment=resnet20_cifar10",
        "data.augment=false",
        "data.placement=device",
        f"trainer.accelerator={bench.accelerator}",
        "trainer.precision=32-true",  # the bf16 contenders override it
    ]
    batches = bench.batches(8)
    native_bf16 = (
        bench.device.type == "cuda" or choose_precision("cpu", cpu_capabilities())[0] == "bf16-mixed"
    )
    # bf16 without native support (AVX2 CPUs) is 10-20x slower: one batch says so, 8 would take minutes
    bf16_batches = batches if native_bf16 else max(1, batches // 8)
    contenders = {
        "plain fp32": lambda: bench.plain(base, batches),
        "train.py fp32": lambda: bench.ours(base, batches),
        "plain channels_last": lambda: bench.plain(base, batches, channels_last=True),
        "train.py channels_last": lambda: bench.ours([*base, "channels_last=true"], batches),
        "plain bf16 autocast": lambda: bench.plain(base, bf16_batches, bf16=True),
        "train.py bf16-mixed": lambda: bench.ours([*base, "trainer.precision=bf16-mixed"], bf16_batches),
    }
    ratios = {
        "train.py / plain (fp32)": ("train.py fp32", "plain fp32"),
        "channels_last / fp32 (train.py)": ("train.py channels_last", "train.py fp32"),
        "bf16 / fp32 (train.py)": ("train.py bf16-mixed", "train.py fp32"),
    }
    if bench.compile:
        contenders |= {
            "plain compiled": lambda: bench.plain(base, batches, compile=True),
            "train.py compile": lambda: bench.ours([*base, "compile=true"], batches),
        }
        ratios |= {
            "compiled / eager (train.py)": ("train.py compile", "train.py fp32"),
            "compiled / eager (plain)": ("plain compiled", "plain fp32"),
        }
    return figure(
        NUMBER,
        f"ResNet-20 / CIFAR-10, batch 128, {bench.device.type.upper()}",
        bench.speed_unit,
        alternate(contenders, bench.reps),
        ratios,
        batches_per_epoch=batches,
        bf16_batches_per_epoch=bf16_batches,
    )
