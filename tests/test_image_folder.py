"""`data=image_folder`: a user's own images, decoded once, cached, and trained on like the built-in datasets."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from classicnets.data import CorruptDatasetError, DatasetNotFoundError, ImageFolderDataModule
from classicnets.run.pipeline import train
from tests.conftest import make_image_folder

CLASSES = ("bright", "dark", "striped")


class TinyNet(nn.Module):
    """A user's own model, defined outside classicnets and trained through `model._target_`."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2)
        )
        self.head = nn.Linear(width * 4, num_classes)
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] == self.image_size
        return self.head(self.features(x).flatten(1))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    return make_image_folder(tmp_path / "train"), make_image_folder(tmp_path / "test", per_class=4, seed=1)


def _add_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12)).save(path)


def _module(train_dir: Path, test_dir: Path, **kwargs) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(train_dir, test_dir, batch_size=8, eval_batch_size=8, num_workers=0, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    return dm


def test_classes_sizes_and_statistics_come_from_the_files(folders: tuple[Path, Path]) -> None:
    dm = _module(*folders)
    assert dm.classes == CLASSES
    assert dm.sizes["num_classes"] == 3 and dm.sizes["channels"] == 3 and dm.sizes["image_size"] == 12
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [27, 3, 12]
    train_images = dm.splits["train"].tensors[0].float() / 255
    torch.testing.assert_close(torch.tensor(dm.mean), train_images.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        torch.tensor(dm.std), train_images.std(dim=(0, 2, 3), correction=0), rtol=1e-4, atol=1e-5
    )
    # labels follow the sorted folder names: the striped test images are class 2
    test_images, test_labels = dm.splits["test"].tensors
    assert test_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert test_images[:4].float().mean() > 150 > test_images[4:8].float().mean()
    state = dm.state_dict()
    assert state["classes"] == list(CLASSES) and state["image_size"] == 12 and len(state["mean"]) == 3
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 12, 12) and labels.dtype == torch.long


def test_grey_jpeg_and_bmp_resized_and_converted(tmp_path: Path) -> None:
    train = make_image_folder(tmp_path / "train", size=10, suffix=".jpg")
    test = make_image_folder(tmp_path / "test", per_class=2, size=16, suffix=".bmp")
    Image.new("L", (20, 20), 128).save(train / "dark" / "grey.png")
    dm = _module(train, test, image_size=8, channels=1)
    assert (dm.sizes["channels"], dm.sizes["image_size"]) == (1, 8)
    assert dm.splits["test"].tensors[0].shape == (6, 1, 8, 8)
    assert dm.splits["train"].tensors[0].shape[1:] == (1, 8, 8)


def test_different_sizes_need_image_size(tmp_path: Path) -> None:
    train = make_image_folder(tmp_path / "train", size=12)
    odd = train / "dark" / "odd.png"
    Image.new("RGB", (16, 16)).save(odd)
    with pytest.raises(CorruptDatasetError, match=r"odd\.png is 16×16.*data\.image_size"):
        _module(train, train)
    assert _module(train, train, image_size=12).image_size == 12


def test_separate_validation_folder(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    val = make_image_folder(tmp_path / "val", per_class=2, seed=2)
    dm = _module(*folders, val_dir=val)
    assert [len(dm.splits[s]) for s in ("train", "val")] == [30, 6]


def test_decode_cache_is_reused_and_invalidated(folders: tuple[Path, Path], caplog) -> None:
    train, test = folders
    caplog.set_level(logging.INFO, logger="classicnets.data.image_folder")
    first = _module(train, test)
    assert sum(r.message.startswith("decoded") for r in caplog.records) == 2
    cache_files = sorted((train / ".classicnets_cache").glob("*.pt"))
    assert len(cache_files) == 2  # one per folder; the cache folder itself is not a class

    caplog.clear()
    second = _module(train, test)
    assert sum("from the cache" in r.message for r in caplog.records) == 2
    assert not any(r.message.startswith("decoded") for r in caplog.records)
    assert torch.equal(first.splits["train"].tensors[0], second.splits["train"].tensors[0])

    # edit one test image: that folder is decoded again, the other still comes from the cache
    edited = test / "bright" / "000.png"
    Image.new("RGB", (12, 12), (0, 0, 0)).save(edited)
    later = edited.stat().st_mtime_ns + 10**9  # filesystems with coarse timestamps still see a change
    os.utime(edited, ns=(later, later))
    caplog.clear()
    third = _module(train, test)
    decoded = [r.message for r in caplog.records if r.message.startswith("decoded")]
    assert len(decoded) == 1 and str(test) in decoded[0]
    assert third.splits["test"].tensors[0][0].max() == 0
    assert len(list((train / ".classicnets_cache").glob("*.pt"))) == 2  # the stale file was replaced


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda train, test: (train / "dark" / "001.png").write_bytes(b"not a png"),
            r"001\.png is not an image",
        ),
        (lambda train, test: (train / "dark" / "001.png").write_bytes(b""), r"001\.png is an empty file"),
        (lambda train, test: (train / "empty").mkdir(), r"class folder .*empty has no images"),
        (lambda train, test: _add_image(test / "zebra" / "0.png"), r"does not: zebra"),
    ],
    ids=["unreadable", "empty-file", "empty-class", "unknown-test-class"],
)
def test_bad_folders_are_named(folders: tuple[Path, Path], damage, message: str) -> None:
    train, test = folders
    damage(train, test)
    with pytest.raises(CorruptDatasetError, match=message):
        _module(train, test)


def test_missing_folder(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    with pytest.raises(DatasetNotFoundError, match="missing is not a folder"):
        _module(folders[0], tmp_path / "missing")


def test_large_folders_stream_from_disk(folders: tuple[Path, Path], caplog) -> None:
    in_memory = _module(*folders, cache=False)
    streamed = _module(*folders, in_memory_limit_gb=0.0)
    assert "stream from disk" in caplog.text and streamed.streaming
    assert not (folders[0] / ".classicnets_cache").exists()
    np.testing.assert_allclose(streamed.mean, in_memory.mean, rtol=1e-6)  # every image is in the sample here
    images, labels = next(iter(streamed.test_dataloader()))
    expected_images, expected_labels = (tensor[:8] for tensor in in_memory.splits["test"].tensors)
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)


def test_trains_a_users_model_on_an_image_folder(make_config, folders: tuple[Path, Path]) -> None:
    train_dir, test_dir = folders
    cfg = make_config(
        "data=image_folder",
        f"data.train_dir={train_dir}",
        f"data.test_dir={test_dir}",
        "data.batch_size=8",
        "model=custom",
        f"model._target_={__name__}.TinyNet",
        "+model.width=16",
        "optimizer.lr=0.02",
        "trainer.max_epochs=6",
    )
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.9, metrics
    assert {key: cfg.sizes[key] for key in ("num_classes", "channels", "image_size")} == {
        "num_classes": 3,
        "channels": 3,
        "image_size": 12,
    }
