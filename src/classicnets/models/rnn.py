"""Recurrent sequence classifiers: Elman RNN, LSTM and GRU over token ids or image rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

CELLS: dict[str, tuple[type[nn.RNNBase], dict[str, str]]] = {
    "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}
POOLINGS = ("last", "mean", "max", "attention")


class AttentionPooling(nn.Module):
    """Additive attention over time (Bahdanau et al., 2015) with a learned query: the summary is the sum of the
    states weighted by softmax_t(vᵀ tanh(W h_t)), with padded steps weighted zero."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.project = nn.Linear(size, size)
        self.score = nn.Linear(size, 1, bias=False)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(torch.tanh(self.project(states))).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.einsum("nt,nth->nh", scores.softmax(dim=1), states)


def read_glove(path: str | Path, vocabulary: Sequence[str], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors for `vocabulary` from a GloVe text file (`word v1 … v_dim` per line).

    Returns the V×dim matrix and a boolean mask of the tokens found; rows of tokens not in the file are zero.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained embeddings {path} do not exist (a GloVe text file, e.g. glove.6B.100d.txt)"
        )
    index = {token: i for i, token in enumerate(vocabulary)}
    vectors = torch.zeros(len(vocabulary), dim)
    found = torch.zeros(len(vocabulary), dtype=torch.bool)
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.rstrip().split(" ")
            # a few of GloVe's words contain spaces, so the vector is the last `dim` fields; the first line
            # has a plain word, so it tells whether the file's vectors have the size the model wants
            if len(fields) <= dim or (number == 1 and len(fields) != dim + 1):
                raise ValueError(
                    f"{path}:{number}: expected a word and {dim} numbers (embedding_dim={dim}), "
                    f"got {len(fields)} fields"
                )
            token = " ".join(fields[:-dim])
            if token in index and not found[index[token]]:
                vectors[index[token]] = torch.tensor([float(x) for x in fields[1:]])
                found[index[token]] = True
    return vectors, found


def read_vocabulary(path: str | Path) -> list[str]:
    """A JSON list of tokens, where a token's position is its id (as the text data modules write it)."""
    return json.loads(Path(path).expanduser().read_text(encoding="utf-8"))


def reverse_padded(steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of an N×T×F batch within its length, leaving the padding after it in place."""
    positions = torch.arange(steps.shape[1], device=steps.device)
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return steps.gather(1, index[..., None].expand_as(steps))


class RecurrentClassifier(nn.Module):
    """A recurrent network that reads a sequence and classifies it: Elman RNN, LSTM or GRU.

    Inputs are either token ids (`vocab_size` set): an int64 N×T batch padded at the end with `padding_idx`;
    or images (`vocab_size=None`): an N×C×H×W float batch read row by row, H steps of C·W features
    (sequential MNIST).

    Padding never reaches a state that is used: each direction of each layer runs over the padded batch, the
    backward one over every sequence reversed within its length, so the padding always comes after the real
    steps, and the summary reads real steps only. This is exact, and on CPU several times faster than packed
    sequences of mixed lengths, which PyTorch's CPU kernels step through one batch size at a time.

    The sequence is summarised by the final hidden state (`last`, both directions' when bidirectional), the
    mean or the max of the top layer's states over the real steps, or additive `attention` pooling. Dropout
    applies to the embeddings, between stacked layers and before the classifier.

    `pretrained_embeddings` names a GloVe text file whose vectors initialise the embedding rows of the tokens
    in `vocabulary` (a list of tokens, or a JSON file of that list as the text data modules write it);
    `freeze_embeddings` keeps them fixed.
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int | None = None,
        channels: int | None = None,
        image_size: int | None = None,
        cell: str = "lstm",
        embedding_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        pooling: str = "last",
        padding_idx: int = 0,
        pretrained_embeddings: str | None = None,
        vocabulary: str | Sequence[str] | None = None,
        freeze_embeddings: bool = False,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; valid choices: {', '.join(CELLS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid choices: {', '.join(POOLINGS)}")
        self.pooling = pooling
        self.padding_idx = padding_idx
        self.hidden_size = hidden_size
        if vocab_size is None:
            if channels is None or image_size is None:
                raise ValueError(
                    "RecurrentClassifier needs vocab_size (token ids) or channels and image_size (images)"
                )
            self.embedding = None
            input_size = channels * image_size
        else:
            self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
            if pretrained_embeddings:
                self._load_pretrained(pretrained_embeddings, vocabulary, vocab_size)
            self.embedding.weight.requires_grad_(not freeze_embeddings)
            input_size = embedding_dim
        rnn_class, options = CELLS[cell]
        features = hidden_size * (2 if bidirectional else 1)
        # layers[i][0] reads forwards, layers[i][1] (when bidirectional) each sequence reversed
        self.layers = nn.ModuleList(
            nn.ModuleList(
                rnn_class(input_size if layer == 0 else features, hidden_size, batch_first=True, **options)
                for _ in range(2 if bidirectional else 1)
            )
            for layer in range(num_layers)
        )
        self.attention = AttentionPooling(features) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(features, num_classes)

    @property
    def bidirectional(self) -> bool:
        return len(self.layers[0]) == 2

    def _load_pretrained(self, path: str, vocabulary: str | Sequence[str] | None, vocab_size: int) -> None:
        if vocabulary is None:
            raise ValueError(
                "pretrained_embeddings needs the vocabulary they are aligned with (model.vocabulary)"
            )
        tokens = read_vocabulary(vocabulary) if isinstance(vocabulary, (str, Path)) else list(vocabulary)
        if len(tokens) != vocab_size:
            raise ValueError(f"the vocabulary has {len(tokens)} tokens but vocab_size is {vocab_size}")
        vectors, found = read_glove(path, tokens, self.embedding.embedding_dim)
        found[self.padding_idx] = False
        with torch.no_grad():
            self.embedding.weight[found] = vectors[found]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            n, c, h, w = x.shape
            states = x.permute(0, 2, 1, 3).reshape(n, h, c * w)
            lengths = torch.full((n,), h, device=x.device)
        else:
            # padding is only ever at the end; an all-padding row is read as one padding step
            lengths = (x != self.padding_idx).sum(1).clamp(min=1)
            states = self.dropout(self.embedding(x))
        for depth, directions in enumerate(self.layers):
            if depth:
                states = self.dropout(states)
            outputs = [directions[0](states)[0]]
            if len(directions) == 2:
                backward = directions[1](reverse_padded(states, lengths))[0]
                outputs.append(reverse_padded(backward, lengths))
            states = torch.cat(outputs, dim=2)
        mask = torch.arange(states.shape[1], device=states.device) < lengths[:, None]
        return self.classifier(self.dropout(self._summarise(states, mask, lengths)))

    def _summarise(self, states: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.pooling == "last":
            # the forward state after the last real step; the backward one ends (reversed back) at step 0
            last = states[torch.arange(len(states), device=states.device), lengths - 1, : self.hidden_size]
            return torch.cat([last, states[:, 0, self.hidden_size :]], dim=1)
        if self.pooling == "mean":
            return (states * mask[..., None]).sum(1) / lengths[:, None]
        if self.pooling == "max":
            return states.masked_fill(~mask[..., None], float("-inf")).amax(1)
        return self.attention(states, mask)
