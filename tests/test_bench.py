"""The benchmark's baseline trains on what `train.py` trains on, and the speed instruments count right.

No timings are asserted: speed lives in bench/, not in tests.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
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


def _tiny_bench_data(root: Path) -> Path:
    """FashionMNIST/raw and cifar-10-batches-py in their real formats, a few hundred random images each."""
    rng = np.random.default_rng(0)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", 300), ("t10k", 100)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, count) + labels.tobytes())
    batches = root / "cifar-10-batches-py"
    batches.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (60, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, 60).tolist(),
        }
        (batches / name).write_bytes(pickle.dumps(batch, protocol=4))
    return root


@pytest.mark.slow
def test_the_gpu_runbook_rehearses_every_step_on_the_cpu(tmp_path: Path) -> None:
    # every step of bench/gpu.sh at a tiny size, as `bash bench/gpu.sh --rehearse DATA_DIR OUT_DIR` runs it. The
    # compile step goes through its switches with torch.compile turned off (TORCH_COMPILE_DISABLE): compiling
    # ResNet-20 takes minutes on a CPU, and test_gpu_path.py compiles a network for real
    data, out = _tiny_bench_data(tmp_path / "data"), tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_WORK_DIR": str(tmp_path / "work"),
        "TORCH_COMPILE_DISABLE": "1",
        "PYTHONWARNINGS": "ignore",
    }
    result = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), "--rehearse", str(data), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert result.returncode == 0, (out / "summary.md").read_text() + result.stdout[-3000:]
    summary = (out / "summary.md").read_text()
    steps = (
        "smoke",
        "figure1",
        "figure5",
        "compile",
        "resnet20_cifar10",
        "vgg16_cifar10",
        "resnet18_cifar10",
        "alexnet_cifar10",
    )
    for step in steps:
        assert f"| {step} | ok |" in summary, summary
    assert {path.name for path in out.iterdir()} == {
        "summary.md", "log.txt", "runs.jsonl", "figure1.json", "figure5.json", "compile.json"
    }  # fmt: skip
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [run["run"] for run in runs] == list(steps[4:]) and all(
        run["status"] == "completed" for run in runs
    )
    assert all(run["epochs"] == 1 and run["test_acc"] is not None for run in runs)
