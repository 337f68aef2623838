"""One `Predictor` per kind of checkpoint: how to list a path's inputs, prepare one input, and predict a batch.

A checkpoint carries all that is needed: the run's config (to rebuild the network), its weights, and the data
module's state (resize, normalisation and class names of images; the vocabulary of text). No dataset is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from classicnets.data.batches import normalize
from classicnets.data.image_folder import image_files, read_image
from classicnets.data.text.batching import pad_ids
from classicnets.data.text.parallel import PairTokenizer
from classicnets.data.text.readers import is_table, not_text_error, open_text, read_table
from classicnets.data.text.vocab import UNK_INDEX, Vocabulary, tokenize
from classicnets.errors import UserError
from classicnets.models.seq2seq import Generation
from classicnets.run.checkpoints import CheckpointError, data_state, network_weights, saved_config
from classicnets.tasks.classification import augmented_logits


class PredictError(UserError, ValueError):
    """An input could not be predicted; the rows before it are in the CSV already."""


class Predictor(Protocol):
    def inputs(self, path: Path) -> list[Any]:
        """What `path` holds, one entry per CSV row."""

    def prepare(self, item: Any) -> Any:
        """One input, ready to batch; raises with the input's name when it cannot be read."""

    def __call__(self, prepared: Sequence[Any]) -> list[tuple[str, float]]:
        """(prediction, probability or score) for each prepared input."""


class ImageClassifier:
    """Image files → top-1 class name and its softmax probability, resized and normalised as in training.

    With `test_time_flip`/`test_time_shift` the logits are averaged over mirrored and moved views of each image,
    as the run tested (`augmented_logits`).
    """

    def __init__(
        self,
        net: nn.Module,
        state: dict[str, Any],
        device: torch.device,
        test_time_flip: bool = False,
        test_time_shift: int = 0,
    ) -> None:
        self.net, self.device = net, device
        self.test_time_flip, self.test_time_shift = test_time_flip, test_time_shift
        self.classes = list(state["classes"])
        self.channels, self.image_size = int(state["channels"]), int(state["image_size"])
        self.mean, self.std = state["mean"], state["std"]

    def inputs(self, path: Path) -> list[Path]:
        if not path.is_dir():
            return [path]
        files = image_files(path)
        if not files:
            raise PredictError(f"no image files below {path}")
        return files

    def prepare(self, item: Path) -> torch.Tensor:
        return read_image(item, self.channels, self.image_size)

    @torch.inference_mode()
    def __call__(self, prepared: Sequence[torch.Tensor]) -> list[tuple[str, float]]:
        images = normalize(torch.stack(list(prepared)).to(self.device), self.mean, self.std)
        logits = augmented_logits(self.net, images, self.test_time_flip, self.test_time_shift)
        probability, index = logits.softmax(dim=1).max(dim=1)
        return [(self.classes[i], p) for i, p in zip(index.tolist(), probability.tolist(), strict=True)]


def text_lines(path: Path, encoding: str = "utf-8") -> list[str]:
    """One input a line, every line (blank ones too), so row N of the CSV is line N of the file."""
    if path.is_dir():
        raise PredictError(f"{path} is a folder: a text checkpoint reads a text file with one input a line")
    try:
        with open_text(path, encoding) as file:
            return file.read().splitlines()
    except UnicodeDecodeError as error:
        raise PredictError(str(not_text_error(path, encoding, error))) from error


def text_inputs(path: Path, text_field: str = "text", encoding: str = "utf-8") -> list[str]:
    """The texts of `path` as training reads them: the `text_field` of each row of a .csv/.tsv/.jsonl file
    (+.gz; a label column is ignored: eval.py measures accuracy), else one input a line."""
    if is_table(path) and not path.is_dir():
        return [example.text for example in read_table(path, text_field, None, encoding)]
    return text_lines(path, encoding)


