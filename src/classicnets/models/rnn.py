"""Recurrent sequence classifiers: Elman RNN, LSTM and GRU over token ids or image rows."""

from __future__ import annotations

import torch
from torch import nn

from classicnets.models.layers import lookup

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

    `pretrained_embeddings` is a (V×embedding_dim vectors, V booleans) pair: the rows marked found replace the
    embedding's initial rows (the data side reads them from a GloVe file, `data.text.embeddings.read_glove`);
    `freeze_embeddings` keeps the embeddings fixed.
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
        pretrained_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        freeze_embeddings: bool = False,
    ) -> None:
        super().__init__()
        rnn_class, options = lookup(CELLS, cell, "cell")
        lookup(dict.fromkeys(POOLINGS), pooling, "pooling")
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
            if pretrained_embeddings is not None:
                self._load_pretrained(*pretrained_embeddings)
            self.embedding.weight.requires_grad_(not freeze_embeddings)
            input_size = embedding_dim
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

    def _load_pretrained(self, vectors: torch.Tensor, found: torch.Tensor) -> None:
        if vectors.shape != self.embedding.weight.shape:
            raise ValueError(
                f"pretrained embeddings of shape {tuple(vectors.shape)} for an embedding of shape "
                f"{tuple(self.embedding.weight.shape)} (vocab_size × embedding_dim)"
            )
        found = found.clone()
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
            # shape[0], not len(): an exported graph keeps the batch size free
            rows = torch.arange(states.shape[0], device=states.device)
            last = states[rows, lengths - 1, : self.hidden_size]
            return torch.cat([last, states[:, 0, self.hidden_size :]], dim=1)
        if self.pooling == "mean":
            return (states * mask[..., None]).sum(1) / lengths[:, None]
        if self.pooling == "max":
            return states.masked_fill(~mask[..., None], float("-inf")).amax(1)
        return self.attention(states, mask)
