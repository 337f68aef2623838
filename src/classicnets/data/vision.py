"""Image classification data kept in memory as uint8 tensors, batched by indexing.

Datasets of this size fit in memory, so they are decoded once; normalisation and augmentation then run on
whole batches as tensor ops on the model's device (`on_after_batch_transfer`), not per image in workers. With
`placement=device` (`auto` on a GPU) the uint8 tensors themselves sit on the training device (`loading.py`).
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule

from classicnets.data.batches import TensorBatches, normalize, random_crop, random_hflip
from classicnets.data.errors import CorruptDatasetError
from classicnets.data.loading import InMemoryLoaders
from classicnets.errors import ConfigError


class InMemoryImageDataModule(InMemoryLoaders, LightningDataModule):
    """Base for image datasets that fit in memory. Subclasses say how to load a split as uint8 NCHW tensors."""

    classes: tuple[str, ...]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = False  # mirrored digits are other glyphs; mirrored photos are still the same class

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_fraction: float = 0.1,
        augment: bool = False,
        crop_padding: int = 4,
        hflip: bool | None = None,
        seed: int = 42,
        placement: str = "auto",
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, placement)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.data_dir = Path(data_dir).expanduser()
        self.val_fraction = val_fraction
        self.augment = augment
        self.crop_padding = crop_padding
        if hflip is not None:
            self.hflip = hflip
        self.source_used = "full"
        self.splits: dict[str, TensorBatches]

    @property
    def sizes(self) -> dict[str, Any]:
        """The sizes the model is built for; the pipeline passes them on as `${sizes.*}`."""
        return {
            "num_classes": len(self.classes),
            "channels": self.channels,
            "image_size": self.image_size,
            "vocab_size": None,  # sequence models read images row by row: no vocabulary
        }

    @abstractmethod
    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (uint8 images N×C×H×W, int64 labels N) of the official train or test split."""

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        images, labels = self._checked(*self.load_split(train=True))
        train, val = self.train_val_indices(len(labels))
        self.splits = {
            "train": TensorBatches(images[train], labels[train]),
            "val": TensorBatches(images[val], labels[val]),
            "test": TensorBatches(*self._checked(*self.load_split(train=False))),
        }

    def train_val_indices(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A seeded split of `n` training examples into (train, validation) indices."""
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        n_val = max(1, round(n * self.val_fraction))
        return order[n_val:], order[:n_val]

    def _checked(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expected = (self.channels, self.image_size, self.image_size)
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != expected or len(images) != len(labels):
            raise CorruptDatasetError(
                f"{type(self).__name__} in {self.data_dir}: got images {tuple(images.shape)} {images.dtype} and "
                f"{len(labels)} labels, expected uint8 N×{'×'.join(map(str, expected))} with one label each"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise CorruptDatasetError(
                f"{type(self).__name__} in {self.data_dir}: labels outside 0..{len(self.classes) - 1}"
            )
        return images.contiguous(), labels.long()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        images = self.transform_batch(images, training)
        if self.trainer is not None:
            # Lightning casts a batch to the precision's input type (bf16-true, 16-true) before this hook, while
            # the images are still uint8: cast what the model reads
            images = self.trainer.precision_plugin.convert_input(images)
        return images, labels

    def transform_batch(self, images: torch.Tensor, training: bool) -> torch.Tensor:
        """uint8 batch → normalised float batch, augmented when training with augmentation on."""
        if self.augment and training:
            if self.crop_padding:
                images = random_crop(images, self.crop_padding)
            if self.hflip:
                images = random_hflip(images)
        return normalize(images, self.mean, self.std)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to turn raw images into predictions without the dataset."""
        return {
            "classes": list(self.classes),
            "channels": self.channels,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "source": self.source_used,
        }
