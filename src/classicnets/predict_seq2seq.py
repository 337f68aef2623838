"""Outputs for a user's own inputs from a sequence-to-sequence checkpoint, with no dataset files needed.

>>> translate("logs/runs/…/checkpoints/best-epoch009.ckpt", ["March 3rd, 1998"], beam_width=3)
[('1998-03-03', -0.0012)]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from torch import nn

from classicnets.callbacks import CHECKPOINT_KEY
from classicnets.checkpoints import CheckpointError, load_checkpoint
from classicnets.data.text.parallel import PairTokenizer, pad_sequences

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
    net = instantiate(run.model)
    prefix = "net."
    net.load_state_dict(
        {
            key[len(prefix) :]: value
            for key, value in checkpoint["state_dict"].items()
            if key.startswith(prefix)
        }
    )
    return net.eval(), PairTokenizer.from_state_dict(data_state)


def translate(
    checkpoint_path: str | Path, sources: Sequence[str], beam_width: int = 1
) -> list[tuple[str, float]]:
    """Each source text → (output text, its log-probability under the model), decoded greedily or by beam
    search."""
    net, tokenizer = load_translator(checkpoint_path)
    encoded = [tokenizer.encode_source(text) for text in sources]
    empty = [repr(text) for text, ids in zip(sources, encoded, strict=True) if not ids]
    if empty:
        raise ValueError(f"nothing to translate in {', '.join(empty)}: every source needs at least one token")
    results = []
    for start in range(0, len(encoded), BATCH_SIZE):
        chunk = encoded[start : start + BATCH_SIZE]
        lengths = torch.tensor([len(ids) for ids in chunk])
        generation = net.generate(pad_sequences(chunk), lengths, beam_width=beam_width)
        results += [
            (tokenizer.decode_target(tokens), float(score))
            for tokens, score in zip(generation.tokens.tolist(), generation.scores, strict=True)
        ]
    return results
