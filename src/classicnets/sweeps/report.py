"""A sweep, compared: `python -m classicnets.sweeps.report <sweep_dir>` (or `classicnets-report`).

Reads every job's overrides (`.hydra/overrides.yaml`), final metrics (`metrics.json`), outcome (`status.json`)
and validation curve (TensorBoard events, else the CSV logger's file), and writes into the sweep directory:
`report.md` and `report.csv` (one row per job, sorted by the optimized metric) and PNG plots (the metric against
each swept parameter, grouped by a second one, and all validation curves overlaid). A sweep still running, one
with failed jobs, and a single run directory are reported alike.

When `seed` is swept, the runs that differ only in their seed are one configuration: report.md opens with a
table of each configuration's mean ± standard deviation (and n) of every metric, `report_seeds.csv` has them
for every metric, the bars of the plots are means with standard-deviation error bars, and the curves are each
configuration's mean with a ±1 standard deviation band.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from classicnets.run.console import SWEEP_LOGGER, shown_path
from classicnets.run.files import CONFIG_FILE, METRICS_FILE, OVERRIDES_FILE, STATUS_FILE, read_metrics
from classicnets.run.status import process_alive, read_status

REPORT_NAME = "report"
# overrides the report leaves out
IGNORED = ("paths.", "hydra.")
# metric names where lower is better
LOWER_IS_BETTER = re.compile(r"loss|error|perplexity|wer|cer", re.IGNORECASE)
# the override whose runs are repetitions of one configuration
SEED = "seed"


@dataclass
class Job:
    """One run of the sweep, as found on disk."""

    name: str
    overrides: dict[str, str]
    metrics: dict[str, float]
    status: str
    reason: str | None = None
    wall_time_s: float | None = None
    epochs: int | None = None
    curve: list[float] = field(default_factory=list)

    def label(self, params: Sequence[str]) -> str:
        return ", ".join(f"{p.split('.')[-1]}={self.overrides.get(p, '-')}" for p in params) or self.name


@dataclass
class Configuration:
    """The runs of a seed sweep that differ only in their seed; its statistics count the completed ones."""

    overrides: dict[str, str]
    jobs: list[Job]

    @property
    def completed(self) -> list[Job]:
        return [job for job in self.jobs if job.status == "completed"]

    def values(self, metric: str) -> list[float]:
        return [job.metrics[metric] for job in self.completed if metric in job.metrics]

    def label(self, params: Sequence[str]) -> str:
        return ", ".join(f"{p.split('.')[-1]}={self.overrides.get(p, '-')}" for p in params) or "all runs"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1); the deviation of fewer than two values is NaN."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def find_jobs(root: Path) -> list[Path]:
    """The run directories under `root` (a sweep), or `root` itself when it is one run."""
    if (root / OVERRIDES_FILE).is_file():
        return [root]
    found = {path.parent.parent for path in root.rglob(OVERRIDES_FILE)}
    return sorted(found, key=lambda p: [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", str(p))])


def read_job(path: Path, root: Path, curve_metric: str) -> Job:
    overrides = _overrides(path / OVERRIDES_FILE)
    metrics_file = path / METRICS_FILE
    metrics = read_metrics(path)
    scalars = read_scalars(path)
    if not metrics:  # still running, or stopped early: what it has logged so far
        metrics = {tag: values[-1] for tag, values in scalars.items() if tag.startswith(("val/", "test/"))}
    recorded = read_status(path) or {}
    status = recorded.get("status") or ("completed" if metrics_file.is_file() else "unknown")
    if status == "running" and _stopped(recorded):
        status = "killed"
    wall_time = recorded.get("wall_time_s")
    if wall_time is None and status == "running":
        wall_time = time.time() - path.joinpath(STATUS_FILE).stat().st_ctime
    # train/loss_epoch: the name of the epoch mean in runs made before it was logged as train/loss
    epochs = scalars.get("train/loss") or scalars.get("train/loss_epoch") or scalars.get(curve_metric) or []
    return Job(
        name=str(path.relative_to(root)) if path != root else path.name,
        overrides=overrides,
        metrics=metrics,
        status=status,
        reason=recorded.get("reason"),
        wall_time_s=wall_time,
        epochs=len(epochs) or None,
        curve=scalars.get(curve_metric, []),
    )


def _overrides(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (item.split("=", 1) for item in yaml.safe_load(path.read_text()) or [] if "=" in item)
    # where the files are is no parameter of the experiment (and differs between machines)
    return {key.lstrip("+~"): value for key, value in pairs if not key.lstrip("+~").startswith(IGNORED)}


def _stopped(recorded: dict) -> bool:
    """A `running` record of a process of this machine that no longer exists: killed without a word."""
    return bool(recorded.get("pid")) and not process_alive(recorded["pid"], recorded.get("host"))


def read_scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar a run logged, tag → values in step order (TensorBoard events, else the CSV logger)."""
    events = sorted(run_dir.glob("tensorboard/**/events.out.tfevents.*"))
    if events:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        scalars: dict[str, list[float]] = {}
        for directory in sorted({e.parent for e in events}):
            accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0, "images": 1})
            accumulator.Reload()
            for tag in accumulator.Tags()["scalars"]:
                # 0.0 at step 0 is the placeholder that declares a metric to the HPARAMS tab, not a measurement
                points = [e.value for e in accumulator.Scalars(tag) if e.step > 0 or e.value != 0.0]
                scalars.setdefault(tag, []).extend(points)
        return scalars
    table = next(iter(sorted(run_dir.glob("csv/**/metrics.csv"))), None)
    if table is None:
        return {}
    scalars = {}
    with table.open() as file:
        for row in csv.DictReader(file):
            for tag, value in row.items():
                if value not in ("", None) and tag not in ("epoch", "step"):
                    scalars.setdefault(tag, []).append(float(value))
    return scalars


