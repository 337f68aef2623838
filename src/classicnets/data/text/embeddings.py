"""Pretrained word vectors (GloVe text files) aligned with a run's vocabulary, for the models' embedding layers.

The data side reads the files; a model is handed the vectors as tensors (`model.pretrained_embeddings`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from classicnets.data.errors import CorruptDatasetError, DatasetNotFoundError


class PretrainedVectors(NamedTuple):
    """V×dim vectors for a vocabulary's tokens, and which of the V tokens the file had (the other rows are 0)."""

    vectors: torch.Tensor
    found: torch.Tensor


def read_vocabulary(path: str | Path) -> list[str]:
    """A JSON list of tokens, where a token's position is its id (as the text data modules write it)."""
    return json.loads(Path(path).expanduser().read_text(encoding="utf-8"))


def read_glove(
    path: str | Path | None, vocabulary: str | Path | Sequence[str] | None, dim: int
) -> PretrainedVectors | None:
    """Vectors for `vocabulary` (a list of tokens, or the `vocab.json` a text data module wrote) from a GloVe
    text file (`word v1 … v_dim` per line); None when no file is named.
    """
    if not path:
        return None
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(
            f"pretrained embeddings {path} do not exist (a GloVe text file, e.g. glove.6B.100d.txt, from "
            "https://nlp.stanford.edu/projects/glove/); set model.pretrained_embeddings.path=FILE"
        )
    if vocabulary is None:
        raise CorruptDatasetError(
            f"pretrained embeddings {path} need the vocabulary they are aligned with: text data write vocab.json "
            "(model.pretrained_embeddings.vocabulary reads ${sizes.vocab_file}); images have no vocabulary"
        )
    tokens = read_vocabulary(vocabulary) if isinstance(vocabulary, (str, Path)) else list(vocabulary)
    index = {token: i for i, token in enumerate(tokens)}
    vectors = torch.zeros(len(tokens), dim)
    found = torch.zeros(len(tokens), dtype=torch.bool)
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.rstrip().split(" ")
            # a few of GloVe's words contain spaces, so the vector is the last `dim` fields; the first line
            # has a plain word, so it tells whether the file's vectors have the size the model wants
            if len(fields) <= dim or (number == 1 and len(fields) != dim + 1):
                raise CorruptDatasetError(
                    f"{path}:{number}: expected a word and {dim} numbers (model.embedding_dim={dim}), "
                    f"got {len(fields)} fields"
                )
            token = " ".join(fields[:-dim])
            if token in index and not found[index[token]]:
                vectors[index[token]] = torch.tensor([float(x) for x in fields[-dim:]])
                found[index[token]] = True
    return PretrainedVectors(vectors, found)
