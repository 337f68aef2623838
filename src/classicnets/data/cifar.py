"""CIFAR-10 from the official python pickle batches in `<data_dir>/cifar-10-batches-py/`."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import download_and_extract_archive

from classicnets.data.download import download_or_explain
from classicnets.data.errors import CorruptDatasetError
from classicnets.data.vision import InMemoryImageDataModule

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only: a data file must not be able to run code."""

    allowed: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR batch")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    try:
        with open(path, "rb") as file:
            batch = _ArrayUnpickler(file, encoding="latin1").load()
        return np.asarray(batch["data"], dtype=np.uint8), list(batch["labels"])
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as error:
        raise CorruptDatasetError(
            f"{path} is not a readable CIFAR-10 batch ({type(error).__name__}: {error}); "
            "delete the folder and download it again."
        ) from error


class CIFAR10DataModule(InMemoryImageDataModule):
    """Krizhevsky's CIFAR-10: 50k/10k, 32×32 RGB, 10 classes."""

    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    channels = 3
    image_size = 32
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    hflip = True

    @property
    def batches_dir(self) -> Path:
        return self.data_dir / CIFAR10.base_folder

    def prepare_data(self) -> None:
        if all((self.batches_dir / name).is_file() for name in TRAIN_BATCHES + TEST_BATCHES):
            return
        download_or_explain(
            lambda: download_and_extract_archive(
                CIFAR10.url, str(self.data_dir), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5
            ),
            "CIFAR-10",
            self.batches_dir,
            TRAIN_BATCHES + TEST_BATCHES,
        )

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [read_batch(self.batches_dir / name) for name in (TRAIN_BATCHES if train else TEST_BATCHES)]
        images = np.concatenate([data for data, _ in parts]).reshape(-1, 3, 32, 32)
        labels = [label for _, batch_labels in parts for label in batch_labels]
        return torch.from_numpy(images), torch.tensor(labels)
