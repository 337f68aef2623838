"""In-memory data served a batch at a time, gathered where the data sit: in host memory or on the training device.

`data.placement` says where a split's tensors live while a run trains on it:

- `host`: in CPU memory. Each batch is gathered there (into pinned memory when training on a GPU, so that its
  copy to the device does not hold the host up) and Lightning copies it over.
- `device`: on the training device, copied there once. A batch's indices go over asynchronously (a few hundred
  bytes) and the batch is gathered, augmented and normalised on the device: no step waits on the host.
- `auto`: `device` on a GPU when the split takes at most `DEVICE_MEMORY_SHARE` of its free memory, `host`
  elsewhere. On a CPU both are the same memory and the same code.

The order is drawn on the host from (seed, epoch) (`sampling.EpochSampler`) whatever the placement, so a run trains
on the same batches in the same order wherever its data sit, and resumes the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

import torch
from lightning.pytorch import Trainer
from torch.utils.data import BatchSampler

from classicnets.data.sampling import EpochSampler, check_resumable
from classicnets.errors import ConfigError

log = logging.getLogger(__name__)

PLACEMENTS = ("auto", "host", "device")
# `auto` puts a split on the GPU when it takes at most this share of the GPU's free memory
DEVICE_MEMORY_SHARE = 0.25


class Gatherable(Protocol):
    """In-memory data that gathers a batch by index on the device it sits on."""

    def __len__(self) -> int: ...

    def gather(self, index: torch.Tensor, host_index: torch.Tensor) -> Any:
        """The batch of examples `index` (on the data's device; `host_index`, the same on the host)."""

    def to(self, device: torch.device) -> Gatherable:
        """The same data on `device`."""

    @property
    def device(self) -> torch.device: ...

    @property
    def nbytes(self) -> int: ...


D = TypeVar("D", bound=Gatherable)


def check_placement(placement: str) -> str:
    if placement not in PLACEMENTS:
        raise ConfigError(f"data.placement={placement!r}: choose one of {', '.join(PLACEMENTS)}")
    return placement


def training_device(trainer: Trainer | None) -> torch.device | None:
    """The device the trainer trains this process on; None without a trainer (the data stay on the host)."""
    return trainer.strategy.root_device if trainer is not None else None


class Placement:
    """Where a data module's splits live while training (`data.placement`), with their copies there, made once."""

    def __init__(self, placement: str) -> None:
        self.placement = check_placement(placement)
        self.copies: dict[str, Gatherable] = {}

    def place(self, name: str, data: D, device: torch.device | None) -> D:
        """Split `name` on the device it is to live on while training on `device`."""
        target = self.device_for(data.nbytes, device)
        copy = self.copies.get(name)
        if copy is not None and copy.device == target:
            return copy
        if target.type != "cpu":
            log.info(
                "data.placement=%s: the %s split (%.0f MB) sits on %s",
                self.placement,
                name,
                data.nbytes / 1e6,
                target,
            )
        self.copies[name] = copy = data.to(target)
        return copy

    def device_for(self, nbytes: int, device: torch.device | None) -> torch.device:
        if device is None or self.placement == "host":
            return torch.device("cpu")
        if self.placement == "device" or device.type == "cpu":
            return device
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return device if nbytes <= DEVICE_MEMORY_SHARE * free else torch.device("cpu")
        return torch.device("cpu")  # other accelerators: not measured here

    def forget(self) -> None:
        """Drop the copies (the splits were encoded again)."""
        self.copies = {}


class InMemoryLoader:
    """The batches of `data` in the order of `batch_sampler` (lists of indices), gathered where `data` sits: a
    single-process loader with nothing to copy between processes.

    Resumable in the middle of an epoch: `state_dict` holds the epoch and the batches done (the same number on
    every DDP process: the sampler shards by itself), and a loader given it back starts after them. Lightning
    takes it like any iterable and, under DDP, leaves it as it is (it rewrites `DataLoader`s only); it calls
    `set_epoch` on `batch_sampler.sampler` at every epoch's start.
    """

    def __init__(self, data: Gatherable, batch_sampler: BatchSampler, device: torch.device | None) -> None:
        self.data = data
        self.batch_sampler = batch_sampler
        # `order`, not `sampler`: Lightning would take a `sampler` for a DataLoader's
        self.order: EpochSampler = batch_sampler.sampler
        # a batch gathered in host memory for a GPU goes there from pinned memory, without stopping the host
        self.pin = data.device.type == "cpu" and device is not None and device.type == "cuda"
        self.done = 0
        self._restored: tuple[int, int] | None = None  # (epoch, batches done) from a checkpoint

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[Any]:
        restored, self._restored = self._restored, None
        skip = restored[1] if restored is not None and restored[0] == self.order.epoch else 0
        self.done = skip
        for position, indices in enumerate(self.batch_sampler):
            if position < skip:
                continue
            self.done += 1
            yield self._gather(torch.as_tensor(indices, dtype=torch.long))

    def _gather(self, host_index: torch.Tensor) -> Any:
        where = self.data.device
        if where.type == "cpu":
            batch = self.data.gather(host_index, host_index)
            return _pinned(batch) if self.pin else batch
        index = host_index.pin_memory() if where.type == "cuda" else host_index
        return self.data.gather(index.to(where, non_blocking=True), host_index)

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.order.epoch,
            "batches": self.done,
            "seed": self.order.seed,
            "world_size": self.order.num_replicas,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        if not state:
            return
        check_resumable(state, self.order.seed, self.order.num_replicas, position=state.get("batches", 0))
        self._restored = (state["epoch"], state.get("batches", 0))


class InMemoryLoaders:
    """The three loaders of a data module whose encoded splits sit in memory (`splits`, by name), placed by its
    `placement`. The order is a function of (`seed`, epoch), so a resumed run sees the epochs it would have seen,
    and each loader checkpoints its position inside the epoch; under DDP each process gets its shard. A data
    module says how an order is cut into batches by overriding `batches`."""

    trainer: Trainer | None

    def __init__(self, batch_size: int, eval_batch_size: int, seed: int, placement: str) -> None:
        super().__init__()  # the data module's base (LightningDataModule)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.placement = Placement(placement)
        self.splits: dict[str, Any] = {}

    def train_dataloader(self) -> Iterable[Any]:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> Iterable[Any]:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> Iterable[Any]:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> Iterable[Any]:
        device = training_device(self.trainer)
        data = self.placement.place(split, self.splits[split], device)
        # overfitting a few batches (trainer.overfit_batches) needs the same ones every epoch
        shuffle = shuffle and not (self.trainer is not None and self.trainer.overfit_batches)
        order = EpochSampler(len(data), self.seed, shuffle=shuffle)
        return InMemoryLoader(data, self.batches(data, order, batch_size, shuffle), device)

    def batches(self, data: Any, order: EpochSampler, batch_size: int, shuffle: bool) -> BatchSampler:
        """`order` cut into batches of `batch_size`, in its order."""
        return BatchSampler(order, batch_size, drop_last=False)


def _pinned(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, tuple):
        return tuple(_pinned(item) for item in batch)
    return batch
