"""Tokenizers and a vocabulary built from the training split only, saved with the run as plain data.

Hand-written rather than a library: word and character splitting plus a frequency-ranked table is a few dozen
lines, has no state beyond a list of tokens (so it rides in a checkpoint that loads with `weights_only=True`),
and reads the same in eval and predict without rebuilding anything.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from classicnets.errors import ConfigError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)  # fixed ids 0..3: padding is always 0, which the models rely on
PAD_INDEX, UNK_INDEX, BOS_INDEX, EOS_INDEX = range(4)

_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def tokenize(text: str, level: str = "word", lowercase: bool = True) -> list[str]:
    """Split text into word tokens (words, contractions and punctuation apart) or characters."""
    text = _HTML_BREAK.sub(" ", text)
    if lowercase:
        text = text.lower()
    if level == "word":
        return _WORD.findall(text)
    if level == "char":
        return list(text)
    if level == "whitespace":
        return text.split()
    raise ConfigError(f"unknown tokenization level {level!r}; valid choices: word, char, whitespace")


def until_end(ids: Sequence[int], include_end: bool = False) -> list[int]:
    """A row of generated ids → the tokens before the first end token (or up to and including it); a row without
    one was cut by the length limit and is kept whole."""
    tokens = list(ids)
    return tokens[: tokens.index(EOS_INDEX) + include_end] if EOS_INDEX in tokens else tokens


@dataclass(frozen=True)
class Vocabulary:
    """Token ↔ id table; ids 0..3 are the special tokens."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {token: i for i, token in enumerate(self.tokens)})

    @classmethod
    def build(
        cls, texts: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """Most frequent tokens first (ties in first-seen order), those seen fewer than `min_freq` times left out."""
        counts = Counter(token for tokens in texts for token in tokens)
        ranked = [
            token for token, count in counts.most_common() if count >= min_freq and token not in SPECIALS
        ]
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(SPECIALS))]
        return cls((*SPECIALS, *ranked))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str], add_bos_eos: bool = False) -> list[int]:
        ids = [self._index.get(token, UNK_INDEX) for token in tokens]  # type: ignore[attr-defined]
        return [BOS_INDEX, *ids, EOS_INDEX] if add_bos_eos else ids

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        tokens = []
        for i in ids:
            if strip_specials and i == EOS_INDEX:
                break
            if strip_specials and i in (PAD_INDEX, BOS_INDEX):
                continue
            tokens.append(self.tokens[i])
        return tokens

    def state_dict(self) -> dict[str, list[str]]:
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[str]]) -> Vocabulary:
        return cls(tuple(state["tokens"]))
