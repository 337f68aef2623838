"""Training order as a function of (seed, epoch), sharded over DDP processes, resumable in the middle of an epoch.

`DataLoader(shuffle=True)` draws its permutation from the global RNG, so the order after a resume depends on
everything that consumed random numbers before. Here every epoch's permutation comes from its own generator,
and the position inside the epoch is part of the checkpoint: Lightning saves `state_dict()` of any training
loader that has one and calls `load_state_dict()` before it iterates again, then counts on the loader to
yield only the batches that are left.

Under DDP the sampler shards the order itself, as `DistributedSampler` does (padded to a multiple of the number of
processes by repeating its start, then every `world_size`-th index from the process's rank on). It is a
`DistributedSampler` by type, so Lightning does not wrap it in its own: every process knows its position, the
same number of batches on each, and rank 0's checkpoint holds it for all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler


def process_shard() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless a process group is running."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EpochSampler(DistributedSampler):
    """This process's share of a permutation of `range(size)` seeded with `seed + epoch` (`shuffle=False`: the
    indices in order, e.g. for evaluation under DDP).

    Lightning calls `set_epoch` at the start of every epoch. `consumed` counts the indices handed out in the
    current epoch; a single-process loader asks for exactly `batch_size` indices per batch, so it is the
    position to resume from. `rank` and `world_size` default to the running process group's, asked when the
    order is drawn (the group starts after the loaders are made).
    """

    def __init__(
        self,
        size: int,
        seed: int,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        # DistributedSampler.__init__ would ask for a process group at once; these are its attributes
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = False
        self._rank, self._world_size = rank, world_size
        self.epoch = 0
        self.consumed = 0
        self._start = 0

    @property
    def shard(self) -> tuple[int, int]:
        rank, world_size = process_shard()
        return (rank if self._rank is None else self._rank), (
            world_size if self._world_size is None else self._world_size
        )

    # DistributedSampler's names for them
    @property
    def rank(self) -> int:
        return self.shard[0]

    @property
    def num_replicas(self) -> int:
        return self.shard[1]

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._start = 0  # a position restored for another epoch does not apply
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.num_replicas)

    def order(self) -> torch.Tensor:
        """This epoch's indices for this process, as an int64 tensor (drawn on the host)."""
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        rank, world_size = self.shard
        if world_size == 1:
            return order
        padding = len(self) * world_size - self.size
        padded = torch.cat([order, order.repeat(math.ceil(padding / max(self.size, 1)))[:padding]])
        return padded[rank::world_size]

    def __iter__(self) -> Iterator[int]:
        order = self.order()[self._start :].tolist()
        self.consumed, self._start = self._start, 0
        for index in order:
            self.consumed += 1
            yield index

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "consumed": self.consumed,
            "seed": self.seed,
            "world_size": self.num_replicas,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        check_resumable(state, self.seed, self.num_replicas, position=state["consumed"])
        self.epoch, self.consumed, self._start = state["epoch"], state["consumed"], state["consumed"]


def check_resumable(state: dict[str, Any], seed: int, world_size: int, position: int) -> None:
    """Refuse a saved data position that this run cannot continue from exactly."""
    if state["seed"] != seed:
        raise ValueError(
            f"the checkpoint's data order was drawn with seed {state['seed']}, this run has seed {seed}; "
            "resume with the seed of the interrupted run"
        )
    saved_world = state.get("world_size", 1)
    if position and saved_world != world_size:
        raise ValueError(
            f"the checkpoint was saved in the middle of an epoch by a run of {saved_world} process(es), and this run "
            f"has {world_size}: each process's share of the epoch would differ. Resume with as many processes "
            "(trainer.devices), or from a checkpoint saved at the end of an epoch"
        )


class ResumableDataLoader(DataLoader):
    """A single-process training loader in (seed, epoch) order whose position goes into the checkpoint.

    Single-process on purpose: worker processes prefetch, so the sampler's count would run ahead of the
    batches actually trained on. The in-memory datasets this serves gain nothing from workers anyway. Under DDP
    its `EpochSampler` shards the order, so the position is saved there too.
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
        # `sampler` and `kwargs` are there for Lightning, which rebuilds the loader with every DataLoader argument
        # (with a sequential sampler for `trainer.overfit_batches`)
        super().__init__(
            dataset,
            batch_size=batch_size,
            sampler=sampler if sampler is not None else EpochSampler(len(dataset), seed),
            collate_fn=collate_fn,
            **kwargs,
        )
        self.seed = seed

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict() if isinstance(self.sampler, EpochSampler) else {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state and isinstance(self.sampler, EpochSampler):
            self.sampler.load_state_dict(state)
