"""`predict.py` and `eval.py` on a checkpoint of a user's own model trained on an image folder, as a user runs them."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from classicnets.predict.predictors import ImageClassifier, PredictError
from classicnets.predict.writer import COLUMNS, predict
from classicnets.run.checkpoints import CheckpointError
from classicnets.run.pipeline import train
from tests.conftest import make_image_folder, run_script

pytestmark = pytest.mark.slow  # train.py, eval.py and predict.py each run in their own process

# what a researcher keeps next to their data: a module of their own, found from the folder they run in
MYNETS = """
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, num_classes, in_channels, image_size, width=8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(width * 4, num_classes)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder with `mynets.py`, `train/`, `test/`, `other/` and a run trained from there by train.py."""
    root = tmp_path_factory.mktemp("project")
    (root / "mynets.py").write_text(MYNETS)
    make_image_folder(root / "train", per_class=12)
    make_image_folder(root / "test", per_class=4, seed=1)
    make_image_folder(root / "other", per_class=3, seed=2)
    done = run_script(
        "train.py",
        "data=image_folder",
        "data.train_dir=train",
        "data.test_dir=test",
        "data.batch_size=8",
        "model=custom",
        "model._target_=mynets.TinyNet",
        "+model.width=16",
        "optimizer.lr=0.02",
        "trainer.max_epochs=6",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        f"hydra.run.dir={root / 'run'}",
        cwd=root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_predict_a_folder_names_the_classes(project: Path) -> None:
    checkpoint = project / "run" / "checkpoints" / "last.ckpt"
    done = run_script(
        "predict.py", f"ckpt_path={checkpoint}", "input=test", "output=out/predictions.csv", cwd=project
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = project / "out" / "predictions.csv"
    assert f"predictions written to {output.relative_to(project)}" in done.stdout
    rows = _rows(output)
    assert list(rows[0]) == list(COLUMNS) and len(rows) == 12
    assert [row["input"] for row in rows] == sorted(row["input"] for row in rows)
    correct = [row["prediction"] == Path(row["input"]).parent.name for row in rows]
    assert sum(correct) >= 11, rows
    assert all(0.0 < float(row["probability"]) <= 1.0 for row in rows)


def test_eval_on_another_folder(project: Path) -> None:
    checkpoint = project / "run" / "checkpoints" / "last.ckpt"
    done = run_script(
        "eval.py",
        f"ckpt_path={checkpoint}",
        "data.test_dir=other",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={project / 'eval'}",
        cwd=project,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((project / "eval" / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.85, metrics
    saved = torch.load(checkpoint, weights_only=True)["ImageFolderDataModule"]
    assert saved["classes"] == ["bright", "dark", "striped"] and saved["image_size"] == 12


def test_predict_one_file_in_process(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(project))  # where mynets.py is, as predict.py arranges for the user
    grey = tmp_path / "large grey stripes.jpg"
    stripes = (
        Image.open(project / "test" / "striped" / "000.png").convert("L").resize((48, 48), Image.NEAREST)
    )
    stripes.save(grey)
    output = predict(project / "run" / "checkpoints" / "last.ckpt", grey, tmp_path / "one.csv")
    [row] = _rows(output)
    assert row["input"] == str(grey) and row["prediction"] == "striped"


def test_predict_with_test_time_flip_sees_an_image_and_its_mirror_alike() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)
    ).eval()
    state = {"classes": ["a", "b"], "channels": 3, "image_size": 8, "mean": [0.5] * 3, "std": [0.25] * 3}
    image = torch.rand(3, 8, 8)
    plain, flip = (
        ImageClassifier(net, state, torch.device("cpu"), test_time_flip=on) for on in (False, True)
    )
    [(_, plain_p)], [(_, mirror_p)] = plain([image]), plain([image.flip(-1)])
    assert plain_p != pytest.approx(mirror_p)
    [(flip_label, flip_p)], [(flipped_label, flipped_p)] = flip([image]), flip([image.flip(-1)])
    assert flip_label == flipped_label and flip_p == pytest.approx(flipped_p)


def test_unreadable_input_is_named_and_earlier_rows_kept(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.syspath_prepend(str(project))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    dark = Image.open(project / "test" / "dark" / "000.png")
    for name in ("a", "b", "c"):
        dark.save(inputs / f"{name}.png")
    (inputs / "bb.png").write_bytes(b"\x89PNG broken")  # sorted between b.png and c.png
    output = tmp_path / "partial.csv"
    with pytest.raises(
        PredictError, match=r"(?s)bb\.png is not an image.*The 2 predictions before it are in (\S+) "
    ) as failed:
        predict(project / "run" / "checkpoints" / "last.ckpt", inputs, output, batch_size=3)
    partial = Path(re.search(r"are in (\S+) ", str(failed.value))[1])
    assert partial.parent == tmp_path and not output.exists()  # written next to the output, never onto it
    assert [Path(row["input"]).name for row in _rows(partial)] == ["a.png", "b.png"]


def test_bad_arguments(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(project))
    checkpoint = project / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(PredictError, match=r"missing\.png does not exist"):
        predict(checkpoint, tmp_path / "missing.png", tmp_path / "out.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictError, match="no image files below"):
        predict(checkpoint, tmp_path / "empty", tmp_path / "out.csv")
    with pytest.raises(CheckpointError, match="does not exist"):
        predict(tmp_path / "nothing.ckpt", tmp_path / "empty", tmp_path / "out.csv")


def test_predict_text_classification_one_row_per_line(make_config, tmp_path: Path) -> None:
    words = {"pos": ["good", "great", "lovely", "fine"], "neg": ["bad", "awful", "dull", "poor"]}
    rows = [
        f"{' '.join(words[label][(i + j) % 4] for j in range(3))} film,{label}"
        for i in range(24)
        for label in words
    ]
    for split in ("train", "test"):
        (tmp_path / f"{split}.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    cfg = make_config(
        "data=text_files",
        f"data.train_file={tmp_path / 'train.csv'}",
        f"data.test_file={tmp_path / 'test.csv'}",
        "data.batch_size=8",
        "model=gru",
        "model.embedding_dim=16",
        "model.hidden_size=16",
        "optimizer.lr=0.02",
        "trainer.max_epochs=4",
        "logger=csv",
    )
    assert train(cfg)["test/acc"] > 0.9
    lines = tmp_path / "reviews.txt"
    lines.write_text("a good great film\nawful and dull\n\nunseen words only\n")
    output = predict(tmp_path / "checkpoints" / "last.ckpt", lines, tmp_path / "reviews.csv", batch_size=3)
    predicted = _rows(output)
    assert [row["input"] for row in predicted] == [
        "a good great film",
        "awful and dull",
        "",
        "unseen words only",
    ]
    assert [row["prediction"] for row in predicted[:2]] == ["pos", "neg"]
    assert all(row["prediction"] in words for row in predicted)


def test_predict_seq2seq_one_row_per_line(make_config, tmp_path: Path) -> None:
    cfg = make_config(
        "experiment=seq2seq",
        "data.num_train=64",
        "data.num_val=8",
        "data.num_test=8",
        "trainer.num_sanity_val_steps=0",
        "data.batch_size=16",
        "model.embedding_dim=8",
        "model.hidden_size=16",
        "trainer.max_epochs=1",
        "logger=csv",
    )
    train(cfg)
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    sources = tmp_path / "dates.txt"
    sources.write_text("March 3, 2001\n12/25/1999\nsaturday 1 june 1985\n")
    for beam_width in (1, 3):
        predicted = _rows(
            predict(checkpoint, sources, tmp_path / f"iso{beam_width}.csv", beam_width=beam_width)
        )
        assert [row["input"] for row in predicted] == sources.read_text().splitlines()
        assert all(0.0 <= float(row["probability"]) <= 1.0 for row in predicted)
    (tmp_path / "folder").mkdir()
    with pytest.raises(PredictError, match="is a folder: a text checkpoint reads a text file"):
        predict(checkpoint, tmp_path / "folder", tmp_path / "out.csv")
