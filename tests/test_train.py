"""End-to-end behaviour of the core entry points on the MNIST sample shipped with the package."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from classicnets.data import CIFAR10DataModule, DatasetNotFoundError, MNISTDataModule
from classicnets.run.build import build
from classicnets.run.callbacks import SavedWeights
from classicnets.run.pipeline import evaluate, train
from classicnets.tasks import ClassificationTask
from classicnets.tasks.classification import augmented_logits
from tests.conftest import CONF_DIR, run_script

# the image models take the data's channels as `in_channels`; `custom` has no class until the user names one
IMAGE_MODELS = sorted(
    p.stem
    for p in (CONF_DIR / "model").glob("*.yaml")
    if "\nin_channels:" in p.read_text() and p.stem != "custom"
)


@pytest.mark.parametrize("model", IMAGE_MODELS)
def test_fast_dev_run_every_image_model(make_config, model: str) -> None:
    cfg = make_config(
        f"model={model}", "trainer.fast_dev_run=true", "data.batch_size=8", "data.eval_batch_size=8"
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    # the sizes the model was built for came from the data module
    assert (cfg.sizes.num_classes, cfg.sizes.channels, cfg.sizes.image_size) == (10, 1, 28)


def test_lenet5_learns_from_the_shipped_sample(make_config) -> None:
    cfg = make_config("trainer.max_epochs=5", "data.source=sample")
    metrics = train(cfg)
    # 5 epochs × 36 steps on 4,500 real digits; chance is 0.10
    assert metrics["test/acc"] > 0.85, metrics
    assert metrics["val/acc_best"] >= metrics["val/acc"] - 1e-6


def test_run_directory_and_tensorboard(make_config, tmp_path: Path) -> None:
    cfg = make_config("trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.log_every_n_steps=1")
    train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert {"test/acc", "test/f1", "test/acc_top5", "val/acc_best", "train/loss"} <= saved.keys()
    checkpoints = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert "last.ckpt" in checkpoints and any(name.startswith("best-") for name in checkpoints)

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss_step", "train/loss", "val/acc", "test/acc", "lr-Adam"} <= set(tags["scalars"])
    assert {"test/confusion_matrix", "test/misclassified"} <= set(tags["images"])
    hparams = {
        value.tag
        for path in (tmp_path / "tensorboard").glob("events.out.tfevents.*")
        for event in EventFileLoader(str(path)).Load()
        for value in event.summary.value
        if value.metadata.plugin_data.plugin_name == "hparams"
    }
    assert "_hparams_/session_start_info" in hparams


def test_eval_reproduces_the_test_metrics_of_the_checkpoint(make_config, tmp_path: Path) -> None:
    trained = train(make_config("trainer.max_epochs=2", "trainer.limit_train_batches=10"))
    best = next((tmp_path / "checkpoints").glob("best-*.ckpt"))
    eval_dir = tmp_path / "eval"
    cfg = make_config(f"ckpt_path={best}", config_name="eval")
    cfg.paths.output_dir = str(eval_dir)
    evaluated = evaluate(cfg)
    for key in ("test/acc", "test/f1", "test/loss"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6)
    assert json.loads((eval_dir / "metrics.json").read_text())["test/acc"] == pytest.approx(
        trained["test/acc"]
    )
    # `task.<key>=…` reaches the rebuilt task: mirrored digits change the averaged logits
    flipped = make_config(f"ckpt_path={best}", "++task.test_time_flip=true", config_name="eval")
    flipped.paths.output_dir = str(tmp_path / "eval_flipped")
    assert evaluate(flipped)["test/loss"] != pytest.approx(trained["test/loss"], abs=1e-4)


def test_the_best_checkpoint_is_tested_whether_or_not_it_is_read_back(make_config, tmp_path: Path) -> None:
    # the lowest validation accuracy picks the first of two epochs: the model in memory is not the best, and
    # the test must read the checkpoint back; its metrics are those eval.py gets from the file
    trained = train(make_config("trainer.max_epochs=2", "trainer.limit_train_batches=10", "monitor_mode=min"))
    best = next((tmp_path / "checkpoints").glob("best-*.ckpt"))
    assert best.name == "best-epoch000.ckpt"
    cfg = make_config(f"ckpt_path={best}", config_name="eval")
    cfg.paths.output_dir = str(tmp_path / "eval")
    assert evaluate(cfg)["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)


def test_saved_weights_tell_whether_the_model_is_what_was_saved(make_config) -> None:
    _, task = build(make_config("data.source=sample"))
    saved = SavedWeights()
    saved.on_save_checkpoint(None, task, {"global_step": 3})
    saved.on_save_checkpoint(None, task, {"global_step": 3})  # last.ckpt after best: the same weights
    assert saved.holds(task, 3) and not saved.holds(task, 2)
    weight = next(task.parameters())
    kept = weight.detach().clone()
    weight.data[0] = 0.0  # written through .data: no version counter would see it
    assert not saved.holds(task, 3)
    weight.data.copy_(kept)
    assert saved.holds(task, 3)
    # weights changed between two saves of one step: neither file can stand for the model
    with torch.no_grad():
        next(task.parameters()).mul_(2.0)
    saved.on_save_checkpoint(None, task, {"global_step": 3})
    assert not saved.holds(task, 3)


def test_resume_continues_epoch_step_and_optimizer_state(make_config, tmp_path: Path) -> None:
    train(make_config("trainer.max_epochs=1", "trainer.limit_train_batches=6", "scheduler=step"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=True)
    assert first["global_step"] == 6

    train(
        make_config(
            "trainer.max_epochs=2", "trainer.limit_train_batches=6", "scheduler=step", f"ckpt_path={last}"
        )
    )
    resumed = torch.load(last, weights_only=True)
    assert resumed["global_step"] == 12 and resumed["epoch"] == first["epoch"] + 1
    assert resumed["optimizer_states"][0]["state"][0]["step"] == 12  # Adam's moment counters carried on
    assert resumed["lr_schedulers"][0]["last_epoch"] == 2


def test_missing_dataset_offline_names_the_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="data_batch_1"):
        CIFAR10DataModule(tmp_path).prepare_data()
    forbidden = MNISTDataModule(tmp_path, source="full")
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):
        forbidden.prepare_data()


def test_sample_fallback_is_loud_and_recorded(tmp_path: Path) -> None:
    datamodule = MNISTDataModule(tmp_path)
    with pytest.warns(UserWarning, match="SAMPLE"):
        datamodule.setup()
    assert datamodule.source_used == "sample" and datamodule.state_dict()["source"] == "sample"


def test_cli_help_cfg_and_bad_option(tmp_path: Path) -> None:
    help_text = run_script("train.py", "--help").stdout
    assert "model: " in help_text and "lenet5" in help_text
    job = run_script("train.py", "model=alexnet", "data=cifar10", "--cfg", "job").stdout
    assert "classicnets.models.AlexNet" in job and "CIFAR10DataModule" in job
    bad = run_script("train.py", "model=lenet6", f"hydra.run.dir={tmp_path}")
    assert bad.returncode != 0
    assert "Could not find 'model/lenet6'" in bad.stderr and "lenet5" in bad.stderr


@pytest.mark.slow
def test_default_training_command_offline(tmp_path: Path) -> None:
    result = run_script(
        "train.py",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # offline, without MNIST on disk: the shipped sample, recorded with the run's hyperparameters
    assert "data.source: sample" in (tmp_path / "tensorboard" / "hparams.yaml").read_text()
    assert (tmp_path / ".hydra" / "config.yaml").is_file() and (tmp_path / "metrics.json").is_file()


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    result = run_script(
        "train.py",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "test/acc" in metrics
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def _test_metrics(task: ClassificationTask, images: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, targets), batch_size=8)
    [metrics] = trainer.test(task, batches, verbose=False)
    return metrics


def test_test_time_flip_treats_an_image_and_its_mirror_alike() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    images, targets = torch.randn(20, 3, 6, 6), torch.randint(0, 3, (20,))
    plain = ClassificationTask(net, optimizer=partial(torch.optim.SGD, lr=0.1), num_classes=3)
    flip = ClassificationTask(
        net, optimizer=partial(torch.optim.SGD, lr=0.1), num_classes=3, test_time_flip=True
    )
    mirrored = images.flip(-1)
    assert _test_metrics(plain, images, targets)["test/loss"] != pytest.approx(
        _test_metrics(plain, mirrored, targets)["test/loss"]
    )
    assert _test_metrics(flip, images, targets) == pytest.approx(_test_metrics(flip, mirrored, targets))
    with pytest.raises(ValueError, match="test_time_flip=false"):
        flip.test_step((torch.randint(0, 9, (4, 7)), targets[:4]), 0)


def test_test_time_shift_averages_the_image_with_its_moved_views() -> None:
    images = torch.rand(2, 1, 5, 5)

    def top_left_pixel(batch: torch.Tensor) -> torch.Tensor:
        return batch[:, :, 0, 0]

    # both moved views start at pixel (1, 1): the up-left one through the reflect padding
    expected = images[:, :, 0, 0] / 2 + images[:, :, 1, 1] / 2
    assert torch.equal(augmented_logits(top_left_pixel, images, flip=False, shift=1), expected)
    assert torch.equal(augmented_logits(top_left_pixel, images, flip=False), images[:, :, 0, 0])


def test_training_epoch_means_weigh_every_example_once() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    # learning rate 0: the weights stay put, so the epoch means can be recomputed afterwards
    task = ClassificationTask(net, optimizer=partial(torch.optim.SGD, lr=0.0), num_classes=3)
    inputs, targets = torch.randn(10, 4), torch.randint(0, 3, (10,))
    batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, targets), batch_size=4)
    trainer = Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(task, batches)  # batches of 4, 4 and 2 examples
    logits = net(inputs)
    logged = trainer.callback_metrics
    assert logged["train/loss"].item() == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-5)
    assert logged["train/acc"].item() == pytest.approx((logits.argmax(1) == targets).float().mean().item())
    assert "train/loss_step" in logged
