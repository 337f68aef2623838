"""The benchmark's baseline trains on what `train.py` trains on, and the speed instruments count right.

No timings are asserted: speed lives in bench/, not in tests.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from classicnets.data.batches import normalize
from classicnets.run.build import build
from classicnets.run.callbacks import TrainingSpeed
from classicnets.run.devices import NVML_CUDA_CHECK, skip_futile_nvml_probe

ROOT = Path(__file__).resolve().parents[1]


def _plain_loop():
    spec = importlib.util.spec_from_file_location("plain_loop", ROOT / "bench" / "plain_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plain_loop_trains_on_the_same_images_with_the_same_normalisation(make_config) -> None:
    plain_loop = _plain_loop()
    datamodule, _ = build(make_config("data.source=sample", "data.val_fraction=0.1"))
    images, labels = datamodule.load_split(train=True)
    keep = plain_loop.holdout_split(len(labels), 0.1, datamodule.seed)
    ours_images, ours_labels = datamodule.splits["train"].tensors
    assert torch.equal(images[keep], ours_images)
    assert torch.equal(labels[keep].long(), ours_labels)
    batch = ours_images[:16]
    expected = normalize(batch, datamodule.mean, datamodule.std)
    assert torch.equal(plain_loop.normalize(batch, datamodule.mean, datamodule.std), expected)
    assert torch.equal(datamodule.transform_batch(batch, training=False), expected)


def test_plain_loop_learns(make_config) -> None:
    plain_loop = _plain_loop()
    datamodule, task = build(make_config("data.source=sample", "model=mlp", "model.hidden_sizes=[64]"))
    images, labels = datamodule.splits["train"].tensors
    optimizer = task.optimizer_factory(params=task.net.parameters())
    for _ in range(3):
        seen, seconds = plain_loop.train_epoch(
            task.net, optimizer, images, labels, 64, datamodule.mean, datamodule.std, max_batches=20
        )
    assert seen == 20 * 64 and seconds > 0
    val_images, val_labels = datamodule.splits["val"].tensors
    assert plain_loop.accuracy(task.net, val_images, val_labels, datamodule.mean, datamodule.std) > 0.6


def test_training_speed_counts_the_training_samples(make_config, tmp_path: Path) -> None:
    datamodule, task = build(make_config("data.source=sample", "model=mlp", "data.batch_size=32"))
    speed = TrainingSpeed()
    trainer = Trainer(
        max_epochs=1,
        limit_train_batches=5,
        limit_val_batches=1,
        callbacks=[speed],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=datamodule)
    assert speed.samples == 5 * 32
    assert trainer.callback_metrics["perf/train_samples_per_s"] > 0
    assert trainer.callback_metrics["perf/epoch_s"] >= speed.train_seconds > 0


def test_channels_last_switch(make_config) -> None:
    _, task = build(make_config("data.source=sample", "channels_last=true"))
    conv = next(m for m in task.net.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()


def test_cuda_availability_skips_the_nvml_probe_only_where_nvml_is_missing(monkeypatch) -> None:
    monkeypatch.setenv(NVML_CUDA_CHECK, "1")  # as importing Lightning leaves it
    available_before = torch.cuda.is_available()
    skip_futile_nvml_probe()
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        has_nvml = True
    except OSError:
        has_nvml = False
    assert (os.environ.get(NVML_CUDA_CHECK) == "1") == has_nvml
    assert torch.cuda.is_available() == available_before
