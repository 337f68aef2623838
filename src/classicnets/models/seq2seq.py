"""Encoder-decoder RNNs (Sutskever et al., 2014; Cho et al., 2014) with optional attention.

The encoder reads the padded source (packed, so padding never enters the recurrence); the decoder emits one
target token per step. With `attention="bahdanau"` the previous decoder state attends before the RNN step and
the context is fed into it; with Luong attention the new state attends after the step and the attentional
vector is fed to the next step ("input feeding"). With `"none"` the decoder only sees the encoder's final
state. A bidirectional encoder's two final states are concatenated, so the decoder is twice as wide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from classicnets.models.attention import make_attention
from classicnets.models.layers import lookup

RNNS: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}
# an LSTM's state is (hidden, cell); a GRU's is the hidden state alone
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _map_state(state: State, function: Callable[[torch.Tensor], torch.Tensor]) -> State:
    return tuple(function(s) for s in state) if isinstance(state, tuple) else function(state)  # type: ignore[return-value]


def _top_hidden(state: State) -> torch.Tensor:
    """The last layer's hidden state, B×H: what attends and what is compared with the memory."""
    return (state[0] if isinstance(state, tuple) else state)[-1]


def _to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor copied to `device` without the host waiting for the copy (from pinned memory)."""
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def _make_rnn(
    cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, **kwargs
) -> nn.RNNBase:
    rnn_class = lookup(RNNS, cell, "cell")
    between_layers = dropout if num_layers > 1 else 0.0  # PyTorch warns when dropout has no layer to act on
    return rnn_class(input_size, hidden_size, num_layers, batch_first=True, dropout=between_layers, **kwargs)


@dataclass
class Generation:
    """Decoded sequences: tokens B×T (padding after the end token), their total log-probabilities B, and the
    attention weights B×T×S (None without attention)."""

    tokens: torch.Tensor
    scores: torch.Tensor
    attention: torch.Tensor | None


class Encoder(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        cell: str,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
        pad_index: int,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_index)
        self.dropout = nn.Dropout(dropout)
        self.rnn = _make_rnn(
            cell, embedding_dim, hidden_size, num_layers, dropout, bidirectional=bidirectional
        )
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions

    def forward(self, source: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """source B×S ids, lengths B → outputs B×S×output_size (zeros at padding), final state L×B×output_size.

        Packing needs the lengths on the host; given there (as the data modules do), nothing here waits for the
        device: the batch is sorted by length on the host and the permutation goes over asynchronously.
        """
        embedded = self.dropout(self.embedding(source))
        lengths = lengths.cpu()
        order = torch.sort(lengths, descending=True, stable=True).indices
        order_there = _to_device(order, source.device)
        packed = pack_padded_sequence(embedded.index_select(0, order_there), lengths[order], batch_first=True)
        outputs, state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=source.size(1))
        back = torch.argsort(order_there)  # the batch's own order again
        outputs = outputs.index_select(0, back)
        return outputs, _map_state(state, lambda s: self._join_directions(s.index_select(1, back)))

    def _join_directions(self, state: torch.Tensor) -> torch.Tensor:
        # (layers·directions)×B×H → layers×B×(directions·H): each layer's forward and backward states side by side
        layers, batch = self.num_layers, state.size(1)
        state = state.view(layers, self.num_directions, batch, -1).transpose(1, 2)
        return state.reshape(layers, batch, -1)


@dataclass
class Memory:
    """What the decoder reads at every step: encoder outputs, their attention keys and the padding mask."""

    outputs: torch.Tensor
    keys: torch.Tensor | None
    mask: torch.Tensor

    def repeat(self, times: int) -> Memory:
        def repeated(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.repeat_interleave(times, dim=0)

        return Memory(repeated(self.outputs), repeated(self.keys), repeated(self.mask))


class Decoder(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        cell: str,
        num_layers: int,
        attention: str,
        dropout: float,
        pad_index: int,
    ) -> None:
        super().__init__()
        self.kind = attention
        self.hidden_size = hidden_size
        # the encoder outputs have the decoder's width (see Seq2Seq), so every attention kind fits
        self.attention = make_attention(attention, hidden_size, hidden_size)
        # the RNN also reads Bahdanau's context or Luong's previous attentional vector
        extra_input = 0 if self.attention is None else hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_index)
        self.dropout = nn.Dropout(dropout)
        self.rnn = _make_rnn(cell, embedding_dim + extra_input, hidden_size, num_layers, dropout)
        # Luong's attentional vector tanh(W_c[h; c]); Bahdanau's "deep output" is the same layer
        self.combine = nn.Linear(2 * hidden_size, hidden_size) if self.attention is not None else None
        self.output = nn.Linear(hidden_size, vocab_size)

    def prepare(self, outputs: torch.Tensor, mask: torch.Tensor) -> Memory:
        return Memory(outputs, self.attention.prepare(outputs) if self.attention is not None else None, mask)

    def step(
        self, tokens: torch.Tensor, state: State, feed: torch.Tensor, memory: Memory
    ) -> tuple[torch.Tensor, State, torch.Tensor, torch.Tensor | None]:
        """One token per sequence (B) → logits B×V, the new state, the vector fed to the next step (B×H) and
        the attention weights B×S (None without attention)."""
        inputs = self.dropout(self.embedding(tokens))
        weights = None
        if self.kind == "bahdanau":
            context, weights = self.attention(_top_hidden(state), memory.outputs, memory.keys, memory.mask)
            inputs = torch.cat([inputs, context], dim=-1)
        elif self.kind != "none":
            inputs = torch.cat([inputs, feed], dim=-1)
        output, state = self.rnn(inputs.unsqueeze(1), state)
        output = output.squeeze(1)
        if self.kind.startswith("luong"):
            context, weights = self.attention(output, memory.outputs, memory.keys, memory.mask)
        if self.combine is not None:
            output = torch.tanh(self.combine(torch.cat([output, context], dim=-1)))
        return self.output(self.dropout(output)), state, output, weights


class Seq2Seq(nn.Module):
    """Encoder-decoder over token ids; `attention` is one of none, bahdanau, luong_dot, luong_general.

    Ids 0, 2 and 3 are padding, begin and end of sequence (as `classicnets.data.text.vocab` assigns them).
    `teacher_forcing_ratio` is the chance, per sequence and step in training, that the decoder is fed the true
    previous token rather than its own prediction; `max_output_length` caps generated outputs (end token apart).
    """

    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        attention: str = "bahdanau",
        cell: str = "gru",
        embedding_dim: int = 64,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        teacher_forcing_ratio: float = 1.0,
        max_output_length: int = 50,
        pad_index: int = 0,
        bos_index: int = 2,
        eos_index: int = 3,
    ) -> None:
        super().__init__()
        if not 0.0 <= teacher_forcing_ratio <= 1.0:
            raise ValueError(f"teacher_forcing_ratio must be in [0, 1], got {teacher_forcing_ratio}")
        self.encoder = Encoder(
            source_vocab_size, embedding_dim, hidden_size, cell, num_layers, bidirectional, dropout, pad_index
        )
        self.decoder = Decoder(
            target_vocab_size,
            embedding_dim,
            self.encoder.output_size,
            cell,
            num_layers,
            attention,
            dropout,
            pad_index,
        )
        self.teacher_forcing_ratio = teacher_forcing_ratio
        self.max_output_length = max_output_length
        self.pad_index, self.bos_index, self.eos_index = pad_index, bos_index, eos_index

    def encode(self, source: torch.Tensor, lengths: torch.Tensor) -> tuple[Memory, State]:
        outputs, state = self.encoder(source, lengths)
        return self.decoder.prepare(outputs, source != self.pad_index), state

    def forward(
        self, source: torch.Tensor, lengths: torch.Tensor, target_inputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Score every target position: target_inputs B×T (begin token first) → logits B×T×V, attention
        B×T×S or None. In training mode the teacher forcing ratio decides which inputs the decoder sees."""
        memory, state = self.encode(source, lengths)
        feed = memory.outputs.new_zeros(len(source), self.decoder.hidden_size)
        forcing = self.teacher_forcing_ratio if self.training else 1.0
        tokens = target_inputs[:, 0]
        all_logits, all_weights = [], []
        for t in range(target_inputs.size(1)):
            logits, state, feed, weights = self.decoder.step(tokens, state, feed, memory)
            all_logits.append(logits)
            all_weights.append(weights)
            if t + 1 < target_inputs.size(1):
                tokens = target_inputs[:, t + 1]
                if forcing < 1.0:
                    own = torch.rand(len(tokens), device=tokens.device) >= forcing
                    tokens = torch.where(own, logits.argmax(-1), tokens)
        attention = None if all_weights[0] is None else torch.stack(all_weights, dim=1)
        return torch.stack(all_logits, dim=1), attention

    @torch.no_grad()
    def generate(
        self,
        source: torch.Tensor,
        lengths: torch.Tensor,
        beam_width: int = 1,
        max_length: int | None = None,
        check_every: int | None = None,
    ) -> Generation:
        """Greedy decoding (`beam_width=1`) or beam search; scores are summed log-probabilities, end included.

        Decoding stops once every sequence has ended. Asking whether they have waits for the device, so on an
        accelerator it is asked every `check_every` tokens only (default 8; 1 on a CPU, where it costs nothing);
        the steps decoded past the end are cut off again, so the result is the same.
        """
        max_length = self.max_output_length if max_length is None else max_length
        if beam_width < 1:
            raise ValueError(f"beam_width must be at least 1, got {beam_width}")
        check_every = check_every or (1 if source.device.type == "cpu" else 8)
        if beam_width == 1:
            return self.greedy(source, lengths, max_length, check_every)
        return self.beam_search(source, lengths, beam_width, max_length, check_every)

    def greedy(
        self, source: torch.Tensor, lengths: torch.Tensor, max_length: int, check_every: int = 1
    ) -> Generation:
        memory, state = self.encode(source, lengths)
        batch = len(source)
        feed = memory.outputs.new_zeros(batch, self.decoder.hidden_size)
        tokens = source.new_full((batch,), self.bos_index)
        scores = memory.outputs.new_zeros(batch)
        finished = torch.zeros(batch, dtype=torch.bool, device=source.device)
        outputs, all_weights, ended = [], [], []
        for step in range(max_length + 1):  # + 1: the end token
            logits, state, feed, weights = self.decoder.step(tokens, state, feed, memory)
            log_probs = F.log_softmax(logits, dim=-1)
            best, tokens = log_probs.max(dim=-1)
            scores += best.masked_fill(finished, 0.0)
            tokens = tokens.masked_fill(finished, self.pad_index)
            outputs.append(tokens)
            all_weights.append(weights)
            finished |= tokens == self.eos_index
            ended.append(finished.all())
            if (step + 1) % check_every == 0 and ended[-1]:
                break
        steps = _steps_until_all_ended(ended)
        attention = None if all_weights[0] is None else torch.stack(all_weights[:steps], dim=1)
        return Generation(torch.stack(outputs[:steps], dim=1), scores, attention)

    def beam_search(
        self, source: torch.Tensor, lengths: torch.Tensor, width: int, max_length: int, check_every: int = 1
    ) -> Generation:
        """All sentences × `width` hypotheses decoded as one batch. A finished hypothesis can only be extended
        by padding at log-probability 0, so it keeps its score and competes with the unfinished ones."""
        memory, state = self.encode(source, lengths)
        batch, rows = len(source), len(source) * width
        memory = memory.repeat(width)
        state = _map_state(state, lambda s: s.repeat_interleave(width, dim=1))
        feed = memory.outputs.new_zeros(rows, self.decoder.hidden_size)
        tokens = source.new_full((rows,), self.bos_index)
        # all hypotheses start identical: only the first may expand, or the beam would hold copies
        scores = memory.outputs.new_full((batch, width), float("-inf"))
        scores[:, 0] = 0.0
        finished = torch.zeros(rows, dtype=torch.bool, device=source.device)
        history = source.new_zeros(rows, 0)
        weight_history = memory.outputs.new_zeros(rows, 0, source.size(1))
        offsets = torch.arange(batch, device=source.device).unsqueeze(1) * width
        ended = []
        for step in range(max_length + 1):
            logits, state, feed, weights = self.decoder.step(tokens, state, feed, memory)
            log_probs = F.log_softmax(logits, dim=-1)
            after_end = torch.full_like(log_probs[0], float("-inf"))
            after_end[self.pad_index] = 0.0
            log_probs = torch.where(finished.unsqueeze(1), after_end, log_probs)
            vocab = log_probs.size(1)
            scores, flat = (scores.view(rows, 1) + log_probs).view(batch, width * vocab).topk(width, dim=1)
            parents = (flat // vocab + offsets).view(-1)
            tokens = (flat % vocab).view(-1)
            state = _map_state(state, partial(torch.index_select, dim=1, index=parents))
            feed = feed[parents]
            history = torch.cat([history[parents], tokens.unsqueeze(1)], dim=1)
            if weights is not None:
                weight_history = torch.cat([weight_history[parents], weights[parents].unsqueeze(1)], dim=1)
            finished = finished[parents] | (tokens == self.eos_index)
            ended.append(finished.all())
            if (step + 1) % check_every == 0 and ended[-1]:
                break
        steps = _steps_until_all_ended(ended)
        best = (scores.argmax(dim=1) + offsets.squeeze(1)).view(-1)
        attention = weight_history[best, :steps] if self.decoder.attention is not None else None
        return Generation(history[best, :steps], scores.max(dim=1).values, attention)


def _steps_until_all_ended(ended: list[torch.Tensor]) -> int:
    """How many decoding steps it took until every sequence had ended (all of them if some never did); one wait
    for the device."""
    flags = torch.stack(ended).tolist()
    return flags.index(True) + 1 if True in flags else len(flags)
