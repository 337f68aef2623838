"""Outputs for a user's own inputs from a sequence-to-sequence checkpoint, with no dataset files needed.

>>> translate("logs/runs/…/checkpoints/best-epoch009.ckpt", ["March 3rd, 1998"], beam_width=3)
[('1998-03-03', -0.0012)]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from classicnets.data.text.vocab import until_end
from classicnets.predict.predictors import Translator, predictor_for
from classicnets.run.checkpoints import CheckpointError, load_checkpoint, saved_config
from classicnets.tasks.visuals import attention_figure

BATCH_SIZE = 256


def load_translator(checkpoint_path: str | Path, beam_width: int = 1) -> Translator:
    """The checkpoint's network (on the CPU, in eval mode) with the tokenizer saved beside it."""
    checkpoint = load_checkpoint(checkpoint_path)
    translator = predictor_for(checkpoint, torch.device("cpu"), beam_width)
    if not isinstance(translator, Translator):
        config = saved_config(checkpoint)
        raise CheckpointError(
            f"{checkpoint_path} is not a sequence-to-sequence checkpoint (model {config['model']['_target_']}, "
            f"data {config['data']['_target_']}): it has no source and target vocabularies"
        )
    return translator


def _encode(translator: Translator, sources: Sequence[str]) -> list[list[int]]:
    encoded = [translator.tokenizer.encode_source(text) for text in sources]
    empty = [repr(text) for text, ids in zip(sources, encoded, strict=True) if not ids]
    if empty:
        raise ValueError(f"nothing to translate in {', '.join(empty)}: every source needs at least one token")
    return encoded


def translate(
    checkpoint_path: str | Path, sources: Sequence[str], beam_width: int = 1
) -> list[tuple[str, float]]:
    """Each source text → (output text, its log-probability under the model), decoded greedily or by beam
    search."""
    translator = load_translator(checkpoint_path, beam_width)
    encoded = _encode(translator, sources)
    results = []
    for start in range(0, len(encoded), BATCH_SIZE):
        generation = translator.generate(encoded[start : start + BATCH_SIZE])
        results += [
            (translator.tokenizer.decode_target(tokens), float(score))
            for tokens, score in zip(generation.tokens.tolist(), generation.scores, strict=True)
        ]
    return results


def plot_attention(checkpoint_path: str | Path, sources: Sequence[str], path: str | Path) -> None:
    """Save one image with a heatmap per source: input tokens × the greedily generated output tokens."""
    translator = load_translator(checkpoint_path)
    encoded = _encode(translator, sources)
    generation = translator.generate(encoded, beam_width=1)
    if generation.attention is None:
        raise ValueError(f"{checkpoint_path}: the model has no attention (model.attention=none)")
    source_tokens = translator.tokenizer.source_vocab.tokens
    target_tokens = translator.tokenizer.target_vocab.tokens
    examples = []
    for ids, tokens, weights in zip(encoded, generation.tokens.tolist(), generation.attention, strict=True):
        output = until_end(tokens, include_end=True)
        labels = [source_tokens[i] for i in ids], [target_tokens[i] for i in output]
        examples.append((*labels, weights[: len(output), : len(ids)]))
    attention_figure(examples).savefig(path, dpi=120)
