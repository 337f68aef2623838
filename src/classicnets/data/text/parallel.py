"""Sentence pairs for sequence-to-sequence tasks: a `source<TAB>target` file per split, or generated pairs.

Every split is encoded once into padded id tensors (`SentencePairs`) and served by `loading.InMemoryLoader`; each
batch is cut to its own longest sequences. Batches are `(source B×S, source_lengths B, target B×T)` with the
target framed by the begin and end tokens and padding id 0 everywhere after a sequence. The source lengths stay
on the host, where the encoder packs the sequences with them.
"""

from __future__ import annotations

import logging
import random
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import BatchSampler

from classicnets.data.errors import CorruptDatasetError, DatasetNotFoundError
from classicnets.data.loading import InMemoryLoaders
from classicnets.data.sampling import EpochSampler
from classicnets.data.text.batching import BucketBatchSampler, pad_ids
from classicnets.data.text.readers import check_encoding, not_text_error, open_text
from classicnets.data.text.vocab import Vocabulary, tokenize
from classicnets.errors import ConfigError

Pair = tuple[str, str]
# tokens a side of a pair may have: far above the built-in dates (up to ~70 characters) and the sentences of
# sentence-pair corpora (Tatoeba's rarely pass 50 words), far below what exhausts memory
DEFAULT_MAX_LENGTH = 200

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairTokenizer:
    """Text ↔ ids for both sides of a pair; saved in checkpoints as plain data, so predict needs no files."""

    source_vocab: Vocabulary
    target_vocab: Vocabulary
    level: str = "whitespace"
    lowercase: bool = False

    @classmethod
    def build(
        cls,
        pairs: Sequence[Pair],
        level: str = "whitespace",
        lowercase: bool = False,
        min_freq: int = 1,
        max_vocab_size: int | None = None,
    ) -> PairTokenizer:
        def vocab(side: int) -> Vocabulary:
            texts = (tokenize(pair[side], level, lowercase) for pair in pairs)
            return Vocabulary.build(texts, min_freq, max_vocab_size)

        return cls(vocab(0), vocab(1), level, lowercase)

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.level, self.lowercase)

    def encode_source(self, text: str) -> list[int]:
        return self.source_vocab.encode(self.tokenize(text))

    def encode_target(self, text: str) -> list[int]:
        return self.target_vocab.encode(self.tokenize(text), add_bos_eos=True)

    def join(self, tokens: Sequence[str]) -> str:
        return "".join(tokens) if self.level == "char" else " ".join(tokens)

    def decode_source(self, ids: Sequence[int]) -> str:
        return self.join(self.source_vocab.decode(ids))

    def decode_target(self, ids: Sequence[int]) -> str:
        return self.join(self.target_vocab.decode(ids))

    def state_dict(self) -> dict[str, Any]:
        return {
            "source_vocab": self.source_vocab.state_dict(),
            "target_vocab": self.target_vocab.state_dict(),
            "level": self.level,
            "lowercase": self.lowercase,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PairTokenizer:
        return cls(
            Vocabulary.from_state_dict(state["source_vocab"]),
            Vocabulary.from_state_dict(state["target_vocab"]),
            state["level"],
            state["lowercase"],
        )


def read_pairs(path: str | Path, encoding: str = "utf-8") -> list[Pair]:
    """Read `source<TAB>target` lines; blank lines are skipped and columns after the second ignored (the
    attribution column of the Tatoeba/manythings sentence-pair files)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(f"parallel text file {path} does not exist")
    pairs = []
    try:
        with open_text(path, encoding) as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                fields = line.rstrip("\n\r").split("\t")
                if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
                    raise CorruptDatasetError(
                        f"{path}:{number}: expected 'source<TAB>target' with both sides non-empty, got "
                        f"{line.rstrip()[:80]!r}. Fix or remove the line."
                    )
                pairs.append((fields[0].strip(), fields[1].strip()))
    except UnicodeDecodeError as error:
        raise not_text_error(path, encoding, error) from error
    if not pairs:
        raise CorruptDatasetError(f"{path} holds no sentence pairs")
    return pairs


class SentencePairs:
    """Encoded pairs: sources and targets padded to the split's longest (N×S and N×T, on the device the data sit
    on), with the lengths of both on the host, so that a batch is cut to its own longest sequences without asking
    the device."""

    def __init__(
        self,
        source: torch.Tensor,
        source_lengths: torch.Tensor,
        target: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> None:
        self.source, self.source_lengths = source, source_lengths
        self.target, self.target_lengths = target, target_lengths

    def __len__(self) -> int:
        return len(self.source_lengths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.source[index], self.source_lengths[index], self.target[index]

    def gather(
        self, index: torch.Tensor, host_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = self.source_lengths[host_index]
        target_length = int(self.target_lengths[host_index].max())
        return self.source[index, : int(lengths.max())], lengths, self.target[index, :target_length]

    def to(self, device: torch.device) -> SentencePairs:
        return SentencePairs(
            self.source.to(device), self.source_lengths, self.target.to(device), self.target_lengths
        )

    @property
    def device(self) -> torch.device:
        return self.source.device

    @property
    def nbytes(self) -> int:
        return self.source.nbytes + self.target.nbytes


class PairsDataModule(InMemoryLoaders, LightningDataModule):
    """Base for sentence-pair data held in memory; subclasses say where the train, val and test pairs come from.

    The vocabularies are built from the training pairs only and saved in the checkpoint (`state_dict`).
    `max_length` bounds the tokens of each side: a longer pair is left out (counted in the log), since one pair
    of thousands of tokens makes a batch's activations grow past any memory.
    """

    def __init__(
        self,
        tokenizer: str = "whitespace",
        lowercase: bool = False,
        min_freq: int = 1,
        max_vocab_size: int | None = None,
        max_length: int | None = DEFAULT_MAX_LENGTH,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        seed: int = 42,
        placement: str = "auto",
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, placement)
        tokenize("", tokenizer)  # an unknown tokenizer fails here, naming the choices
        self.max_length = max_length
        self.level = tokenizer
        self.lowercase = lowercase
        self.min_freq = min_freq
        self.max_vocab_size = max_vocab_size
        self.pair_tokenizer: PairTokenizer | None = None
        self.splits: dict[str, SentencePairs]
        self.max_target_length = 0

    @abstractmethod
    def load_pairs(self) -> dict[str, list[Pair]]:
        """The pairs of the "train", "val" and "test" splits."""

    @property
    def sizes(self) -> dict[str, int]:
        """What the model is built for; the pipeline passes it on as `${sizes.*}`."""
        if self.pair_tokenizer is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its sizes are known")
        return {
            "source_vocab_size": len(self.pair_tokenizer.source_vocab),
            "target_vocab_size": len(self.pair_tokenizer.target_vocab),
            "max_target_length": self.max_target_length,
        }

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        pairs = {split: self._bounded(split, split_pairs) for split, split_pairs in self.load_pairs().items()}
        if self.pair_tokenizer is None:
            self.pair_tokenizer = PairTokenizer.build(
                pairs["train"], self.level, self.lowercase, self.min_freq, self.max_vocab_size
            )
        self.max_target_length = max(
            len(self.pair_tokenizer.tokenize(target)) for _, target in pairs["train"]
        )
        self.splits = {split: self._encode(split_pairs) for split, split_pairs in pairs.items()}

    def _bounded(self, split: str, pairs: list[Pair]) -> list[Pair]:
        """The pairs whose sides both have at most `max_length` tokens."""
        if self.max_length is None:
            return pairs
        lengths = [max(len(tokenize(side, self.level, self.lowercase)) for side in pair) for pair in pairs]
        kept = [pair for pair, length in zip(pairs, lengths, strict=True) if length <= self.max_length]
        if len(kept) < len(pairs):
            log.warning(
                "%s split: left out %d of %d pairs with a side longer than data.max_length=%d tokens "
                "(the longest has %d)",
                split,
                len(pairs) - len(kept),
                len(pairs),
                self.max_length,
                max(lengths),
            )
        if not kept:
            raise CorruptDatasetError(
                f"every pair of the {split} split has a side longer than data.max_length={self.max_length} "
                "tokens: raise data.max_length"
            )
        return kept

    def _encode(self, pairs: Sequence[Pair]) -> SentencePairs:
        sources = [self.pair_tokenizer.encode_source(source) for source, _ in pairs]
        targets = [self.pair_tokenizer.encode_target(target) for _, target in pairs]
        return SentencePairs(
            pad_ids(sources),
            torch.tensor([len(ids) for ids in sources]),
            pad_ids(targets),
            torch.tensor([len(ids) for ids in targets]),
        )

    def batches(
        self, data: SentencePairs, order: EpochSampler, batch_size: int, shuffle: bool
    ) -> BatchSampler:
        if not shuffle:
            # file order, so that the examples shown in TensorBoard are the first sentences of the split
            return super().batches(data, order, batch_size, shuffle)
        # sentences of similar length share a batch: the decoder attends over little padding
        return BucketBatchSampler(order, batch_size, lengths=data.source_lengths.tolist())

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        source, lengths, target = batch
        # the source lengths stay on the host: the encoder packs the sequences with them there, and moving them
        # to the device and back would stop the host at every step
        return source.to(device, non_blocking=True), lengths, target.to(device, non_blocking=True)

    def decode_source(self, ids: Sequence[int]) -> str:
        return self.pair_tokenizer.decode_source(ids)

    def decode_target(self, ids: Sequence[int]) -> str:
        return self.pair_tokenizer.decode_target(ids)

    def source_tokens(self, ids: Sequence[int]) -> list[str]:
        """One token per id, special tokens included (labels for attention heatmaps)."""
        return [self.pair_tokenizer.source_vocab.tokens[i] for i in ids]

    def target_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.pair_tokenizer.target_vocab.tokens[i] for i in ids]

    def state_dict(self) -> dict[str, Any]:
        return self.pair_tokenizer.state_dict() if self.pair_tokenizer is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Use the saved vocabularies; splits already encoded with other ones are encoded again."""
        saved = PairTokenizer.from_state_dict(state_dict)
        if saved != self.pair_tokenizer:
            self.pair_tokenizer = saved
            if self.splits:
                self.splits = {}
                self.placement.forget()
                self.setup()


class ParallelTextDataModule(PairsDataModule):
    """Tab-separated sentence pairs; without `val_file`, `val_fraction` of the train pairs (chosen with the
    seed) become the validation split."""

    def __init__(
        self,
        train_file: str | Path,
        test_file: str | Path,
        val_file: str | Path | None = None,
        val_fraction: float = 0.1,
        encoding: str = "utf-8",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.encoding = check_encoding(encoding)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.train_file, self.test_file, self.val_file = train_file, test_file, val_file
        self.val_fraction = val_fraction

    def load_pairs(self) -> dict[str, list[Pair]]:
        train = read_pairs(self.train_file, self.encoding)
        if self.val_file:
            val = read_pairs(self.val_file, self.encoding)
        else:
            random.Random(self.seed).shuffle(train)
            n_val = max(1, round(len(train) * self.val_fraction))
            if n_val >= len(train):
                raise CorruptDatasetError(
                    f"{self.train_file} has {len(train)} pairs: too few to split off a validation set; "
                    f"pass data.val_file=…"
                )
            val, train = train[:n_val], train[n_val:]
        return {"train": train, "val": val, "test": read_pairs(self.test_file, self.encoding)}
