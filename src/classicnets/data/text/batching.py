"""Token sequences in memory, padded per batch, batched by length so that an epoch computes little padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import accumulate

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, Dataset, Sampler

from classicnets.data.text.vocab import PAD_INDEX


class TokenSequences(Dataset):
    """Variable-length id sequences stored as one flat tensor with offsets, each with an int64 label."""

    def __init__(self, sequences: Sequence[Sequence[int]], labels: Sequence[int]) -> None:
        if len(sequences) != len(labels):
            raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels")
        self.lengths = [len(ids) for ids in sequences]
        self.offsets = [0, *accumulate(self.lengths)]
        self.ids = torch.tensor([i for ids in sequences for i in ids], dtype=torch.long)
        self.labels = torch.tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[self.offsets[index] : self.offsets[index + 1]], self.labels[index]


def pad_ids(sequences: Sequence[Sequence[int] | torch.Tensor]) -> torch.Tensor:
    """Id sequences (lists or 1-d tensors) → N×(longest) int64, padded with `PAD_INDEX` after each one."""
    rows = [torch.as_tensor(ids, dtype=torch.long) for ids in sequences]
    return pad_sequence(rows, batch_first=True, padding_value=PAD_INDEX)


def pad_batch(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate: ids padded to the longest sequence of this batch (N×T), labels stacked."""
    ids, labels = zip(*batch, strict=True)
    return pad_ids(ids), torch.stack(labels)


class BucketBatchSampler(BatchSampler):
    """Batches of similar lengths, still in random order.

    The sampler's order is cut into chunks of `bucket_batches` batches; each chunk is sorted by length and
    cut into batches, so neighbours in a batch are about as long as each other. `bucket_batches=None` sorts
    the whole split (for evaluation, where order does not matter).

    It subclasses `BatchSampler` and takes the index sampler as `sampler` so that Lightning can swap in a
    `DistributedSampler` under DDP: each process then buckets its own shard, reshuffled by `set_epoch`.
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
