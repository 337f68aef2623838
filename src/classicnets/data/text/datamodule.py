"""Text classification data: tokenized once, a vocabulary from the training split only, length-bucketed batches.

The vocabulary, the class names and the tokenization settings are the DataModule's state: they ride in every
checkpoint (`state_dict`), and a DataModule given them back with `load_state_dict` before `setup` encodes the
data with them instead of building anything, which is what eval does.
"""

from __future__ import annotations

import json
import os
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import BatchSampler

from classicnets.data.errors import CorruptDatasetError
from classicnets.data.loading import InMemoryLoaders
from classicnets.data.sampling import EpochSampler
from classicnets.data.text.batching import BucketBatchSampler, TokenSequences
from classicnets.data.text.readers import Example
from classicnets.data.text.vocab import UNK_INDEX, Vocabulary, tokenize
from classicnets.errors import ConfigError

SPLITS = ("train", "val", "test")
VOCAB_FILE = "vocab.json"


def ordered_labels(labels: set[str]) -> tuple[str, ...]:
    """Numeric labels in numeric order ("2" before "10"), any others alphabetically."""
    if all(label.lstrip("-").isdigit() for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


class TextClassificationDataModule(InMemoryLoaders, LightningDataModule):
    """Base for labelled texts. Subclasses return each split's examples from `read_split`.

    Batches are `(ids, labels)`: ids an int64 N×T tensor padded with 0 to the batch's longest text.
    `max_length` truncates texts (in tokens); `bucketing` batches texts of similar length together; `placement`
    says where the encoded texts sit while training (`loading.py`: on a GPU by default when they fit).
    `vocab_dir`, when set, also gets the vocabulary it builds as `vocab.json` (a list of tokens, the position
    is the id), readable by people and by models that align pretrained vectors with it.
    """

    classes: tuple[str, ...] = ()  # datasets with fixed classes set them; others take the training labels

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        val_fraction: float = 0.1,
        tokenizer: str = "word",
        lowercase: bool = True,
        min_freq: int = 1,
        max_vocab_size: int | None = None,
        max_length: int | None = None,
        bucketing: bool = True,
        bucket_batches: int = 50,
        seed: int = 42,
        vocab_dir: str | Path | None = None,
        placement: str = "auto",
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, placement)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
        tokenize("", tokenizer)  # an unknown level fails here, before any data is read
        self.val_fraction = val_fraction
        self.tokenizer = tokenizer
        self.lowercase = lowercase
        self.min_freq = min_freq
        self.max_vocab_size = max_vocab_size
        self.max_length = max_length
        self.bucketing = bucketing
        self.bucket_batches = bucket_batches
        self.vocab_dir = Path(vocab_dir).expanduser() if vocab_dir else None
        self.vocab: Vocabulary | None = None
        self.source_used = "full"
        self.splits: dict[str, TokenSequences]

    @abstractmethod
    def read_split(self, split: str) -> list[Example] | None:
        """The examples of "train", "val" or "test"; None for "val" when it is to be cut from "train"."""

    def describe(self, split: str) -> str:
        """Where a split is read from, for messages about its contents."""
        return f"the {split} split of {type(self).__name__}"

    @property
    def sizes(self) -> dict[str, Any]:
        """The sizes the model is built for; the pipeline passes them on as `${sizes.*}`."""
        if self.vocab is None:
            raise RuntimeError(f"{type(self).__name__}.sizes is known after setup()")
        return {
            "num_classes": len(self.classes),
            "vocab_size": len(self.vocab),
            "vocab_file": str(self.vocab_dir / VOCAB_FILE) if self.vocab_dir else None,
            "channels": None,
            "image_size": None,
        }

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if stage == "test" and self.vocab is not None and self.classes:
            # a checkpoint's vocabulary and classes were restored (eval): the training texts are not needed
            test = self.read_split("test")
            self.splits = {
                "test": TokenSequences([self._ids(self._tokens(e.text)) for e in test], self._label_ids(test))
            }
            return
        train = self.read_split("train")
        val = self.read_split("val")
        if val is None:
            train, val = self._split_off_val(train)
        test = self.read_split("test")
        tokens = {
            name: [self._tokens(e.text) for e in examples]
            for name, examples in zip(SPLITS, (train, val, test), strict=True)
        }
        if not self.classes:
            self.classes = ordered_labels({e.label for e in train})
            if len(self.classes) < 2:
                raise CorruptDatasetError(
                    f"{self.describe('train')}: every training example has the label {self.classes[0]!r}; "
                    "classification needs at least 2 classes"
                )
        if self.vocab is None:  # counted on the truncated texts: the tokens the model will actually read
            self.vocab = Vocabulary.build(tokens["train"], self.min_freq, self.max_vocab_size)
            if self.vocab_dir is not None:  # a restored vocabulary is already next to its run's checkpoints
                self._write_vocab_file()
        self.splits = {
            name: TokenSequences([self._ids(t) for t in tokens[name]], self._label_ids(examples))
            for name, examples in zip(SPLITS, (train, val, test), strict=True)
        }

    def _split_off_val(self, train: list[Example]) -> tuple[list[Example], list[Example]]:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed)).tolist()
        n_val = max(1, round(len(train) * self.val_fraction))
        return [train[i] for i in order[n_val:]], [train[i] for i in order[:n_val]]

    def _tokens(self, text: str) -> list[str]:
        return tokenize(text, self.tokenizer, self.lowercase)[: self.max_length]

    def _ids(self, tokens: list[str]) -> list[int]:
        return self.vocab.encode(tokens) or [UNK_INDEX]  # an empty text still has one step to read

    def _label_ids(self, examples: Sequence[Example]) -> list[int]:
        index = {name: i for i, name in enumerate(self.classes)}
        for example in examples:
            if example.label not in index:
                raise CorruptDatasetError(
                    f"{example.origin}: label {example.label!r} never appears in the training data "
                    f"(classes: {', '.join(self.classes)})"
                )
        return [index[e.label] for e in examples]

    def _write_vocab_file(self) -> None:
        # written whole and renamed into place: DDP processes may write it at the same time
        self.vocab_dir.mkdir(parents=True, exist_ok=True)
        path = self.vocab_dir / VOCAB_FILE
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(self.vocab.tokens, ensure_ascii=False, indent=0), encoding="utf-8")
        partial.replace(path)

    def decode(self, ids: torch.Tensor) -> str:
        """Token ids back to text (padding dropped), for the examples shown in TensorBoard."""
        separator = "" if self.tokenizer == "char" else " "
        return separator.join(self.vocab.decode(ids.tolist()))

    def batches(
        self, data: TokenSequences, order: EpochSampler, batch_size: int, shuffle: bool
    ) -> BatchSampler:
        if not self.bucketing:
            return super().batches(data, order, batch_size, shuffle)
        # evaluation sorts the whole split by length: the least padding, and the order does not matter
        bucket_batches = self.bucket_batches if shuffle else None
        return BucketBatchSampler(order, batch_size, lengths=data.lengths, bucket_batches=bucket_batches)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to turn raw text into predictions without the dataset: plain data only."""
        return {
            "classes": list(self.classes),
            "vocabulary": self.vocab.state_dict() if self.vocab else None,
            "tokenizer": self.tokenizer,
            "lowercase": self.lowercase,
            "max_length": self.max_length,
            "source": self.source_used,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back a run's vocabulary, classes and tokenization; data already encoded is encoded again."""
        vocab = Vocabulary.from_state_dict(state["vocabulary"]) if state.get("vocabulary") else None
        restored = (
            tuple(state["classes"]),
            vocab,
            state["tokenizer"],
            state["lowercase"],
            state["max_length"],
        )
        current = (self.classes, self.vocab, self.tokenizer, self.lowercase, self.max_length)
        self.classes, self.vocab, self.tokenizer, self.lowercase, self.max_length = restored
        if self.splits and restored != current:
            self.splits = {}
            self.placement.forget()
            self.setup()