def swept_parameters(jobs: list[Job]) -> tuple[list[str], dict[str, str]]:
    """Overrides that differ between jobs (the swept ones), and those every job shares."""
    keys = list(dict.fromkeys(key for job in jobs for key in job.overrides))
    if len(jobs) == 1:
        return keys, {}
    swept = [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
    fixed = {k: jobs[0].overrides[k] for k in keys if k not in swept}
    return swept, fixed


def optimized_metric(paths: list[Path]) -> str:
    """The `optimized_metric` of the runs' configs (what train.py returns to the sweeper)."""
    for path in paths:
        config = path / CONFIG_FILE
        if config.is_file():
            value = (yaml.safe_load(config.read_text()) or {}).get("optimized_metric")
            if value:
                return value
    return "val/loss"


def _sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _format(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


class Report:
    """The table and plots of one sweep directory."""

    def __init__(self, root: Path, metric: str | None = None) -> None:
        self.root = root
        paths = find_jobs(root)
        if not paths:
            raise FileNotFoundError(
                f"no runs under {root}: expected run directories with .hydra/overrides.yaml "
                "(a sweep's directory, e.g. logs/multiruns/<date>, or one run's directory)"
            )
        self.metric = metric or optimized_metric(paths)
        self.higher_is_better = not LOWER_IS_BETTER.search(self.metric)
        base = self.metric.removesuffix("_best")
        self.curve_metric = base if base.startswith("val/") else "val/loss"
        self.jobs = [read_job(path, root, self.curve_metric) for path in paths]
        self.params, self.fixed = swept_parameters(self.jobs)
        self.jobs.sort(key=self._rank)
        # what the sweep compares: with seeds swept, the configurations that are repeated over them
        self.seeds = self.values(SEED) if SEED in self.params else []
        self.factors = [p for p in self.params if p != SEED]
        self.configurations = self._configurations() if self.seeds else []
        self.all_metrics = sorted(
            {m for job in self.jobs for m in job.metrics if m.startswith(("val/", "test/"))}
        )
        # the Markdown table: the optimized metric, its validation value, and every test metric the task logged
        # (its `task.metrics`); the CSV has them all
        tested = [m for m in self.all_metrics if m.startswith("test/")]
        candidates = [self.metric, base, *tested, "val/loss"]
        self.shown = [m for m in dict.fromkeys(candidates) if any(m in job.metrics for job in self.jobs)]

    def _rank(self, job: Job) -> tuple[bool, float]:
        value = job.metrics.get(self.metric)
        if value is None:
            return (True, 0.0)
        return (False, -value if self.higher_is_better else value)

    def values(self, param: str) -> list[str]:
        return sorted({job.overrides[param] for job in self.jobs if param in job.overrides}, key=_sort_key)

    def _configurations(self) -> list[Configuration]:
        """The jobs grouped by all their swept overrides but the seed, best mean first."""
        groups: dict[tuple[str, ...], Configuration] = {}
        for job in self.jobs:
            key = tuple(job.overrides.get(p, "") for p in self.factors)
            groups.setdefault(key, Configuration(dict(zip(self.factors, key, strict=True)), [])).jobs.append(
                job
            )

        def rank(configuration: Configuration) -> tuple[bool, float]:
            mean = mean_std(configuration.values(self.metric))[0]
            if math.isnan(mean):
                return (True, 0.0)
            return (False, -mean if self.higher_is_better else mean)

        return sorted(groups.values(), key=rank)

    def write(self, output: Path | None = None) -> list[Path]:
        """Write report.md, report.csv and the plots; return their paths."""
        output = output or self.root
        output.mkdir(parents=True, exist_ok=True)
        plots = self.plot(output)
        written = [self.write_csv(output / f"{REPORT_NAME}.csv"), *plots]
        if self.configurations:
            written.insert(1, self.write_seeds_csv(output / f"{REPORT_NAME}_seeds.csv"))
        written.insert(0, self.write_markdown(output / f"{REPORT_NAME}.md", plots))
        return written

    def write_csv(self, path: Path) -> Path:
        with path.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(
                ["job", *self.params, *self.all_metrics, "epochs", "wall_time_s", "status", "reason"]
            )
            for job in self.jobs:
                writer.writerow(
                    [
                        job.name,
                        *(job.overrides.get(p, "") for p in self.params),
                        *(_format(job.metrics.get(m), 6) for m in self.all_metrics),
                        job.epochs or "",
                        _format(job.wall_time_s, 1),
                        job.status,
                        job.reason or "",
                    ]
                )
        return path

    def write_seeds_csv(self, path: Path) -> Path:
        """One row per configuration: mean, standard deviation and n of every metric over its seeds."""
        with path.open("w", newline="") as file:
            writer = csv.writer(file)
            stats = [f"{metric} {stat}" for metric in self.all_metrics for stat in ("mean", "std", "n")]
            writer.writerow([*self.factors, "runs", "completed", "seeds", *stats])
            for configuration in self.configurations:
                cells = []
                for metric in self.all_metrics:
                    values = configuration.values(metric)
                    mean, std = mean_std(values)
                    cells += [_format(mean, 6), _format(std, 6), len(values)]
                seeds = " ".join(
                    sorted((job.overrides.get(SEED, "") for job in configuration.jobs), key=_sort_key)
                )
                counts = [len(configuration.jobs), len(configuration.completed), seeds]
                writer.writerow([*configuration.overrides.values(), *counts, *cells])
        return path

    def _seed_table(self) -> list[str]:
        """Mean ± standard deviation of each shown metric per configuration; a metric some runs lack says its n."""
        better = "higher" if self.higher_is_better else "lower"
        lines = [
            "## Mean ± standard deviation over seeds",
            "",
            f"Each configuration ran with seeds {', '.join(self.seeds)}; n is the number of its completed runs (the "
            "statistics leave the others out), the deviation the sample standard deviation (n − 1). Sorted by the "
            f"mean `{self.metric}` ({better} is better).",
            "",
        ]
        header = ["rank", *self.factors, *self.shown, "n", "epochs", "wall time (s)"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for rank, configuration in enumerate(self.configurations, 1):
            n = len(configuration.completed)
            cells = []
            for metric in self.shown:
                values = configuration.values(metric)
                mean, std = mean_std(values)
                cell = _format(mean) + (f" ± {_format(std)}" if len(values) > 1 else "")
                cells.append(cell + (f" (n={len(values)})" if len(values) != n else ""))
            epochs = [job.epochs for job in configuration.completed if job.epochs]
            times = [job.wall_time_s for job in configuration.completed if job.wall_time_s is not None]
            runs = str(n) if n == len(configuration.jobs) else f"{n} of {len(configuration.jobs)}"
            lines.append(
                "| "
                + " | ".join(
                    [
                        str(rank),
                        *configuration.overrides.values(),
                        *cells,
                        runs,
                        str(max(epochs)) if epochs else "",
                        _format(_mean(times), 0),
                    ]
                )
                + " |"
            )
        return [*lines, "", "## Every run", ""]

    def write_markdown(self, path: Path, plots: list[Path]) -> Path:
        counts = {
            status: sum(j.status == status for j in self.jobs) for status in {j.status for j in self.jobs}
        }
        better = "higher" if self.higher_is_better else "lower"
        lines = [
            f"# Sweep report: {self.root.name}",
            "",
            f"{len(self.jobs)} runs ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}), "
            f"sorted by `{self.metric}` ({better} is better).",
            "",
        ]
        if self.fixed:
            lines += ["Shared by every run: " + " ".join(f"`{k}={v}`" for k, v in self.fixed.items()), ""]
        if self.configurations:
            lines += self._seed_table()
        header = ["rank", "job", *self.params, *self.shown, "epochs", "wall time (s)", "status"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for rank, job in enumerate(self.jobs, 1):
            cells = [
                str(rank),
                job.name,
                *(job.overrides.get(p, "") for p in self.params),
                *(_format(job.metrics.get(m)) for m in self.shown),
                str(job.epochs or ""),
                _format(job.wall_time_s, 0),
                job.status,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += self._effects()
        problems = [job for job in self.jobs if job.status != "completed"]
        if problems:
            lines += ["", "## Runs that did not complete", "", *(self._problem(job) for job in problems)]
        if plots:
            lines += ["", "## Plots", ""]
            lines += [f"![{plot.stem}]({plot.name})" for plot in plots]
        path.write_text("\n".join(lines) + "\n")
        return path

    def _problem(self, job: Job) -> str:
        reason = f": {' '.join(job.reason.split())}" if job.reason else ""
        return f"- `{job.name}` ({job.label(self.params)}): **{job.status}**{reason}"

    def _effects(self) -> list[str]:
        """Mean of the metric for each value of each swept parameter, averaged over the other parameters."""
        if len(self.jobs) < 2 or not self.factors:
            return []
        lines = ["", f"## Mean `{self.metric}` per parameter value", ""]
        lines += ["| parameter | value | mean | runs |", "|---|---|---|---|"]
        for param in self.factors:
            for value in self.values(param):
                scores = self._scores(param, value)
                lines.append(f"| {param} | {value} | {_format(_mean(scores))} | {len(scores)} |")
        return lines

    def _scores(
        self, param: str, value: str, other: str | None = None, other_value: str | None = None
    ) -> list[float]:
        return [
            job.metrics[self.metric]
            for job in self.jobs
            if job.overrides.get(param) == value
            and (other is None or job.overrides.get(other) == other_value)
            and self.metric in job.metrics
        ]

    def plot(self, output: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        plots = []
        slug = self.metric.replace("/", "_")
        # one run has nothing to compare: its parameters are in the table, its curve below
        for param in self.factors if len(self.jobs) > 1 else []:
            others = [p for p in self.factors if p != param]
            group = others[0] if others else None
            figure, axes = plt.subplots(figsize=(7, 4.5))
            values = self.values(param)
            groups = self.values(group) if group else [None]
            width = 0.8 / len(groups)
            for g, group_value in enumerate(groups):
                label = group_value  # once per group, on its first bar
                for v, value in enumerate(values):
                    scores = self._scores(param, value, group, group_value)
                    if not scores:
                        continue
                    x = v - 0.4 + width * (g + 0.5)
                    mean, std = mean_std(scores)
                    # over seeds: the mean with its standard deviation
                    error = std if self.seeds and len(scores) > 1 else None
                    axes.bar(x, mean, width, color=f"C{g % 10}", alpha=0.75, label=label)
                    if error is not None:
                        axes.errorbar(x, mean, yerr=error, color="black", capsize=4, linewidth=1, zorder=4)
                    label = None
                    axes.scatter([x] * len(scores), scores, color="black", s=8, zorder=3)
            axes.set_xticks(range(len(values)), values)
            axes.set_xlabel(param)
            axes.set_ylabel(self.metric)
            rest = f", mean over {', '.join(others[1:])}" if len(others) > 1 else ""
            seeds = f"; mean ± std over seeds {', '.join(self.seeds)}" if self.seeds else ""
            axes.set_title(
                f"{self.metric} by {param}" + (f" and {group}{rest}" if group else "") + seeds, fontsize=10
            )
            self._zoom(axes)
            if group:
                axes.legend(fontsize=8, title=group, title_fontsize=8)
            plots.append(self._save(figure, output / f"{slug}_by_{param}.png"))
        if self.configurations and any(job.curve for job in self.jobs):
            plots.append(self._plot_mean_curves(output))
            return plots
        curves = [job for job in self.jobs if job.curve]
        if curves:
            figure, axes = plt.subplots(figsize=(11 if len(curves) > 8 else 8, 5))
            for job in curves:
                label = job.label(self.params) if len(self.jobs) > 1 else job.name
                axes.plot(range(1, len(job.curve) + 1), job.curve, marker=".", label=label)
            axes.set_xlabel("validation (epoch)")
            axes.set_ylabel(self.curve_metric)
            axes.set_title(f"{self.curve_metric} of every run", fontsize=10)
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            if len(curves) <= 8:
                axes.legend(fontsize=7)
            else:  # beside the plot: over it, two dozen entries would hide the curves
                axes.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            plots.append(self._save(figure, output / "val_curves.png"))
        return plots

    def _plot_mean_curves(self, output: Path) -> Path:
        """Each configuration's validation curve: the mean over its seeds, in a ±1 standard deviation band."""
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        figure, axes = plt.subplots(figsize=(8, 5))
        for c, configuration in enumerate(self.configurations):
            curves = [job.curve for job in configuration.completed if job.curve]
            if not curves:
                continue
            epochs = range(1, max(len(curve) for curve in curves) + 1)
            stats = [mean_std([curve[e - 1] for curve in curves if len(curve) >= e]) for e in epochs]
            mean = [m for m, _ in stats]
            std = [0.0 if math.isnan(d) else d for _, d in stats]
            label = f"{configuration.label(self.factors)} (n={len(curves)})"
            axes.plot(epochs, mean, marker=".", color=f"C{c % 10}", label=label)
            low = [m - d for m, d in zip(mean, std, strict=True)]
            high = [m + d for m, d in zip(mean, std, strict=True)]
            axes.fill_between(epochs, low, high, color=f"C{c % 10}", alpha=0.2, linewidth=0)
        axes.set_xlabel("validation (epoch)")
        axes.set_ylabel(self.curve_metric)
        axes.set_title(f"{self.curve_metric}: mean ± std over seeds {', '.join(self.seeds)}", fontsize=10)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(fontsize=7)
        return self._save(figure, output / "val_curves.png")

    def _zoom(self, axes) -> None:
        # bars from zero hide differences of a few points of accuracy: start the axis near the lowest run
        scores = [job.metrics[self.metric] for job in self.jobs if self.metric in job.metrics]
        for configuration in self.configurations:  # and keep the error bars in view
            mean, std = mean_std(configuration.values(self.metric))
            if not math.isnan(std):
                scores += [mean - std, mean + std]
        if scores:
            low, high = min(scores), max(scores)
            margin = max((high - low) * 0.15, 1e-3)
            axes.set_ylim(max(low - margin, 0.0) if low >= 0 else low - margin, high + margin)

    @staticmethod
    def _save(figure, path: Path) -> Path:
        figure.savefig(path, dpi=110, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(figure)
        return path


class ReportAtSweepEnd(Callback):
    """A Hydra callback (conf/hydra/default.yaml): when a `-m` sweep ends, its report is written into the sweep
    directory and its path printed. A report that cannot be written is a warning: the jobs' results are on disk."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        console = logging.getLogger(SWEEP_LOGGER)
        events = logging.getLogger("tensorboard")  # its event reader logs every file it opens
        level = events.level
        events.setLevel(logging.WARNING)
        try:
            written = Report(sweep_dir.resolve()).write()
        except Exception as error:  # the sweep itself is done: say why there is no report, and go on
            console.warning(
                "no report for %s (%s: %s); `python -m classicnets.sweeps.report %s` retries",
                sweep_dir,
                type(error).__name__,
                error,
                sweep_dir,
            )
            return
        finally:
            events.setLevel(level)
        console.info(
            "report of the sweep: %s (tables and %d plots beside it)",
            shown_path(written[0]),
            len(written) - 2,
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="classicnets-report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sweep_dir", type=Path, help="a sweep directory (logs/multiruns/...) or one run directory"
    )
    parser.add_argument(
        "--metric", help="the metric to sort and plot by (default: the runs' optimized_metric)"
    )
    parser.add_argument("--output", type=Path, help="where to write the report (default: sweep_dir)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a directory")
    try:
        report = Report(args.sweep_dir.resolve(), args.metric)
    except FileNotFoundError as error:
        parser.error(str(error))
    for path in report.write(args.output):
        print(path)


if __name__ == "__main__":
    main()
