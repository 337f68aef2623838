"""tune=lr_find: Lightning's learning-rate finder on the composed model and data, from the command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from classicnets.run.checkpoints import load_checkpoint, saved_config
from classicnets.run.tune import tune
from tests.conftest import run_script

SEARCH = ("tune=lr_find", "tune.num_training=40", "tune.max_lr=0.1", "data.source=sample")


@pytest.mark.slow
def test_lr_find_saves_its_plot_prints_the_suggestion_and_stops(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = run_script(
        "train.py",
        *SEARCH,
        "trainer.enable_progress_bar=false",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    suggested = re.search(r"suggested learning rate: optimizer\.lr=([0-9.e-]+)", done.stdout)
    assert suggested and 1e-6 < float(suggested.group(1)) < 0.1
    with Image.open(run / "lr_find.png") as image:
        image.verify()
        assert image.format == "PNG"
    # it stopped: nothing was trained, and the finder's own temporary checkpoint is gone
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists()
    assert not list(run.glob(".lr_find*"))


def test_lr_find_then_train_with_the_suggestion(make_config, tmp_path: Path, capsys) -> None:
    cfg = make_config(*SEARCH, "tune.apply=true", "trainer.max_epochs=1", "trainer.limit_train_batches=5")
    metrics = tune(cfg)

    lr = float(re.search(r"optimizer\.lr=([0-9.e-]+)", capsys.readouterr().out).group(1))
    assert metrics["test/acc"] > 0 and (tmp_path / "lr_find.png").is_file()
    # the run trained with it, and its checkpoint's config says so (eval and resume see the same learning rate)
    (best,) = (tmp_path / "checkpoints").glob("best-*.ckpt")
    checkpoint = load_checkpoint(best)
    assert saved_config(checkpoint)["optimizer"]["lr"] == pytest.approx(lr, rel=1e-2)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(lr, rel=1e-2)
