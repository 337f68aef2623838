"""Token sequences in memory, padded per batch, batched by length so that an epoch computes little padding."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from itertools import accumulate

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, Dataset, Sampler

from classicnets.data.text.vocab import PAD_INDEX


class TokenSequences(Dataset):
    """Variable-length id sequences stored as one flat tensor with offsets, each with an int64 label.

    `gather` pads a batch with `PAD_INDEX` to its own longest sequence (N×T) with tensor ops on the device the
    data sit on; the lengths stay on the host as well, so the host knows T without asking the device.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], labels: Sequence[int]) -> None:
        if len(sequences) != len(labels):
            raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels")
        self.lengths = [len(ids) for ids in sequences]
        self.offsets = [0, *accumulate(self.lengths)]
        self.ids = torch.tensor([i for ids in sequences for i in ids], dtype=torch.long)
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.starts = torch.tensor(self.offsets[:-1], dtype=torch.long)
        self.length_tensor = torch.tensor(self.lengths, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[self.offsets[index] : self.offsets[index + 1]], self.labels[index]

    def gather(self, index: torch.Tensor, host_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(self.lengths[i] for i in host_index.tolist())
        steps = torch.arange(longest, device=self.ids.device)
        positions = (self.starts[index, None] + steps).clamp_(max=len(self.ids) - 1)
        padding = steps >= self.length_tensor[index, None]
        return self.ids[positions].masked_fill_(padding, PAD_INDEX), self.labels[index]

    def to(self, device: torch.device) -> TokenSequences:
        moved = copy.copy(self)  # the host lists are shared
        for name in ("ids", "labels", "starts", "length_tensor"):
            setattr(moved, name, getattr(self, name).to(device))
        return moved

    @property
    def device(self) -> torch.device:
        return self.ids.device

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (self.ids, self.labels, self.starts, self.length_tensor))


def pad_ids(sequences: Sequence[Sequence[int] | torch.Tensor]) -> torch.Tensor:
    """Id sequences (lists or 1-d tensors) → N×(longest) int64, padded with `PAD_INDEX` after each one."""
    rows = [torch.as_tensor(ids, dtype=torch.long) for ids in sequences]
    return pad_sequence(rows, batch_first=True, padding_value=PAD_INDEX)


class BucketBatchSampler(BatchSampler):
    """Batches of similar lengths, still in random order.

    The sampler's order is cut into chunks of `bucket_batches` batches; each chunk is sorted by length and
    cut into batches, so neighbours in a batch are about as long as each other. `bucket_batches=None` sorts
    the whole split (for evaluation, where order does not matter).

    Under DDP the index sampler (`sampling.EpochSampler`) hands each process its shard, which it buckets.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool = False,
        lengths: Sequence[int] = (),
        bucket_batches: int | None = 50,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = lengths
        self.bucket_batches = bucket_batches

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.sampler)
        chunk = len(order) if self.bucket_batches is None else self.bucket_batches * self.batch_size
        batches = []
        for start in range(0, len(order), max(chunk, 1)):
            members = sorted(order[start : start + chunk], key=self.lengths.__getitem__)
            batches += [members[i : i + self.batch_size] for i in range(0, len(members), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        # Order batches by when the sampler drew their first member: random when the sampler shuffles, so that
        # lengths do not rise steadily through each chunk, with no second random generator to seed.
        drawn = {index: position for position, index in enumerate(order)}
        yield from sorted(batches, key=lambda batch: min(drawn[i] for i in batch))
