"""MNIST and Fashion-MNIST from the official IDX files, in torchvision's layout `<data_dir>/<Name>/raw/`."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from classicnets.data.download import download_or_explain
from classicnets.data.errors import DatasetNotFoundError
from classicnets.data.fallback import SAMPLES_DIR, SampleFallback
from classicnets.data.idx import read_idx
from classicnets.data.vision import InMemoryImageDataModule


class IDXDataModule(SampleFallback, InMemoryImageDataModule):
    """A 28×28 grey dataset in IDX files; `source=auto` falls back to a shipped sample when there is one."""

    folder: str
    torchvision_dataset: type[torchvision.datasets.MNIST]
    sample_description = "a few thousand real images"
    channels = 1
    image_size = 28

    def __init__(self, *args, source: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_source(source)

    @property
    def dataset_name(self) -> str:
        return self.folder

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / self.folder / "raw"

    @staticmethod
    def _split_files(train: bool) -> tuple[str, str]:
        prefix = "train" if train else "t10k"
        return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"

    @classmethod
    def _find(cls, directory: Path, name: str) -> Path | None:
        return next((p for p in (directory / name, directory / f"{name}.gz") if p.is_file()), None)

    @property
    def full_location(self) -> Path:
        return self.raw_dir

    def has_full(self) -> bool:
        names = self._split_files(True) + self._split_files(False)
        return all(self._find(self.raw_dir, name) for name in names)

    def download_full(self) -> None:
        download_or_explain(
            lambda: self.torchvision_dataset(str(self.data_dir), download=True),
            self.folder,
            self.raw_dir,
            self._split_files(True) + self._split_files(False),
        )

    def setup(self, stage: str | None = None) -> None:
        self.resolve_source()
        super().setup(stage)

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        directory = self.sample_dir if self.source_used == "sample" else self.raw_dir
        paths = [self._find(directory, name) for name in self._split_files(train)]
        if None in paths:
            missing = [
                name for name, path in zip(self._split_files(train), paths, strict=True) if path is None
            ]
            raise DatasetNotFoundError(f"{self.folder}: missing {', '.join(missing)} (or .gz) in {directory}")
        images, labels = (read_idx(path) for path in paths)
        return images.unsqueeze(1), labels


class MNISTDataModule(IDXDataModule):
    """LeCun et al. handwritten digits: 60k/10k, 28×28 grey."""

    folder = "MNIST"
    torchvision_dataset = torchvision.datasets.MNIST
    sample_dir = SAMPLES_DIR / "mnist"
    classes = tuple(str(digit) for digit in range(10))
    mean = (0.1307,)
    std = (0.3081,)


class FashionMNISTDataModule(IDXDataModule):
    """Zalando's Fashion-MNIST: 60k/10k, 28×28 grey clothing images."""

    folder = "FashionMNIST"
    torchvision_dataset = torchvision.datasets.FashionMNIST
    classes = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip
    mean = (0.2860,)
    std = (0.3530,)
    hflip = True