class TextClassifier:
    """Lines of text → top-1 class name and its probability, tokenized with the run's saved vocabulary."""

    def __init__(
        self,
        net: nn.Module,
        state: dict[str, Any],
        device: torch.device,
        text_field: str = "text",
        encoding: str = "utf-8",
    ) -> None:
        self.net, self.device = net, device
        self.text_field, self.encoding = text_field, encoding
        self.classes = list(state["classes"])
        self.vocab = Vocabulary.from_state_dict(state["vocabulary"])
        self.tokenizer, self.lowercase, self.max_length = (
            state["tokenizer"],
            state["lowercase"],
            state["max_length"],
        )

    def inputs(self, path: Path) -> list[str]:
        return text_inputs(path, self.text_field, self.encoding)

    def prepare(self, item: str) -> list[int]:
        tokens = tokenize(item, self.tokenizer, self.lowercase)[: self.max_length]
        return self.vocab.encode(tokens) or [UNK_INDEX]  # as in training: never an empty row

    @torch.inference_mode()
    def __call__(self, prepared: Sequence[list[int]]) -> list[tuple[str, float]]:
        ids = pad_ids(prepared).to(self.device)
        probability, index = self.net(ids).softmax(dim=1).max(dim=1)
        return [(self.classes[i], p) for i, p in zip(index.tolist(), probability.tolist(), strict=True)]


class Translator:
    """Source lines → generated target text (greedy, or beam search with `beam_width`) and its probability.

    A `.tsv` file is read as training reads one: the source is its first column."""

    def __init__(
        self,
        net: nn.Module,
        state: dict[str, Any],
        device: torch.device,
        beam_width: int,
        encoding: str = "utf-8",
    ) -> None:
        self.net, self.device, self.beam_width = net, device, beam_width
        self.encoding = encoding
        self.tokenizer = PairTokenizer.from_state_dict(state)

    def inputs(self, path: Path) -> list[str]:
        lines = text_lines(path, self.encoding)
        return [line.split("\t", 1)[0] for line in lines] if path.suffix.lower() == ".tsv" else lines

    def prepare(self, item: str) -> list[int]:
        return self.tokenizer.encode_source(item) or [UNK_INDEX]

    @torch.inference_mode()
    def generate(self, prepared: Sequence[list[int]], beam_width: int | None = None) -> Generation:
        """The decoded outputs of a batch of prepared sources (`beam_width` defaults to the translator's)."""
        source = pad_ids(prepared).to(self.device)
        lengths = torch.tensor(
            [len(ids) for ids in prepared]
        )  # on the host, where the encoder packs with them
        return self.net.generate(source, lengths, beam_width=beam_width or self.beam_width)

    def __call__(self, prepared: Sequence[list[int]]) -> list[tuple[str, float]]:
        generation = self.generate(prepared)
        texts = [self.tokenizer.decode_target(row) for row in generation.tokens.tolist()]
        # the score is the output's summed log-probability: its exponential is the probability of the sequence
        return list(zip(texts, generation.scores.exp().tolist(), strict=True))


def predictor_for(checkpoint: dict[str, Any], device: torch.device, beam_width: int = 1) -> Predictor:
    """The predictor of the checkpoint's task, told apart by its task and its data module's state."""
    config = saved_config(checkpoint)
    task = config["task"]["_target_"].rsplit(".", 1)[-1]
    data = config["data"]["_target_"].rsplit(".", 1)[-1]
    state = data_state(checkpoint)
    if task == "ClassificationTask" and "mean" in state:
        flip, shift = (
            bool(config["task"].get("test_time_flip")),
            int(config["task"].get("test_time_shift") or 0),
        )
        return ImageClassifier(restore_net(checkpoint, device), state, device, flip, shift)
    encoding = config["data"].get("encoding") or "utf-8"
    if task == "ClassificationTask" and state.get("vocabulary"):
        text_field = config["data"].get("text_field") or "text"
        return TextClassifier(restore_net(checkpoint, device), state, device, text_field, encoding)
    if task == "Seq2SeqTask" and "source_vocab" in state:
        return Translator(restore_net(checkpoint, device), state, device, beam_width, encoding)
    raise CheckpointError(
        f"predict does not know this checkpoint's task (task {task}, data {data}): it predicts with image and "
        "text classification and seq2seq checkpoints."
    )


def restore_net(checkpoint: dict[str, Any], device: torch.device) -> nn.Module:
    """The task's network, built from the saved (resolved) model config with the trained weights, in eval mode."""
    net = instantiate(OmegaConf.create(saved_config(checkpoint)["model"]))
    net.load_state_dict(network_weights(checkpoint))
    return net.to(device).eval()
