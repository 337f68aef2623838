"""A checkpoint's network as a file that serves without classicnets: `python export.py ckpt_path=… output=…`.

`.onnx` (ONNX, for onnxruntime and other runtimes) or `.pt2`/`.pt` (a `torch.export` program, for PyTorch
alone). The file holds the network (input → logits) and, as metadata, what a server needs to prepare an input
and name the output: the class names, and the preprocessing (image size, channels, normalisation; the
vocabulary and the tokenizer's settings). Image and text classifiers are exported; seq2seq models are not (their
greedy and beam-search decoding is a Python loop around the network).

Every export is checked before it is kept: the exported model's outputs on a batch of another size (and, for
text, another length) than the one it was traced with must match the checkpoint's network within `TOLERANCE`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from classicnets.data.text.vocab import _HTML_BREAK, _WORD, PAD_INDEX, UNK_INDEX
from classicnets.errors import UserError
from classicnets.predict.predictors import ImageClassifier, TextClassifier, predictor_for
from classicnets.run.checkpoints import load_checkpoint

FORMATS = {".onnx": "ONNX", ".pt2": "torch.export", ".pt": "torch.export"}
TOLERANCE = 1e-4
METADATA_KEY = (
    "classicnets"  # ONNX: one metadata entry per field, `classicnets.<field>`; .pt2: classicnets.json
)
# the padded length of a text model exported with torch.export when the run set no data.max_length
DEFAULT_TEXT_LENGTH = 512


class ExportError(UserError):
    """The checkpoint or the output cannot be exported as asked."""


def export(ckpt_path: str | Path, output: str | Path, overwrite: bool = False) -> tuple[Path, float]:
    """Write the checkpoint's network to `output` (its suffix chooses the format); return the path and the
    largest difference between the exported model's outputs and the network's on the check batch."""
    ckpt_path, output = Path(ckpt_path).expanduser(), Path(output).expanduser()
    if output.suffix not in FORMATS:
        raise ExportError(
            f"output={output}: the suffix chooses the format, one of {', '.join(FORMATS)} (ONNX, or a torch.export "
            "program)"
        )
    if output.is_dir():
        raise ExportError(
            f"output={output} is a folder: give a file name, e.g. output={output / 'model.onnx'}"
        )
    if ckpt_path.exists() and output.exists() and output.samefile(ckpt_path):
        raise ExportError(f"output={output} is the checkpoint: choose another output=…")
    if output.exists() and not overwrite:
        raise ExportError(f"{output} exists: pass overwrite=true to replace it, or choose another output=…")
    checkpoint = load_checkpoint(ckpt_path)
    predictor = predictor_for(checkpoint, torch.device("cpu"))
    if not isinstance(predictor, (ImageClassifier, TextClassifier)):
        raise ExportError(
            f"{ckpt_path} is a seq2seq checkpoint: export writes image and text classifiers only. A translation is "
            "a loop of decoder steps (greedy or beam search) around the network, which an exported graph does not "
            "hold; translate with `python predict.py ckpt_path=… input=…`."
        )
    write = _write_onnx if output.suffix == ".onnx" else _write_torch_export
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        difference = write(predictor, metadata(predictor), temporary)
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)
    return output, difference


def metadata(predictor: ImageClassifier | TextClassifier) -> dict[str, Any]:
    """What a server needs besides the network: the classes, and how an input becomes the network's input."""
    if isinstance(predictor, ImageClassifier):
        return {
            "task": "image_classification",
            "classes": predictor.classes,
            "input": (
                "float32 N×C×H×W: each image converted to grey (C=1) or RGB (C=3), resized to image_size×image_size "
                "(bilinear), pixel values divided by 255, then (x − mean) / std per channel"
            ),
            "output": "logits N×classes (softmax for probabilities)",
            "channels": predictor.channels,
            "image_size": predictor.image_size,
            "mean": list(predictor.mean),
            "std": list(predictor.std),
            # how the run tested: average the logits of these views yourself (the graph holds one view)
            "test_time_flip": predictor.test_time_flip,
            "test_time_shift": predictor.test_time_shift,
        }
    return {
        "task": "text_classification",
        "classes": predictor.classes,
        "input": (
            "int64 N×L token ids: each text with HTML line breaks (html_break) replaced by a space, lowercased if "
            "lowercase, split into tokens (tokenizer word: the matches of word_pattern; char: characters; "
            "whitespace: str.split), cut to max_length tokens, each token's index in vocabulary (unknown ones "
            "unk_index, an empty text one unk_index), rows padded at the end with pad_index"
        ),
        "output": "logits N×classes (softmax for probabilities)",
        "vocabulary": list(predictor.vocab.tokens),
        "tokenizer": predictor.tokenizer,
        "word_pattern": _WORD.pattern,
        "html_break": _HTML_BREAK.pattern,
        "lowercase": predictor.lowercase,
        "max_length": predictor.max_length,
        "pad_index": PAD_INDEX,
        "unk_index": UNK_INDEX,
    }


