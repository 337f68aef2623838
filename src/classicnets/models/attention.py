"""Attention over encoder outputs: additive (Bahdanau et al., 2015) and multiplicative (Luong et al., 2015).

Each module scores every source position against a decoder query, masks the padding, and returns the
weighted sum of the encoder outputs (the context) with the weights. Keys that do not depend on the query are
computed once per source sentence by `prepare`, not at every decoding step.
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general")


class Attention(nn.Module):
    """Masked softmax over `score(query, keys)`; subclasses define the score."""

    def prepare(self, memory: torch.Tensor) -> torch.Tensor:
        """Encoder outputs (B×S×C) → keys compared with the queries (B×S×K)."""
        return memory

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, query: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query B×H, memory B×S×C, keys from `prepare`, mask B×S (True where there is a token).

        Returns the context B×C and the weights B×S, exactly 0 at padded positions; every row sums to 1 as
        long as it has one real token.
        """
        scores = self.score(query, keys).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights.unsqueeze(1), memory).squeeze(1), weights


class BahdanauAttention(Attention):
    """score = vᵀ tanh(W_q q + W_k k): a one-hidden-layer network, so query and keys may differ in size."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int) -> None:
        super().__init__()
        self.query_projection = nn.Linear(query_size, attention_size, bias=False)
        self.key_projection = nn.Linear(memory_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def prepare(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key_projection(memory)

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.v(torch.tanh(keys + self.query_projection(query).unsqueeze(1))).squeeze(-1)


class LuongDotAttention(Attention):
    """score = qᵀ k: no parameters; the decoder state must have the size of an encoder output."""

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)


class LuongGeneralAttention(LuongDotAttention):
    """score = qᵀ W k, with W applied to the keys once per sentence."""

    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        self.key_projection = nn.Linear(memory_size, query_size, bias=False)

    def prepare(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key_projection(memory)


def make_attention(kind: str, query_size: int, memory_size: int) -> Attention | None:
    """The attention module for `kind` (one of `ATTENTIONS`); None for "none"."""
    if kind == "none":
        return None
    if kind == "bahdanau":
        return BahdanauAttention(query_size, memory_size, attention_size=query_size)
    if kind == "luong_dot":
        if query_size != memory_size:
            raise ValueError(
                f"luong_dot needs equal query and memory sizes, got {query_size} and {memory_size}"
            )
        return LuongDotAttention()
    if kind == "luong_general":
        return LuongGeneralAttention(query_size, memory_size)
    raise ValueError(f"unknown attention {kind!r}; valid choices: {', '.join(ATTENTIONS)}")
