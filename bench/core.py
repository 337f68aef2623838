"""What every figure of the benchmark shares: the contenders, the ABBA alternation, a figure's record, and the
results files.

A figure (bench/figures/) builds its contenders as functions returning one number each, hands them to
`alternate`, and turns the runs into a record with `figure`. The three training-loop contenders are methods of
`Bench`, which also holds the command-line settings:

- `Bench.ours`: `train.py`'s loop (`pipeline.train`, with its default logger, progress bar, checkpoints and
  callbacks), read from the `TrainingSpeed` callback of the second epoch;
- `Bench.bare_lightning`: a bare Lightning `Trainer` on the same task, with only the speed meter;
- `Bench.plain`: bench/plain_loop.py on the same tensors, model and optimizer, after one warm-up pass.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
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

from classicnets.run.build import build
from classicnets.run.callbacks import TrainingSpeed
from classicnets.run.pipeline import train

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# validation is not timed: one training-sized batch of it (bf16 on a CPU infers at ~60 images/s)
SHORT_VALIDATION = [
    "trainer.num_sanity_val_steps=0",
    "trainer.limit_val_batches=1",
    "data.eval_batch_size=${data.batch_size}",
]
Record = dict[str, Any]
"""One row of results.json's "figures": what `figure` returns."""

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
) -> Record:
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
    """The settings of one invocation (`bench/run.py`'s options) and the training-loop contenders."""

    def __init__(
        self,
        data_dir: Path,
        reps: int,
        e2e_reps: int,
        scale: float,
        cpu_clock: bool,
        workdir: Path,
        accelerator: str = "cpu",
        compile: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.accelerator = accelerator
        self.device = torch.device("cuda" if accelerator == "gpu" else "cpu")
        self.compile = compile
        self.cpu_clock = cpu_clock
        self.speed_unit = "images per CPU-second" if cpu_clock else "images/s"
        self.scale = scale
        self.reps = reps
        self.e2e_reps = e2e_reps
        self.workdir = workdir

    def config(self, overrides: list[str]) -> DictConfig:
        """`train.py`'s config with `overrides`, writing into a fresh folder of the work directory."""
        out = self.run_dir("run")
        paths = [f"paths.data_dir={self.data_dir}", f"paths.log_dir={out}", f"paths.output_dir={out}"]
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=[*paths, *overrides])

    def batches(self, default: int) -> int:
        """The number of batches to time, `default` times `--scale` (at least 2)."""
        return max(2, round(default * self.scale))

    def run_dir(self, prefix: str) -> Path:
        """A fresh folder in the work directory, for a run started as a subprocess."""
        return self.workdir / f"{prefix}{next(_run_ids)}"

    # -- contenders ----------------------------------------------------------------------------------------
    def ours(self, overrides: list[str], batches: int) -> float:
        """Samples/s of `train.py`'s loop (the pipeline it calls), second epoch, `batches` steps per epoch."""
        cpu_clock = [f"+callbacks.cpu_clock._target_={CpuClock.__module__}.CpuClock"]
        cfg = self.config(
            [
                *overrides,
                "trainer.max_epochs=2",
                f"trainer.limit_train_batches={batches}",
                "test=false",
                *SHORT_VALIDATION,
                *(cpu_clock if self.cpu_clock else []),
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
            devices=1,  # Lightning's default takes every GPU: DDP children would re-run the whole bench
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
        self,
        overrides: list[str],
        batches: int,
        bf16: bool = False,
        channels_last: bool = False,
        compile: bool = False,
    ) -> float:
        """Samples/s of the plain loop on the same tensors, model and optimizer; after one warm-up pass. The
        tensors sit on the training device, as `data.placement=device` keeps them (on a CPU, the same memory)."""
        torch.manual_seed(0)
        datamodule, task = build(self.config(overrides))
        images, labels = (tensor.to(self.device) for tensor in datamodule.splits["train"].tensors)
        net = task.net.to(self.device)
        net = net.to(memory_format=torch.channels_last) if channels_last else net
        if compile:
            net.compile()
        optimizer = task.optimizer_factory(params=net.parameters())
        args = (net, optimizer, images, labels, datamodule.batch_size, datamodule.mean, datamodule.std)
        options = {"max_batches": batches, "bf16": bf16, "channels_last": channels_last}
        plain_loop.train_epoch(*args, **options)
        cpu_start = time.process_time()
        seen, seconds = plain_loop.train_epoch(*args, **options)
        return seen / (time.process_time() - cpu_start if self.cpu_clock else seconds)


# -- commands run as subprocesses (figures 3, 4 and 8) -----------------------------------------------------
def whole_runs(bench: Bench, overrides: list[str], reps: int) -> tuple[DictConfig, dict[str, Any]]:
    """`python train.py <overrides>` against `python bench/plain_loop.py` with the same recipe (read from the
    composed config), both from a cold start, alternated over `reps` repetitions.

    Returns the composed config and the pieces of a record: `runs` (wall seconds), `test_accuracy`, `cpu` (CPU
    seconds) and `plain_args`.
    """
    cfg = bench.config(overrides)
    plain_args = [
        "--epochs",
        str(cfg.trainer.max_epochs),
        "--batch-size",
        str(cfg.data.batch_size),
        "--lr",
        str(cfg.optimizer.lr),
        "--seed",
        str(cfg.seed),
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
        out = bench.run_dir("whole")
        command = [
            sys.executable,
            "train.py",
            "trainer.precision=32-true",  # the plain script's arithmetic (auto picks bf16 on bf16 hardware)
            *overrides,
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

    runs = alternate({"train.py": ours, "plain script": plain}, reps)
    return cfg, {"runs": runs, "test_accuracy": accuracy, "cpu": cpu, "plain_args": plain_args}


def timed_run(command: list[str], cpu: list[float]) -> tuple[float, str]:
    """Wall seconds and stdout of a command; appends its CPU seconds to `cpu` (robust to a busy machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall, result.stdout


def cpu_ratio(cpu: dict[str, list[float]], numerator: str, denominator: str) -> dict[str, Any]:
    """The extra fields of a record that also reads its commands in CPU seconds."""
    median = {name: statistics.median(values) for name, values in cpu.items()}
    return {"cpu_s": cpu, "cpu_median": median, "cpu_ratio": median[numerator] / median[denominator]}


# -- results -----------------------------------------------------------------------------------------------
def hardware() -> str:
    """The machine in one line: GPU, CPU, cores, torch and its threads, Python, load average."""
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
    """results.md: one table row per record, then the time per figure and the notes."""
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


def write_results(results: dict[str, Any], out: Path) -> None:
    """Write `out`/results.json and `out`/results.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
