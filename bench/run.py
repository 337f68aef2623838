"""Figures 1–6 of the benchmark in one command (bench/README.md says what each one measures):

    python bench/run.py --data-dir /tmp/data

Every figure is a ratio of contenders measured in this invocation, alternating them (ABBA order) over
`--reps` repetitions and comparing medians. Writes bench/results.json and bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

import plain_loop
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch import Callback, LightningModule, Trainer
from omegaconf import DictConfig

from classicnets.callbacks import TrainingSpeed
from classicnets.pipeline import build, train
from classicnets.resolvers import register

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
FIGURES = (1, 2, 3, 4, 5, 6)
# validation is not timed: one training-sized batch of it (bf16 on a CPU infers at ~60 images/s)
SHORT_VALIDATION = [
    "trainer.num_sanity_val_steps=0",
    "trainer.limit_val_batches=1",
    "data.eval_batch_size=${data.batch_size}",
]
_run_ids = count()


def alternate(contenders: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Run each contender `reps` times, in A B B A … order so that drifting machine load hits all alike."""
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    for rep in range(reps):
        for name in list(contenders)[:: 1 if rep % 2 == 0 else -1]:
            runs[name].append(contenders[name]())
            print(f"  {name}: {runs[name][-1]:.4g}", flush=True)
    return runs


