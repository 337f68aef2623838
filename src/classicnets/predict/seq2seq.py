"""Outputs for a user's own inputs from a sequence-to-sequence checkpoint, with no dataset files needed.

>>> translate("logs/runs/…/checkpoints/best-epoch009.ckpt", ["March 3rd, 1998"], beam_width=3)
[('1998-03-03', -0.0012)]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch import nn

from classicnets.callbacks import CHECKPOINT_KEY
from classicnets.checkpoints import CheckpointError, load_checkpoint
from classicnets.data.text.parallel import PairTokenizer, pad_sequences
from classicnets.data.text.vocab import EOS_INDEX
from classicnets.models.seq2seq import Generation
from classicnets.predict import restore_net
from classicnets.tasks.visuals import attention_figure

BATCH_SIZE = 256


def load_translator(checkpoint_path: str | Path) -> tuple[nn.Module, PairTokenizer]:
    """The trained network (in eval mode) and the tokenizer saved with it."""
    checkpoint = load_checkpoint(checkpoint_path)
    run = OmegaConf.create(checkpoint[CHECKPOINT_KEY]["config"])
    # Lightning keeps the data module's state under its class name
    data_state = checkpoint.get(get_class(run.data._target_).__qualname__)
    if not data_state or "target_vocab" not in data_state:
        raise CheckpointError(
            f"{checkpoint_path} is not a sequence-to-sequence checkpoint (model {run.model._target_}, data "
            f"{run.data._target_}): it has no source and target vocabularies"
        )
    return restore_net(checkpoint, torch.device("cpu")), PairTokenizer.from_state_dict(data_state)


def _encode(tokenizer: PairTokenizer, sources: Sequence[str]) -> list[list[int]]:
    encoded = [tokenizer.encode_source(text) for text in sources]
    empty = [repr(text) for text, ids in zip(sources, encoded, strict=True) if not ids]
    if empty:
        raise ValueError(f"nothing to translate in {', '.join(empty)}: every source needs at least one token")
    return encoded


def _generate(net: nn.Module, encoded: Sequence[list[int]], beam_width: int) -> Generation:
    lengths = torch.tensor([len(ids) for ids in encoded])
    return net.generate(pad_sequences(encoded), lengths, beam_width=beam_width)


def translate(
    checkpoint_path: str | Path, sources: Sequence[str], beam_width: int = 1
) -> list[tuple[str, float]]:
    """Each source text → (output text, its log-probability under the model), decoded greedily or by beam
    search."""
    net, tokenizer = load_translator(checkpoint_path)
    encoded = _encode(tokenizer, sources)
    results = []
    for start in range(0, len(encoded), BATCH_SIZE):
        generation = _generate(net, encoded[start : start + BATCH_SIZE], beam_width)
        results += [
            (tokenizer.decode_target(tokens), float(score))
            for tokens, score in zip(generation.tokens.tolist(), generation.scores, strict=True)
        ]
    return results


def plot_attention(checkpoint_path: str | Path, sources: Sequence[str], path: str | Path) -> None:
    """Save one image with a heatmap per source: input tokens × the greedily generated output tokens."""
    net, tokenizer = load_translator(checkpoint_path)
    encoded = _encode(tokenizer, sources)
    generation = _generate(net, encoded, beam_width=1)
    if generation.attention is None:
        raise ValueError(f"{checkpoint_path}: the model has no attention (model.attention=none)")
    source_tokens, target_tokens = tokenizer.source_vocab.tokens, tokenizer.target_vocab.tokens
    examples = []
    for ids, tokens, weights in zip(encoded, generation.tokens.tolist(), generation.attention, strict=True):
        output = tokens[: tokens.index(EOS_INDEX) + 1] if EOS_INDEX in tokens else tokens
        labels = [source_tokens[i] for i in ids], [target_tokens[i] for i in output]
        examples.append((*labels, weights[: len(output), : len(ids)]))
    attention_figure(examples).savefig(path, dpi=120)
