"""Whole-batch tensor operations: the fast path that replaces per-image PIL transforms."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class TensorBatches(Dataset):
    """In-memory tensors served a batch at a time: `gather` (`loading.InMemoryLoader`) or a DataLoader's
    `__getitems__` index all of them with a batch's indices at once."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        if len({len(t) for t in tensors}) != 1:
            raise ValueError("all tensors must have the same length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(t[index] for t in self.tensors)

    def gather(self, index: torch.Tensor, host_index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def to(self, device: torch.device) -> TensorBatches:
        return TensorBatches(*(t.to(device) for t in self.tensors))

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def keep_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Collate function for `TensorBatches`: the batch is already stacked."""
    return batch


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 NCHW → float32 NCHW, standardised per channel."""
    mean_t, std_t = _channel_tensors(tuple(mean), tuple(std), images.device)
    return (images.float().div_(255) - mean_t) / std_t


@lru_cache(maxsize=16)
def _channel_tensors(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # made once per device: built each batch, they were a host-to-device copy, and so a sync, every step on a GPU
    shape = (1, -1, 1, 1)
    return torch.tensor(mean, device=device).view(shape), torch.tensor(std, device=device).view(shape)


def random_crop(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad every image by `padding` and cut a random window of the original size, one offset per image."""
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device)
    rows = (torch.arange(h, device=images.device) + dy)[:, None, :, None]
    cols = (torch.arange(w, device=images.device) + dx)[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_hflip(images: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(len(images), device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)