def figure(
    number: int,
    title: str,
    unit: str,
    runs: dict[str, list[float]],
    ratios: dict[str, tuple[str, str]],
    target: tuple[str, float, float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A figure's record. `ratios` names numerator/denominator contenders; `target` is (ratio name, ≥, ≤)."""
    median = {name: statistics.median(values) for name, values in runs.items()}
    ratio = {name: median[a] / median[b] for name, (a, b) in ratios.items()}
    record = {"figure": number, "title": title, "unit": unit, "runs": runs, "median": median, "ratio": ratio}
    record |= {"ratio_of": ratios, "paired_ratio": paired_ratios(runs, ratios)}
    if target is not None:
        name, low, high = target
        both = (ratio[name], record["paired_ratio"][name])  # met only if the two ways of reading agree
        record["target"] = {
            "ratio": name,
            "min": low,
            "max": high,
            "met": all(low <= r <= high for r in both),
        }
    record["loadavg_after"] = os.getloadavg()
    return record | extra


def paired_ratios(runs: dict[str, list[float]], ratios: dict[str, tuple[str, str]]) -> dict[str, float]:
    """Median of the ratios within each repetition: what a load that drifts over the whole run distorts least."""
    return {
        name: statistics.median(x / y for x, y in zip(runs[a], runs[b], strict=True))
        for name, (a, b) in ratios.items()
    }


class CpuClock(Callback):
    """Images per CPU-second of the training steps of the last epoch: on a machine shared with other work, CPU
    time measures what a loop costs where wall time mostly measures the neighbours (`--clock cpu`)."""

    last = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.samples, self.start = 0, time.process_time()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.samples += len(batch[-1])
        self.end = time.process_time()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        CpuClock.last = self.samples / (self.end - self.start)


class Bench:
    def __init__(
        self,
        data_dir: Path,
        reps: int,
        e2e_reps: int,
        scale: float,
        cpu_clock: bool,
        workdir: Path,
        accelerator: str = "cpu",
    ) -> None:
        self.data_dir = data_dir
        self.accelerator = accelerator
        self.device = torch.device("cuda" if accelerator == "gpu" else "cpu")
        self.cpu_clock = cpu_clock
        self.speed_unit = "images per CPU-second" if cpu_clock else "images/s"
        self.scale = scale
        self.reps = reps
        self.e2e_reps = e2e_reps
        self.workdir = workdir

    def config(self, overrides: list[str]) -> DictConfig:
        out = self.workdir / f"run{next(_run_ids)}"
        paths = [f"paths.data_dir={self.data_dir}", f"paths.log_dir={out}", f"paths.output_dir={out}"]
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=[*paths, *overrides])

    def batches(self, default: int) -> int:
        return max(2, round(default * self.scale))

    # -- contenders ----------------------------------------------------------------------------------------
    def ours(self, overrides: list[str], batches: int) -> float:
        """Samples/s of `train.py`'s loop (the pipeline it calls), second epoch, `batches` steps per epoch."""
        cfg = self.config(
            [
                *overrides,
                "trainer.max_epochs=2",
                f"trainer.limit_train_batches={batches}",
                "test=false",
                *SHORT_VALIDATION,
                *([f"+callbacks.cpu_clock._target_={__name__}.CpuClock"] if self.cpu_clock else []),
            ]
        )
        metrics = train(cfg)
        return CpuClock.last if self.cpu_clock else metrics["perf/train_samples_per_s"]

    def bare_lightning(self, overrides: list[str], batches: int) -> float:
        """Samples/s of a bare Lightning `Trainer` on the same task: no logger, progress bar, checkpoints or
        callbacks, only the speed meter. Lightning's own cost per step, apart from what `train.py` adds to it."""
        cfg = self.config([*overrides, *SHORT_VALIDATION])
        datamodule, task = build(cfg)
        trainer = Trainer(
            accelerator=self.accelerator,
            max_epochs=2,
            limit_train_batches=batches,
            limit_val_batches=cfg.trainer.limit_val_batches,
            num_sanity_val_steps=cfg.trainer.num_sanity_val_steps,
            callbacks=[CpuClock() if self.cpu_clock else TrainingSpeed()],
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
        )
        trainer.fit(task, datamodule=datamodule)
        return (
            CpuClock.last if self.cpu_clock else float(trainer.callback_metrics["perf/train_samples_per_s"])
        )

    def plain(
        self, overrides: list[str], batches: int, bf16: bool = False, channels_last: bool = False
    ) -> float:
        """Samples/s of the plain loop on the same tensors, model and optimizer; after one warm-up pass."""
        torch.manual_seed(0)
        datamodule, task = build(self.config(overrides))
        images, labels = datamodule.splits["train"].tensors
        net = task.net.to(self.device)
        net = net.to(memory_format=torch.channels_last) if channels_last else net
        optimizer = task.optimizer_factory(params=net.parameters())
        args = (net, optimizer, images, labels, datamodule.batch_size, datamodule.mean, datamodule.std)
        options = {"max_batches": batches, "bf16": bf16, "channels_last": channels_last}
        plain_loop.train_epoch(*args, **options)
        cpu_start = time.process_time()
        seen, seconds = plain_loop.train_epoch(*args, **options)
        return seen / (time.process_time() - cpu_start if self.cpu_clock else seconds)

    # -- figures -------------------------------------------------------------------------------------------
    def loop_overhead(self) -> list[dict[str, Any]]:
        records = []
        for batch_size, batches in ((128, self.batches(150)), (512, self.batches(40))):
            print(f"figure 1: LeNet-5 / Fashion-MNIST, batch {batch_size}", flush=True)
            overrides = [
                "data=fashion_mnist",
                f"data.batch_size={batch_size}",
                f"trainer.accelerator={self.accelerator}",
            ]
            runs = alternate(
                {
                    "train.py": lambda o=overrides, n=batches: self.ours(o, n),
                    "bare Lightning": lambda o=overrides, n=batches: self.bare_lightning(o, n),
                    "plain loop": lambda o=overrides, n=batches: self.plain(o, n),
                },
                # its 5 % target is as small as the spread of one repetition on a shared machine
                max(self.reps, 5),
            )
            records.append(
                figure(
                    1,
                    f"Training-loop overhead, LeNet-5 / Fashion-MNIST, batch {batch_size}, {self.device.type.upper()}",
                    self.speed_unit,
                    runs,
                    {
                        "train.py / plain": ("train.py", "plain loop"),
                        "bare Lightning / plain": ("bare Lightning", "plain loop"),
                        "train.py / bare Lightning": ("train.py", "bare Lightning"),
                    },
                    ("train.py / plain", 0.95, float("inf")),
                    batch_size=batch_size,
                    batches_per_epoch=batches,
                )
            )
        return records

    def data_path(self) -> list[dict[str, Any]]:
        from torch.utils.data import DataLoader
        from torchvision import datasets, transforms

        from classicnets.data import CIFAR10DataModule, FashionMNISTDataModule

        records = []
        batches = self.batches(100)
        for module, dataset in (
            (FashionMNISTDataModule, datasets.FashionMNIST),
            (CIFAR10DataModule, _cifar10_class()),
        ):
            print(f"figure 2: data path, {dataset.__name__} with crop + flip", flush=True)
            ours = module(self.data_dir, batch_size=128, augment=True)
            ours.setup("fit")
            conventional = dataset(
                str(self.data_dir),
                train=True,
                transform=transforms.Compose(
                    [
                        transforms.RandomCrop(ours.image_size, padding=ours.crop_padding),
                        transforms.RandomHorizontalFlip(),
                        transforms.ToTensor(),
                        transforms.Normalize(ours.mean, ours.std),
                    ]
                ),
            )

            def timed(loader: Any, transform: Callable[[torch.Tensor], torch.Tensor]) -> float:
                start, seen = time.perf_counter(), 0
                for step, (images, _) in enumerate(loader):
                    seen += len(transform(images))
                    if step + 1 == batches:
                        break
                return seen / (time.perf_counter() - start)

            runs = alternate(
                {
                    "classicnets in-memory batches": lambda o=ours: timed(
                        o.train_dataloader(), lambda x, o=o: o.transform_batch(x, training=True)
                    ),
                    **{
                        f"torchvision DataLoader, {w} workers": lambda w=w, c=conventional: timed(
                            DataLoader(c, batch_size=128, shuffle=True, num_workers=w), lambda x: x
                        )
                        for w in (0, 2)
                    },
                },
                self.reps,
            )
            best = max(
                (name for name in runs if name.startswith("torchvision")),
                key=lambda n: statistics.median(runs[n]),
            )
            records.append(
                figure(
                    2,
                    f"Data path, {dataset.__name__}, batch 128, crop + flip + normalise",
                    "images/s",
                    runs,
                    {"ours / best torchvision": ("classicnets in-memory batches", best)},
                    ("ours / best torchvision", 1.5, float("inf")),
                    batches=batches,
                )
            )
        return records

    def end_to_end(self) -> dict[str, Any]:
        """`train.py experiment=lenet5_fashion_mnist` vs the plain script with the same recipe, both from a cold start."""
        cfg = self.config(["experiment=lenet5_fashion_mnist"])
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
            out = self.workdir / f"e2e{next(_run_ids)}"
            command = [
                sys.executable,
                "train.py",
                "experiment=lenet5_fashion_mnist",
                f"paths.data_dir={self.data_dir}",
                f"hydra.run.dir={out}",
            ]
            wall, _ = _timed_run(command, cpu["train.py"])
            accuracy["train.py"].append(json.loads((out / "metrics.json").read_text())["test/acc"])
            return wall

        def plain() -> float:
            command = [
                sys.executable,
                str(BENCH / "plain_loop.py"),
                "--data-dir",
                str(self.data_dir),
                *plain_args,
            ]
            wall, stdout = _timed_run(command, cpu["plain script"])
            accuracy["plain script"].append(json.loads(stdout.strip().splitlines()[-1])["test_acc"])
            return wall

        print("figure 3: end to end, cold start", flush=True)
        runs = alternate({"train.py": ours, "plain script": plain}, self.e2e_reps)
        return figure(
            3,
            f"End to end: LeNet-5 / Fashion-MNIST, {cfg.trainer.max_epochs} epochs, cold start",
            "s wall",
            runs,
            {"train.py / plain": ("train.py", "plain script")},
            ("train.py / plain", 0.0, 1.2),
            test_accuracy=accuracy,
            plain_args=plain_args,
            **_cpu_ratio(cpu, "train.py", "plain script"),
        )

    def start_up(self) -> dict[str, Any]:
        print("figure 4: start-up", flush=True)
        commands = {
            "import torch": [sys.executable, "-c", "import torch"],
            "train.py --help": [sys.executable, "train.py", "--help"],
            "train.py --cfg job": [sys.executable, "train.py", "--cfg", "job"],
        }
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        runs = alternate(
            {name: lambda n=name, c=c: _timed_run(c, cpu[n])[0] for name, c in commands.items()},
            max(self.reps, 5),
        )
        return figure(
            4,
            "Start-up",
            "s wall",
            runs,
            {
                "--help / import torch": ("train.py --help", "import torch"),
                "--cfg job / import torch": ("train.py --cfg job", "import torch"),
            },
            ("--help / import torch", 0.0, 1.2),
            **_cpu_ratio(cpu, "train.py --help", "import torch"),
        )

    def resnet(self) -> dict[str, Any]:
        print("figure 5: ResNet-20 / CIFAR-10", flush=True)
        base = [
            "experiment=resnet20_cifar10",
            "data.augment=false",
            f"trainer.accelerator={self.accelerator}",
        ]
        batches = self.batches(8)
        # bf16 without native support (AVX2 CPUs) is 10-20x slower: one batch says so, 8 would take minutes
        bf16_batches = batches if self.device.type == "cuda" else max(1, batches // 8)
        runs = alternate(
            {
                "plain fp32": lambda: self.plain(base, batches),
                "train.py fp32": lambda: self.ours(base, batches),
                "plain channels_last": lambda: self.plain(base, batches, channels_last=True),
                "train.py channels_last": lambda: self.ours([*base, "channels_last=true"], batches),
                "plain bf16 autocast": lambda: self.plain(base, bf16_batches, bf16=True),
                "train.py bf16-mixed": lambda: self.ours(
                    [*base, "trainer.precision=bf16-mixed"], bf16_batches
                ),
            },
            self.reps,
        )
        return figure(
            5,
            f"ResNet-20 / CIFAR-10, batch 128, {self.device.type.upper()}",
            self.speed_unit,
            runs,
            {
                "train.py / plain (fp32)": ("train.py fp32", "plain fp32"),
                "channels_last / fp32 (train.py)": ("train.py channels_last", "train.py fp32"),
                "bf16 / fp32 (train.py)": ("train.py bf16-mixed", "train.py fp32"),
            },
            batches_per_epoch=batches,
            bf16_batches_per_epoch=bf16_batches,
        )

    def recurrent(self) -> dict[str, Any]:
        """IMDB LSTM samples/s with length bucketing vs random batches (both padded per batch and packed)."""
        print("figure 6: IMDB LSTM", flush=True)
        datamodule, task = build(self.config(["data=imdb", "model=lstm", "data.source=full"]))
        optimizer = task.optimizer_factory(params=task.net.parameters())
        batches = self.batches(30)

        def throughput(bucketing: bool) -> float:
            datamodule.bucketing = bucketing
            task.net.train()
            start, seen = time.perf_counter(), 0
            for step, (inputs, targets) in enumerate(datamodule.train_dataloader()):
                loss = torch.nn.functional.cross_entropy(task.net(inputs), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                seen += len(targets)
                if step + 1 == batches:
                    break
            return seen / (time.perf_counter() - start)

        runs = alternate(
            {"bucketing": lambda: throughput(True), "random batches": lambda: throughput(False)}, self.reps
        )
        return figure(
            6,
            "IMDB LSTM (max_length 400, batch 64), packed sequences",
            "sequences/s",
            runs,
            {"bucketing / random": ("bucketing", "random batches")},
            batches=batches,
        )


def _cifar10_class() -> type:
    from torchvision import datasets

    class CIFAR10(datasets.CIFAR10):
        """torchvision's CIFAR-10 without its MD5 check: a prepared copy may be re-pickled (same arrays)."""

        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:
            self.classes = []  # the class names (another checksummed file) are not needed to time the data path

    return CIFAR10


def _timed_run(command: list[str], cpu: list[float]) -> tuple[float, str]:
    """Wall seconds and stdout of a command; appends its CPU seconds to `cpu` (robust to a busy machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall, result.stdout


def _cpu_ratio(cpu: dict[str, list[float]], numerator: str, denominator: str) -> dict[str, Any]:
    median = {name: statistics.median(values) for name, values in cpu.items()}
    return {"cpu_s": cpu, "cpu_median": median, "cpu_ratio": median[numerator] / median[denominator]}


def hardware() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    gpu = f"{torch.cuda.get_device_name()}, " if torch.cuda.is_available() else ""
    return (
        f"{gpu}{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}, load average at start {os.getloadavg()[0]:.1f}"
    )


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Hardware: {results['hardware']}  ",
        f"Command: `{results['command']}`, {results['wall_s'] / 60:.1f} min",
        "",
        "| Fig. | What | Medians | Ratio of medians (paired: median of per-repetition ratios) | Target |",
        "|---|---|---|---|---|",
    ]
    for record in results["figures"]:
        medians = "<br>".join(
            f"{name}: {value:.4g} {record['unit']}" for name, value in record["median"].items()
        )
        ratios = "<br>".join(
            f"{name}: **{value:.3g}** (paired {record['paired_ratio'][name]:.3g})"
            for name, value in record["ratio"].items()
        )
        target = record.get("target")
        if target:
            bound = f"≥ {target['min']}" if target["max"] == float("inf") else f"≤ {target['max']}"
            target_text = f"{target['ratio']} {bound}: {'met' if target['met'] else '**not met**'}"
        else:
            target_text = "—"
        if "test_accuracy" in record:
            medians += "<br>" + "<br>".join(
                f"test acc {name}: {', '.join(f'{a:.4f}' for a in accs)}"
                for name, accs in record["test_accuracy"].items()
            )
        if "cpu_ratio" in record:
            ratios += f"<br>(CPU seconds: {record['cpu_ratio']:.3g})"
        lines.append(f"| {record['figure']} | {record['title']} | {medians} | {ratios} | {target_text} |")
    seconds = ", ".join(f"{n}: {t:.0f} s" for n, t in results.get("figure_seconds", {}).items())
    lines += [f"\nTime per figure: {seconds}"] if seconds else []
    lines += [f"\n{note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--figures", type=int, nargs="+", default=list(FIGURES), choices=FIGURES)
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
        )
        steps = {
            1: bench.loop_overhead,
            2: bench.data_path,
            3: bench.end_to_end,
            4: bench.start_up,
            5: bench.resnet,
            6: bench.recurrent,
        }
        for number in args.figures:
            if number == 6 and not (args.data_dir / "aclImdb").is_dir():
                results["notes"].append("Figure 6 skipped: no aclImdb/ in the data directory.")
                continue
            figure_start = time.perf_counter()
            record = steps[number]()
            results["figure_seconds"][str(number)] = time.perf_counter() - figure_start
            results["figures"] += record if isinstance(record, list) else [record]
            results["wall_s"] = time.perf_counter() - start
            # after every figure: a long run that fails later keeps what it measured
            _write(results, args.out)
    print(markdown(results))


def _write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))


if __name__ == "__main__":
    main()
