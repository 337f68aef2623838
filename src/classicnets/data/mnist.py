"""MNIST and Fashion-MNIST from the official IDX files, in torchvision's layout `<data_dir>/<Name>/raw/`."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from lightning.pytorch.utilities import rank_zero_warn

from classicnets.data.download import download_or_explain
from classicnets.data.errors import DatasetNotFoundError
from classicnets.data.idx import read_idx
from classicnets.data.vision import InMemoryImageDataModule

SAMPLES_DIR = Path(__file__).parent / "samples"
SOURCES = ("auto", "full", "sample")


class IDXDataModule(InMemoryImageDataModule):
    """A 28×28 grey dataset in IDX files; `source=auto` falls back to a shipped sample when there is one."""

    folder: str
    torchvision_dataset: type[torchvision.datasets.MNIST]
    sample_dir: Path | None = None
    channels = 1
    image_size = 28

    def __init__(self, *args, source: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if source not in SOURCES or (source == "sample" and self.sample_dir is None):
            valid = SOURCES if self.sample_dir else ("auto", "full")
            raise ValueError(f"{type(self).__name__}: source must be one of {valid}, got {source!r}")
        self.source = source

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

    def _has_full(self) -> bool:
        names = self._split_files(True) + self._split_files(False)
        return all(self._find(self.raw_dir, name) for name in names)

    def prepare_data(self) -> None:
        if self.source == "sample" or self._has_full():
            return
        try:
            download_or_explain(
                lambda: self.torchvision_dataset(str(self.data_dir), download=True),
                self.folder,
                self.raw_dir,
                self._split_files(True) + self._split_files(False),
            )
        except DatasetNotFoundError as error:
            if self.source == "full" or self.sample_dir is None:
                raise
            rank_zero_warn(f"{error}\n\n*** Falling back to the small sample shipped with classicnets. ***")

    def setup(self, stage: str | None = None) -> None:
        if self.source == "sample" or (self.source == "auto" and not self._has_full() and self.sample_dir):
            if self.source == "auto":
                rank_zero_warn(
                    f"*** {self.folder} not found in {self.raw_dir}: training on the SAMPLE shipped with "
                    f"classicnets (a few thousand real images), not the full dataset. Results are not "
                    f"comparable to published ones. Pass data.source=full to forbid this fallback. ***"
                )
            self.source_used = "sample"
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
