"""The recurrent classifier: shapes, padding invariance, pretrained embeddings, configs, and that it learns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from classicnets.data.errors import CorruptDatasetError
from classicnets.data.text.embeddings import read_glove
from classicnets.models import RecurrentClassifier
from classicnets.models.rnn import CELLS, POOLINGS
from tests.conftest import compose_config

RECURRENT_CONFIGS = ("rnn", "lstm", "gru", "bilstm", "bigru")
VOCAB = 50


def _ids(*lengths: int, pad_to: int | None = None, seed: int = 0) -> torch.Tensor:
    """Random non-padding ids (1..VOCAB-1), padded with 0 at the end to `pad_to` or the longest."""
    generator = torch.Generator().manual_seed(seed)
    width = pad_to or max(lengths)
    batch = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        batch[row, :length] = torch.randint(1, VOCAB, (length,), generator=generator)
    return batch


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell", CELLS)
def test_padding_never_changes_a_prediction(cell: str, pooling: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    model = RecurrentClassifier(
        3, VOCAB, cell=cell, embedding_dim=8, hidden_size=8, num_layers=2, pooling=pooling,
        bidirectional=bidirectional, dropout=0.5,
    ).eval()  # fmt: skip
    sequence = _ids(7)
    with torch.no_grad():
        alone = model(sequence)
        padded = model(torch.cat([sequence, torch.zeros(1, 13, dtype=torch.long)], dim=1))
        # next to longer and shorter neighbours, so the batch is padded well past this sequence
        in_batch = model(torch.cat([_ids(20, 3, pad_to=25, seed=1), F.pad(sequence, (0, 18))]))[2:]
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-6)
    torch.testing.assert_close(in_batch, alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_images_are_read_row_by_row(cell: str) -> None:
    model = RecurrentClassifier(10, channels=1, image_size=28, cell=cell, hidden_size=16, bidirectional=True)
    assert model.layers[0][0].input_size == 28
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    rgb = RecurrentClassifier(10, channels=3, image_size=32, cell=cell, hidden_size=16, pooling="attention")
    assert rgb.layers[0][0].input_size == 96 and rgb(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_gradients_reach_every_parameter() -> None:
    model = RecurrentClassifier(2, VOCAB, embedding_dim=8, hidden_size=8, num_layers=2, pooling="attention")
    loss = F.cross_entropy(model(_ids(5, 9, 2)), torch.tensor([0, 1, 1]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_bad_options_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="lstm, gru"):
        RecurrentClassifier(2, VOCAB, cell="transformer")
    with pytest.raises(ValueError, match="last, mean, max, attention"):
        RecurrentClassifier(2, VOCAB, pooling="sum")
    with pytest.raises(ValueError, match="vocab_size"):
        RecurrentClassifier(2)


def test_glove_vectors_initialise_the_embeddings(tmp_path: Path) -> None:
    glove = tmp_path / "glove.4d.txt"
    glove.write_text("the 1 2 3 4\nmovie 0.5 0.5 0.5 0.5\nabsent 9 9 9 9\nnew york 7 7 7 7\n")
    tokens = ["<pad>", "<unk>", "<bos>", "<eos>", "movie", "the", "unseen", "new york"]
    vocab_file = tmp_path / "vocab.json"
    vocab_file.write_text(json.dumps(tokens))
    vectors = read_glove(glove, vocab_file, dim=4)
    assert vectors.found.tolist() == [False, False, False, False, True, True, False, True]
    torch.manual_seed(0)
    model = RecurrentClassifier(
        2, len(tokens), embedding_dim=4, pretrained_embeddings=vectors, freeze_embeddings=True
    )
    weight = model.embedding.weight
    torch.testing.assert_close(weight[5], torch.tensor([1.0, 2, 3, 4]))
    torch.testing.assert_close(weight[4], torch.full((4,), 0.5))
    torch.testing.assert_close(weight[7], torch.full((4,), 7.0))  # a word with a space in it
    assert weight[0].abs().sum() == 0  # padding stays zero
    assert weight[6].abs().sum() > 0  # tokens GloVe lacks keep their random start
    assert not weight.requires_grad

    assert read_glove(None, vocab_file, dim=4) is None
    with pytest.raises(CorruptDatasetError, match=r"glove.4d.txt:1: expected a word and 8 numbers"):
        read_glove(glove, tokens, dim=8)
    with pytest.raises(CorruptDatasetError, match="vocabulary"):
        read_glove(glove, None, dim=4)
    with pytest.raises(ValueError, match="shape"):
        RecurrentClassifier(2, len(tokens), embedding_dim=8, pretrained_embeddings=vectors)


def test_glove_path_in_the_config_reaches_the_model(tmp_path: Path) -> None:
    glove = tmp_path / "glove.4d.txt"
    glove.write_text("the 1 2 3 4\n")
    vocab_file = tmp_path / "vocab.json"
    vocab_file.write_text(json.dumps(["<pad>", "<unk>", "<bos>", "<eos>", "the"]))
    cfg = compose_config(
        tmp_path, "model=lstm", "model.embedding_dim=4", f"model.pretrained_embeddings.path={glove}"
    )
    cfg.sizes = {
        "num_classes": 2,
        "vocab_size": 5,
        "vocab_file": str(vocab_file),
        "channels": None,
        "image_size": None,
    }
    model = instantiate(cfg.model)
    torch.testing.assert_close(model.embedding.weight[4], torch.tensor([1.0, 2, 3, 4]))


@pytest.mark.parametrize("config", RECURRENT_CONFIGS)
def test_recurrent_configs_build_for_text_and_images(config: str, tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, f"model={config}")
    cfg.sizes = {
        "num_classes": 4,
        "vocab_size": VOCAB,
        "vocab_file": None,
        "channels": None,
        "image_size": None,
    }
    model = instantiate(cfg.model)
    assert model(_ids(3, 6)).shape == (2, 4)
    assert model.bidirectional == config.startswith("bi")
    cfg.sizes = {"num_classes": 10, "vocab_size": None, "channels": 1, "image_size": 28}
    assert instantiate(cfg.model)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_lstm_learns_whether_a_sequence_contains_a_token() -> None:
    """A memory task: the label is whether token 7 occurs anywhere, and `last` pooling must carry it to the end."""
    torch.manual_seed(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.randint(5, 21, (n,))
        ids = torch.randint(8, VOCAB, (n, 20)) * (torch.arange(20) < lengths[:, None])
        labels = torch.randint(0, 2, (n,))
        position = (torch.rand(n) * lengths).long()
        ids[labels == 1, position[labels == 1]] = 7
        return ids, labels

    model = RecurrentClassifier(2, VOCAB, cell="lstm", embedding_dim=16, hidden_size=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        ids, labels = batch(32)
        loss = F.cross_entropy(model(ids), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ids, labels = batch(1000)
    with torch.no_grad():
        accuracy = (model.eval()(ids).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.95, accuracy  # chance is 0.5
