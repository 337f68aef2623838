"""Training order as a function of (seed, epoch), resumable in the middle of an epoch.

`DataLoader(shuffle=True)` draws its permutation from the global RNG, so the order after a resume depends on
everything that consumed random numbers before. Here every epoch's permutation comes from its own generator,
and the position inside the epoch is part of the checkpoint: Lightning saves `state_dict()` of any training
loader that has one and calls `load_state_dict()` before it iterates again, then counts on the loader to
yield only the batches that are left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSampler(Sampler[int]):
    """A permutation of `range(size)` seeded with `seed + epoch` (as `DistributedSampler` does).

    Lightning calls `set_epoch` at the start of every epoch. `consumed` counts the indices handed out in the
    current epoch; a single-process loader asks for exactly `batch_size` indices per batch, so it is the
    position to resume from.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.consumed = 0
        self._start = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._start = 0  # a position restored for another epoch does not apply
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator)[self._start :].tolist()
        self.consumed, self._start = self._start, 0
        for index in order:
            self.consumed += 1
            yield index

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(
                f"the checkpoint's data order was drawn with seed {state['seed']}, this run has seed {self.seed}; "
                "resume with the seed of the interrupted run"
            )
        self.epoch, self.consumed, self._start = state["epoch"], state["consumed"], state["consumed"]


class ResumableDataLoader(DataLoader):
    """A single-process training loader in (seed, epoch) order whose position goes into the checkpoint.

    Single-process on purpose: worker processes prefetch, so the sampler's count would run ahead of the
    batches actually trained on. The in-memory datasets this serves gain nothing from workers anyway.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        collate_fn: Callable[[Any], Any] | None = None,
        sampler: Sampler | None = None,
        **kwargs: Any,
    ) -> None:
        # `sampler` and `kwargs` are there for Lightning: under DDP it rebuilds the loader around a distributed
        # sampler, passing every DataLoader argument
        super().__init__(
            dataset,
            batch_size=batch_size,
            sampler=sampler if sampler is not None else EpochSampler(len(dataset), seed),
            collate_fn=collate_fn,
            **kwargs,
        )
        self.seed = seed

    def state_dict(self) -> dict[str, int]:
        # under DDP the sampler is Lightning's distributed wrapper: order per (seed, epoch) still, resumable at
        # epoch ends only
        return self.sampler.state_dict() if isinstance(self.sampler, EpochSampler) else {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state and isinstance(self.sampler, EpochSampler):
            self.sampler.load_state_dict(state)