def _examples(predictor: ImageClassifier | TextClassifier, length: int | None = None) -> tuple[Any, ...]:
    """(the batch the export traces, a batch of another size — and length — to check it on)."""
    generator = torch.Generator().manual_seed(0)
    if isinstance(predictor, ImageClassifier):
        shape = (predictor.channels, predictor.image_size, predictor.image_size)
        return torch.randn(2, *shape, generator=generator), torch.randn(5, *shape, generator=generator)
    vocabulary = len(predictor.vocab.tokens)

    def texts(n: int, longest: int) -> torch.Tensor:
        """n texts of 1 to `longest` tokens (the first that long), padded at the end to the batch's length."""
        ids = torch.randint(UNK_INDEX, vocabulary, (n, length or longest), generator=generator)
        lengths = [longest, *torch.randint(1, longest + 1, (n - 1,), generator=generator).tolist()]
        for row, real in enumerate(lengths):
            ids[row, real:] = PAD_INDEX
        return ids

    return texts(2, min(length or 12, 12)), texts(5, min(length or 19, 19))


def _check(net: nn.Module, run: Any, inputs: torch.Tensor, what: str) -> float:
    with torch.inference_mode():
        expected = net(inputs)
    got = torch.as_tensor(run(inputs))
    difference = (got - expected).abs().max().item()
    if not difference <= TOLERANCE:
        raise RuntimeError(
            f"the exported {what} model's outputs differ from the checkpoint's by {difference:.3g} "
            f"(more than {TOLERANCE}) on a batch of shape {tuple(inputs.shape)}"
        )
    return difference


def _write_onnx(predictor: ImageClassifier | TextClassifier, fields: dict[str, Any], path: Path) -> float:
    try:
        import onnx
        import onnxruntime
    except ModuleNotFoundError as missing:
        raise ExportError(
            f"exporting to ONNX needs the export extra ({missing.name} is not installed): "
            'pip install -e ".[export]"'
        ) from None
    net, (example, check) = predictor.net, _examples(predictor)
    names = {"input_names": ["input"], "output_names": ["logits"], "external_data": False}
    if isinstance(predictor, ImageClassifier):
        batch = torch.export.Dim("batch")
        torch.onnx.export(net, (example,), path, dynamo=True, dynamic_shapes=({0: batch},), **names)
    else:
        # torch.export fixes the time axis of nn.LSTM/GRU (pytorch/pytorch#115092): the TorchScript-based
        # exporter keeps the length free
        axes = {"input": {0: "batch", 1: "length"}, "logits": {0: "batch"}}
        torch.onnx.export(net, (example,), path, dynamo=False, dynamic_axes=axes, opset_version=17, **names)
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({f"{METADATA_KEY}.{key}": json.dumps(value) for key, value in fields.items()})
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _check(net, lambda x: session.run(None, {"input": x.numpy()})[0], check, "ONNX")


def _write_torch_export(
    predictor: ImageClassifier | TextClassifier, fields: dict[str, Any], path: Path
) -> float:
    net = predictor.net
    length = None
    if isinstance(predictor, TextClassifier):
        # torch.export fixes the time axis of recurrent layers: texts are padded to one length (exact, since the
        # models ignore padding)
        length = predictor.max_length or DEFAULT_TEXT_LENGTH
        fields = {**fields, "input_length": length, "input": fields["input"] + f" to input_length={length}"}
    example, check = _examples(predictor, length)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, path, extra_files={f"{METADATA_KEY}.json": json.dumps(fields)})
    loaded = torch.export.load(path).module()
    return _check(net, loaded, check, "torch.export")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The classicnets fields of an exported file (what a server reads), without classicnets on the server:
    this function only shows how."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        prefix = f"{METADATA_KEY}."
        return {
            key.removeprefix(prefix): json.loads(value)
            for key, value in props.items()
            if key.startswith(prefix)
        }
    files = {f"{METADATA_KEY}.json": ""}
    torch.export.load(path, extra_files=files)
    return json.loads(files[f"{METADATA_KEY}.json"])
