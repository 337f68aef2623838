"""Sweeps end to end on the shipped MNIST sample: the studies compose, failures are recorded, re-runs skip
finished jobs, parallel jobs get their own GPU, DDP stays in its job, Optuna searches, and the report reads it."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image

from classicnets.run.config import register
from classicnets.run.status import read_status, write_status
from classicnets.sweeps.report import Report
from classicnets.sweeps.report import main as report_main
from tests.conftest import CONF_DIR, ROOT, run_script

STUDIES = sorted(path.stem for path in (CONF_DIR / "experiment").glob("study_*.yaml"))
# sizes every model config can be built with (image and text models alike)
SIZES = {"num_classes": 10, "channels": 3, "image_size": 32, "vocab_size": 50}


def tiny(tmp_path: Path) -> list[str]:
    """Two training steps per job on the MNIST sample, everything written under tmp_path."""
    return [
        "data.source=sample",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "data.eval_batch_size=256",
    ]


def _compose(*overrides: str):
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def _sweep_jobs(params: dict[str, str]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of `hydra.sweeper.params`."""
    parsed = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]


def _covering(jobs: list[list[str]]) -> list[list[str]]:
    """Enough of the jobs to see every value of every swept parameter once (composing all 24 takes long)."""
    chosen, seen = [], set()
    for job in jobs:
        if not set(job) <= seen:
            chosen.append(job)
            seen |= set(job)
    return chosen


