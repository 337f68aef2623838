"""logger=mlflow, logger=wandb and several loggers at once: a tiny training each, read back from what the
tracker wrote (MLflow's store through MLflow's own client, the offline W&B run file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from classicnets.run.pipeline import train
from tests.conftest import run_script
from tests.wandb_files import offline_runs

TINY = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "data.source=sample",
    "optimizer.lr=0.002",
)


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """W&B with nothing written outside `tmp_path` and no network call (WANDB_MODE=offline from the start)."""
    env = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp_path / "wandb_home"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb_home" / "cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_home" / "config"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb_home" / "data"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _mlflow_runs(log_dir: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{log_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("classicnets")
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_mlflow_keeps_hyperparameters_curves_final_metrics_and_checkpoints(
    make_config, tmp_path: Path
) -> None:
    metrics = train(make_config("logger=mlflow", *TINY))

    client, runs = _mlflow_runs(tmp_path / "logs")
    (run,) = runs
    assert run.info.status == "FINISHED"
    params, tags = run.data.params, run.data.tags
    assert params["optimizer.lr"] == "0.002" and params["model._target_"] == "classicnets.models.LeNet5"
    assert params["data.source"] == "sample" and int(params["model.parameters"]) > 10_000
    assert Path(params["checkpoint.best"]).is_file() and params["checkpoint.best"].endswith(".ckpt")
    assert params["checkpoint.last"] == str(tmp_path / "checkpoints" / "last.ckpt")
    assert tags["run_dir"] == tags["sweep"] == str(tmp_path)  # a single run is its own group
    assert "optimizer.lr=0.002" in tags["mlflow.runName"]
    # one validation point per epoch, and the final metrics (metrics.json) under final/
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")] == [3, 7]
    assert run.data.metrics["final/test/acc"] == pytest.approx(metrics["test/acc"])
    assert run.data.metrics["final/val/acc_best"] == pytest.approx(metrics["val/acc_best"])
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert not (tmp_path / "mlruns").exists()  # nothing lands in the folder the run started in


def test_wandb_offline_run_file_holds_the_run(make_config, tmp_path: Path, wandb_offline) -> None:
    metrics = train(make_config("logger=wandb", *TINY))

    (run,) = offline_runs(tmp_path)
    assert run["run"]["project"] == "classicnets" and run["run"]["group"] == str(tmp_path)
    assert run["config"]["optimizer.lr"] == 0.002 and run["config"]["data.source"] == "sample"
    assert Path(run["config"]["checkpoint.best"]).is_file()
    validations = [row for row in run["history"] if "val/acc" in row]
    assert [row["trainer/global_step"] for row in validations] == [3, 7]
    assert run["summary"]["final/test/acc"] == pytest.approx(metrics["test/acc"])
    assert not list(Path(wandb_offline["WANDB_DIR"]).glob("wandb/offline-run-*"))  # the run is in the run dir


@pytest.mark.slow
def test_sweep_with_three_loggers_groups_its_runs(tmp_path: Path, wandb_offline) -> None:
    sweep = tmp_path / "sweep"
    done = run_script(
        "train.py",
        "-m",
        "logger=[tensorboard,mlflow,wandb]",
        "seed=1,2",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "data.source=sample",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for job in ("0", "1"):
        assert list((sweep / job / "tensorboard").glob("events.out.tfevents.*"))

    _, runs = _mlflow_runs(tmp_path / "logs")
    assert [run.data.tags["sweep"] for run in runs] == [str(sweep)] * 2
    assert ["seed=1" in run.info.run_name for run in runs] == [True, False]
    assert [run.data.params["seed"] for run in runs] == ["1", "2"]

    wandb_runs = offline_runs(sweep)
    assert [run["run"]["group"] for run in wandb_runs] == [str(sweep)] * 2
    assert sorted(run["config"]["seed"] for run in wandb_runs) == [1, 2]


@pytest.mark.slow
def test_jobs_starting_together_create_one_mlflow_store(tmp_path: Path) -> None:
    """The jobs of `launcher=parallel` start at once: one creates the store's tables, the others wait for it."""
    job = (
        "import sys\n"
        "from classicnets.run.trackers import MLFlowLogger\n"
        "logger = MLFlowLogger(experiment_name='classicnets', tracking_uri=sys.argv[1], run_name=sys.argv[2])\n"
        "logger.log_hyperparams({'job': sys.argv[2]})\n"
        "logger.finalize('success')\n"
    )
    uri = f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}"
    jobs = [
        subprocess.Popen([sys.executable, "-c", job, uri, str(n)], stderr=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    errors = [process.communicate(timeout=300)[1] for process in jobs]
    assert [process.returncode for process in jobs] == [0, 0, 0], errors
    _, runs = _mlflow_runs(tmp_path / "logs")
    assert sorted(run.data.params["job"] for run in runs) == ["0", "1", "2"]
