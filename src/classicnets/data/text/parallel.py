"""Sentence pairs for sequence-to-sequence tasks: a `source<TAB>target` file per split, or generated pairs.

Every split is encoded once into padded id tensors and served by `TensorBatches`; each batch is cut to its own
longest sequence. Batches are `(source B×S, source_lengths B, target B×T)` with the target framed by the begin
and end tokens and padding id 0 everywhere after a sequence.
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
from torch.utils.data import DataLoader

from classicnets.data.batches import TensorBatches
from classicnets.data.errors import CorruptDatasetError, DatasetNotFoundError
from classicnets.data.sampling import EpochSampler
from classicnets.data.text.batching import BucketBatchSampler, pad_ids
from classicnets.data.text.readers import check_encoding, not_text_error, open_text
from classicnets.data.text.vocab import PAD_INDEX, Vocabulary, tokenize
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


def _trim(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    # splits are padded to their longest sentence; a batch only needs its own longest
    source, lengths, target = batch
    target_length = int((target != PAD_INDEX).sum(1).max())
    return source[:, : int(lengths.max())], lengths, target[:, :target_length]


class PairsDataModule(LightningDataModule):
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
    ) -> None:
        super().__init__()
        tokenize("", tokenizer)  # an unknown tokenizer fails here, naming the choices
        self.max_length = max_length
        self.level = tokenizer
        self.lowercase = lowercase
        self.min_freq = min_freq
        self.max_vocab_size = max_vocab_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.pair_tokenizer: PairTokenizer | None = None
        self.splits: dict[str, TensorBatches] = {}
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

    def _encode(self, pairs: Sequence[Pair]) -> TensorBatches:
        sources = [self.pair_tokenizer.encode_source(source) for source, _ in pairs]
        targets = [self.pair_tokenizer.encode_target(target) for _, target in pairs]
        lengths = torch.tensor([len(ids) for ids in sources])
        return TensorBatches(pad_ids(sources), lengths, pad_ids(targets))

    def train_dataloader(self) -> DataLoader:
        data = self.splits["train"]
        # sentences of similar length share a batch: the decoder attends over little padding. The order is a
        # function of (seed, epoch): a resumed run sees the epochs it would have seen (exactly from epoch ends)
        shuffled = EpochSampler(len(data), self.seed)
        batches = BucketBatchSampler(shuffled, self.batch_size, lengths=data.tensors[1].tolist())
        return DataLoader(data, batch_sampler=batches, collate_fn=_trim)

    def _eval_loader(self, split: str) -> DataLoader:
        # file order, so that the examples shown in TensorBoard are the first sentences of the split
        return DataLoader(self.splits[split], batch_size=self.eval_batch_size, collate_fn=_trim)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

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