def _leaves(node: DictConfig, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) of every plain value under `node` (interpolations left out)."""
    leaves = []
    for key in node:
        value = node._get_node(key)
        if isinstance(value, DictConfig):
            leaves += _leaves(value, f"{prefix}{key}.")
        elif not value._is_interpolation():
            leaves.append((f"{prefix}{key}", value._value()))
    return leaves


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_job_composes_and_builds_its_model(study: str) -> None:
    params = _compose(f"experiment={study}").hydra.sweeper.params
    jobs = _sweep_jobs(dict(params))
    assert len(jobs) >= 4, jobs
    for job in _covering(jobs):
        cfg = _compose(f"experiment={study}", *job)
        chosen = cfg.hydra.runtime.choices
        for key, value in (override.split("=", 1) for override in job):
            if value.startswith("["):  # several regularization options: each sets the keys its file names
                for option in value.strip("[]").split(","):
                    for path, expected in _leaves(OmegaConf.load(CONF_DIR / key / f"{option}.yaml")):
                        assert OmegaConf.select(cfg, path) == expected, (job, path)
                continue
            got = chosen[key] if key in chosen else OmegaConf.select(cfg, key)
            assert str(got) == value, (job, key)
        with open_dict(cfg):
            cfg.sizes = SIZES
        assert sum(p.numel() for p in instantiate(cfg.model).parameters()) > 0


def test_lenet5_study_is_the_full_grid() -> None:
    jobs = _sweep_jobs(dict(_compose("experiment=study_lenet5").hydra.sweeper.params))
    assert len({tuple(job) for job in jobs}) == 3 * 4 * 2


@pytest.mark.parametrize(
    ("choice", "launcher"),
    [
        ("launcher=parallel", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        ("launcher=gpus", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        ("launcher=slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ],
)
def test_launcher_configs(choice: str, launcher: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASSICNETS_NUM_GPUS", "3")
    hydra = _compose(choice).hydra
    assert hydra.launcher._target_ == launcher
    if choice == "launcher=gpus":
        assert hydra.launcher.n_jobs == 3 and hydra.callbacks.job_resources.num_gpus == 3
    if choice == "launcher=slurm":
        assert hydra.launcher.gpus_per_node == 1 and hydra.launcher.array_parallelism > 0


@pytest.mark.slow
def test_sweep_records_failures_reports_and_rerun_skips_finished_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    # there is no "swish" activation: those two jobs fail while building the model
    command = [
        "-m",
        "model.activation=relu,swish",
        "model.pooling=max,avg",
        *tiny(tmp_path),
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_script("train.py", *command)
    assert result.returncode == 0, result.stderr[-3000:]
    statuses = {job: read_status(sweep / job) for job in "0123"}
    assert [statuses[job]["status"] for job in "0123"] == ["completed", "completed", "failed", "failed"]
    assert statuses["2"]["reason"].startswith("ValueError: unknown activation 'swish'")
    assert (sweep / "0" / "metrics.json").is_file() and not (sweep / "2" / "metrics.json").exists()

    assert report_main([str(sweep)]) is None
    rows = (sweep / "report.csv").read_text().splitlines()
    header, rows = rows[0].split(","), [row.split(",") for row in rows[1:]]
    assert len(rows) == 4
    column = {name: header.index(name) for name in ("model.activation", "model.pooling", "status")}
    assert sorted((r[column["model.activation"]], r[column["model.pooling"]]) for r in rows) == [
        ("relu", "avg"),
        ("relu", "max"),
        ("swish", "avg"),
        ("swish", "max"),
    ]
    assert [r[column["status"]] for r in rows][2:] == ["failed", "failed"]  # sorted last
    markdown = (sweep / "report.md").read_text()
    assert "2 completed, 2 failed" in markdown and "unknown activation 'swish'" in markdown
    plots = sorted(sweep.glob("*.png"))
    assert {p.name for p in plots} == {
        "val_acc_best_by_model.activation.png",
        "val_acc_best_by_model.pooling.png",
        "val_curves.png",
    }
    for plot in plots:
        with Image.open(plot) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300

    finished = {job: (sweep / job / "status.json").stat().st_mtime_ns for job in "01"}
    again = run_script("train.py", *command, "resume=auto")  # how a sweep is resumed (docs/sweeps.md)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("finished run: skipped") == 2
    assert {job: (sweep / job / "status.json").stat().st_mtime_ns for job in "01"} == finished
    assert read_status(sweep / "2")["status"] == "failed"  # tried again, and failed again


@pytest.mark.slow
def test_report_of_a_single_run_and_of_runs_in_progress(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_script(
        "train.py", *tiny(tmp_path), "trainer.limit_train_batches=3", f"hydra.run.dir={run}", "model=mlp"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_status(run)["status"] == "completed"
    single = Report(run)
    assert len(single.jobs) == 1 and single.jobs[0].status == "completed" and single.jobs[0].epochs == 1
    single.write()
    assert (run / "report.md").is_file()

    # a sweep caught in the middle: one job still training (this process), one killed without a word
    sweep = tmp_path / "sweep"
    for job, pid in (("0", os.getpid()), ("1", 2**22 + 1)):
        shutil.copytree(run, sweep / job, ignore=shutil.ignore_patterns("report*", "*.png"))
        (sweep / job / "metrics.json").unlink()
        write_status(sweep / job, "running", pid=pid)
    overrides = sweep / "0" / ".hydra" / "overrides.yaml"
    overrides.write_text(yaml.safe_dump([*yaml.safe_load(overrides.read_text()), "optimizer.lr=0.1"]))
    report = Report(sweep)
    assert {job.name: job.status for job in report.jobs} == {"0": "running", "1": "killed"}
    assert report.params == ["optimizer.lr"]
    assert all("val/acc" in job.metrics and job.wall_time_s is not None for job in report.jobs)


@pytest.mark.slow
def test_parallel_gpu_launcher_gives_each_job_its_own_device(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "launcher=gpus",
        "hydra.callbacks.job_resources.num_gpus=2",  # as on a machine with two GPUs
        "model=mlp",
        "model.hidden_sizes=[16],[32]",
        *tiny(tmp_path),
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    devices = {read_status(sweep / job)["cuda_visible_devices"] for job in "01"}
    assert devices == {"0", "1"}
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert all(f"{threads} CPU threads" in (sweep / job / "train.log").read_text() for job in "01")


@pytest.mark.slow
def test_ddp_in_a_sweep_job_writes_into_that_job_only(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    jobs = "model.hidden_sizes=[8],[16]"  # one after the other in one process: the first leaves no DDP behind
    result = run_script(
        "train.py", "-m", "trainer=ddp_cpu", "model=mlp", jobs, *tiny(tmp_path), f"hydra.sweep.dir={sweep}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert read_status(sweep / job)["status"] == "completed"
        assert "test/acc" in json.loads((sweep / job / "metrics.json").read_text())
        assert (sweep / job / "train_ddp_process_1.log").is_file()
    # rank 1 ran each job as a single run in the job's directory: no second sweep, no stray run directory
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert (sweep / "multirun.yaml").is_file() and (sweep / "report.md").is_file()  # the sweep ended once
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_optuna_search_runs_three_trials(tmp_path: Path) -> None:
    sweep, storage = tmp_path / "sweep", f"sqlite:///{tmp_path / 'optuna.db'}"
    result = run_script(
        "train.py",
        "hparams_search=lenet_optuna",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={storage}",
        *tiny(tmp_path),
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name="lenet5", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert len({t.params["optimizer.lr"] for t in trials}) == 3
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(t.value for t in trials)
    for job in "012":
        returned = json.loads((sweep / job / "metrics.json").read_text())["val/acc_best"]
        assert returned in {t.value for t in trials}
    assert len(Report(sweep).params) == 5  # the searched hyperparameters, one column each
    assert OmegaConf.load(sweep / "0" / ".hydra" / "config.yaml").optimized_metric == "val/acc_best"


def test_report_of_a_seed_sweep_shows_mean_std_and_n(tmp_path: Path) -> None:
    """Two optimizers × three seeds, one seed of adamw failed: the files of six runs, as train.py writes them."""
    sweep = tmp_path / "sweep"
    test_acc = {"adam": [0.90, 0.92, 0.94], "adamw": [0.80, 0.83, None]}
    for job, (optimizer, seed) in enumerate((o, s) for o in test_acc for s in range(3)):
        run = sweep / str(job)
        (run / ".hydra").mkdir(parents=True)
        overrides = [
            f"optimizer={optimizer}",
            f"seed={seed}",
            "trainer.max_epochs=2",
            f"paths.data_dir={tmp_path}",
        ]
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": "val/acc_best"}))
        accuracy = test_acc[optimizer][seed]
        (run / "csv").mkdir()
        curve = [0.5 + 0.1 * seed, 0.7 + 0.1 * seed] if accuracy else [0.4]
        rows = ["epoch,step,val/acc"] + [f"{e},{e},{v}" for e, v in enumerate(curve)]
        (run / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
        if accuracy is None:
            write_status(run, "failed", "RuntimeError: out of memory", wall_time_s=5.0)
            continue
        metrics = {"test/acc": accuracy, "val/acc_best": accuracy - 0.01, "val/acc": curve[-1]}
        (run / "metrics.json").write_text(json.dumps(metrics))
        write_status(run, "completed", wall_time_s=60.0 + seed)

    report = Report(sweep)
    assert report.seeds == ["0", "1", "2"] and report.factors == ["optimizer"]
    assert [c.overrides for c in report.configurations] == [{"optimizer": "adam"}, {"optimizer": "adamw"}]
    report.write()

    markdown = (sweep / "report.md").read_text()
    assert "## Mean ± standard deviation over seeds" in markdown
    table = markdown.split("## Mean ± standard deviation over seeds")[1].split("## Every run")[0]
    # adam: test/acc 0.90, 0.92, 0.94 → 0.92 ± 0.02 (sample std); adamw: 0.80, 0.83, its seed 2 failed
    assert "| 1 | adam | 0.9100 ± 0.0200 | 0.8000 ± 0.1000 | 0.9200 ± 0.0200 | 3 | 2 | 61 |" in table
    assert "| 2 | adamw | 0.8050 ± 0.0212 | 0.7500 ± 0.0707 | 0.8150 ± 0.0212 | 2 of 3 | 2 | 60 |" in table
    assert markdown.count("| completed |") == 5 and "out of memory" in markdown

    with (sweep / "report_seeds.csv").open() as file:
        rows = {row["optimizer"]: row for row in csv.DictReader(file)}
    assert rows["adam"]["seeds"] == "0 1 2" and (rows["adamw"]["runs"], rows["adamw"]["completed"]) == (
        "3",
        "2",
    )
    assert float(rows["adam"]["test/acc mean"]) == pytest.approx(0.92)
    assert float(rows["adam"]["test/acc std"]) == pytest.approx(0.02)
    assert rows["adamw"]["test/acc n"] == "2" and float(rows["adamw"]["test/acc mean"]) == pytest.approx(
        0.815
    )

    # the bars carry error bars, and the curves are means over the seeds in a band
    import matplotlib.pyplot as plt

    figures = []
    original = plt.subplots
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt, "subplots", lambda *a, **k: figures.append(original(*a, **k)) or figures[-1])
        (tmp_path / "plots").mkdir()
        report.plot(tmp_path / "plots")
    (bars, _), (curves, _) = figures
    errorbars = [c for c in bars.axes[0].containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(errorbars) == 2
    half_lengths = [(s[1][1] - s[0][1]) / 2 for c in errorbars for s in c.lines[2][0].get_segments()]
    assert sorted(half_lengths) == pytest.approx([0.02, 0.0212132], abs=1e-6)  # val/acc_best's deviations
    lines = curves.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["optimizer=adam (n=3)", "optimizer=adamw (n=2)"]
    assert list(lines[0].get_ydata()) == pytest.approx([0.6, 0.8])  # mean over seeds 0.5, 0.6, 0.7 / …
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} == {
        "val_acc_best_by_optimizer.png",
        "val_curves.png",
    }


@pytest.mark.slow
def test_gpu_sweep_workers_keep_their_share_of_the_cores(tmp_path: Path) -> None:
    # four jobs on two GPUs: the second job of each joblib worker starts after the first narrowed that worker's
    # CUDA_VISIBLE_DEVICES to one GPU, where `${gpu_count:}` would count one job at once and take every core
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "launcher=gpus", "model=mlp", "model.hidden_sizes=[8],[16],[24],[32]",
         *tiny(tmp_path), f"hydra.sweep.dir={sweep}"],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "0,1", "PYTHONWARNINGS": "ignore"},
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert all(f"{threads} CPU threads" in (sweep / job / "train.log").read_text() for job in "0123")
