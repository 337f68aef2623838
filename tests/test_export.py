"""export.py: image and text classifiers to ONNX (run with onnxruntime) and to torch.export programs; the files
serve from their metadata alone and match the checkpoint within 1e-4; outputs are never replaced unasked."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from classicnets.predict.export import TOLERANCE, ExportError, export, read_metadata
from classicnets.predict.predictors import predictor_for
from classicnets.run.checkpoints import load_checkpoint
from classicnets.run.pipeline import train
from tests.conftest import compose_config, run_script

onnxruntime = pytest.importorskip("onnxruntime")

QUICK = ("trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "logger=csv")
FAST = ("trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.accelerator=cpu")


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("image")
    train(compose_config(run, *FAST, *QUICK, "data.source=sample", "model.batch_norm=true"))
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def text_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bidirectional LSTM that summarises with its last states (the pooling whose indexing must not fix the
    batch size) on the shipped IMDB sample."""
    run = tmp_path_factory.mktemp("text")
    overrides = (
        "data=imdb",
        "model=bilstm",
        "model.pooling=last",
        "model.embedding_dim=16",
        "model.hidden_size=8",
    )
    train(compose_config(run, *FAST, *QUICK, *overrides, "data.max_length=64", "data.min_freq=5"))
    return run / "checkpoints" / "last.ckpt"


def _net(checkpoint: Path):
    return predictor_for(load_checkpoint(checkpoint), torch.device("cpu"))


def test_image_classifier_to_onnx_serves_from_its_metadata(image_checkpoint: Path, tmp_path: Path) -> None:
    output, difference = export(image_checkpoint, tmp_path / "model.onnx")
    assert difference <= TOLERANCE
    meta = read_metadata(output)
    predictor = _net(image_checkpoint)
    assert meta["classes"] == predictor.classes == [str(d) for d in range(10)]
    assert (meta["channels"], meta["image_size"], meta["mean"], meta["std"]) == (
        1,
        28,
        predictor.mean,
        predictor.std,
    )

    # a server with onnxruntime and numpy only: uint8 images → the recorded normalisation → logits
    images = np.random.default_rng(0).integers(0, 256, (7, 1, 28, 28), dtype=np.uint8)
    mean, std = (np.array(meta[key], dtype=np.float32).reshape(1, -1, 1, 1) for key in ("mean", "std"))
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 1, 28, 28]
    logits = session.run(None, {"input": ((images / 255.0 - mean) / std).astype(np.float32)})[0]
    served = [meta["classes"][i] for i in logits.argmax(1)]
    expected = predictor([torch.from_numpy(image) for image in images])  # predict.py's own path
    assert served == [label for label, _ in expected]
    with torch.inference_mode():
        reference = predictor.net(torch.from_numpy((images / 255.0 - mean) / std).float())
    assert np.abs(logits - reference.numpy()).max() <= TOLERANCE


def test_image_classifier_to_torch_export(image_checkpoint: Path, tmp_path: Path) -> None:
    output, difference = export(image_checkpoint, tmp_path / "model.pt2")
    assert difference <= TOLERANCE
    assert read_metadata(output)["classes"] == [str(d) for d in range(10)]
    program = torch.export.load(output).module()
    batch = torch.randn(9, 1, 28, 28)
    with torch.inference_mode():
        assert (program(batch) - _net(image_checkpoint).net(batch)).abs().max() <= TOLERANCE


def test_text_classifier_to_onnx_any_batch_and_length(text_checkpoint: Path, tmp_path: Path) -> None:
    output, _ = export(text_checkpoint, tmp_path / "text.onnx")
    meta = read_metadata(output)
    predictor = _net(text_checkpoint)
    assert meta["vocabulary"] == list(predictor.vocab.tokens) and meta["classes"] == ["neg", "pos"]
    assert (meta["tokenizer"], meta["lowercase"], meta["max_length"], meta["pad_index"]) == (
        "word",
        True,
        64,
        0,
    )

    # tokenize as the metadata says, with the standard library only
    texts = ["A wonderful, moving film.<br />Loved it!", "Dull and far too long", "", "the the the"]
    index = {token: i for i, token in enumerate(meta["vocabulary"])}

    def encode(text: str) -> list[int]:
        text = re.sub(meta["html_break"], " ", text, flags=re.IGNORECASE).lower()
        tokens = re.findall(meta["word_pattern"], text)[: meta["max_length"]]
        return [index.get(token, meta["unk_index"]) for token in tokens] or [meta["unk_index"]]

    rows = [encode(text) for text in texts]
    assert rows == [predictor.prepare(text) for text in texts]
    ids = np.full((len(rows), max(map(len, rows))), meta["pad_index"], dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", "length"]
    logits = session.run(None, {"input": ids})[0]
    with torch.inference_mode():
        assert np.abs(logits - predictor.net(torch.from_numpy(ids)).numpy()).max() <= TOLERANCE
    assert [meta["classes"][i] for i in logits.argmax(1)] == [label for label, _ in predictor(rows)]
    one = session.run(None, {"input": ids[1:2, : len(rows[1])]})[0]  # another batch size and length
    assert np.abs(one - logits[1:2]).max() <= TOLERANCE


def test_text_classifier_to_torch_export_pads_to_one_length(text_checkpoint: Path, tmp_path: Path) -> None:
    output, difference = export(text_checkpoint, tmp_path / "text.pt")
    assert difference <= TOLERANCE
    meta = read_metadata(output)
    assert meta["input_length"] == 64 and "input_length=64" in meta["input"]


def test_outputs_are_never_replaced_unasked(image_checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    output.write_text("someone's file")
    with pytest.raises(ExportError, match="exists: pass overwrite=true"):
        export(image_checkpoint, output)
    assert output.read_text() == "someone's file"
    with pytest.raises(ExportError, match="the suffix chooses the format"):
        export(image_checkpoint, tmp_path / "model.tflite")
    weights = tmp_path / "weights.pt"  # a checkpoint named like an export
    weights.write_bytes(image_checkpoint.read_bytes())
    with pytest.raises(ExportError, match="is the checkpoint"):
        export(weights, weights, overwrite=True)
    export(image_checkpoint, output, overwrite=True)
    assert read_metadata(output)["task"] == "image_classification"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.onnx",
        "weights.pt",
    ]  # no temporary file left


def test_seq2seq_is_not_exported(tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = ("experiment=seq2seq", "data.num_train=32", "data.num_val=8", "data.num_test=8")
    small = ("model.embedding_dim=8", "model.hidden_size=8", "trainer.num_sanity_val_steps=0")
    train(compose_config(run, *FAST, *QUICK, *overrides, *small))
    with pytest.raises(
        ExportError, match="seq2seq checkpoint: export writes image and text classifiers only"
    ):
        export(run / "checkpoints" / "last.ckpt", tmp_path / "translator.onnx")
    assert not (tmp_path / "translator.onnx").exists()


@pytest.mark.slow
def test_export_command_line(image_checkpoint: Path, tmp_path: Path) -> None:
    done = run_script("export.py", f"ckpt_path={image_checkpoint}", "output=model.onnx", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exported to model.onnx" in done.stdout and (tmp_path / "model.onnx").is_file()
    again = run_script("export.py", f"ckpt_path={image_checkpoint}", "output=model.onnx", cwd=tmp_path)
    assert again.returncode != 0 and "model.onnx exists: pass overwrite=true" in again.stderr
