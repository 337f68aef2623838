"""Off the happy path (issue 21): a bad or awkward input ends in one clear message that names the file or the key,
with exit status 2 (130 after a Ctrl-C), no traceback, and every file that existed before the command
byte-identical after it. Inputs that were already handled well are held here too.

The entry points run in a subprocess where the exit status and the absence of a traceback are the point; the
rest runs in this process. docs/reliability.md lists each guarantee next to the test that holds it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classicnets.data import CorruptDatasetError, ImageFolderDataModule, ParallelTextDataModule
from classicnets.data.image_folder import read_image
from classicnets.data.text.readers import read_table
from classicnets.errors import ConfigError
from classicnets.predict.predictors import PredictError
from classicnets.predict.writer import predict
from classicnets.run.checkpoints import CheckpointError, load_checkpoint
from classicnets.run.output_dir import OutputDirError, claim_run_dir
from classicnets.run.pipeline import evaluate, train
from classicnets.run.status import read_status
from tests.conftest import ROOT, compose_config, make_image_folder, run_script

# one batch of everything, quietly, on the CPU
ONE_BATCH = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
    "logger=csv",
)


def hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file below `roots` (a root may be a file itself)."""
    files = [p for root in roots for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@contextmanager
def untouched(*roots: Path) -> Iterator[None]:
    """Every file below `roots` before the block is there, byte-identical, after it."""
    before = hashes(*roots)
    yield
    after = hashes(*roots)
    assert {path: after.get(path) for path in before} == before


def cli(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """An entry point run as a user runs it: without HYDRA_FULL_ERROR."""
    return run_script(script, *args, cwd=cwd, full_error=False)


def ended(done: subprocess.CompletedProcess, status: int, *named: str) -> str:
    """Assert the exit status, no traceback, and that the output names each of `named`; return the output."""
    output = done.stdout + done.stderr
    assert done.returncode == status, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for name in named:
        assert name in output, (name, output[-3000:])
    return output


def _image_run(output_dir: Path, images: Path, *overrides: str) -> list[str]:
    return [
        "data=image_folder",
        f"data.train_dir={images / 'train'}",
        f"data.test_dir={images / 'test'}",
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "model=mlp",
        "model.hidden_sizes=[16]",
        *ONE_BATCH,
        f"hydra.run.dir={output_dir}",
        *overrides,
    ]


def _in_process(output_dir: Path, *overrides: str, config_name: str = "train"):
    return compose_config(
        output_dir, *(o for o in overrides if not o.startswith("hydra.")), config_name=config_name
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny image folders and texts, and a one-batch image run and text run trained on them."""
    root = tmp_path_factory.mktemp("bad inputs")
    make_image_folder(root / "images" / "train", per_class=4)
    make_image_folder(root / "images" / "test", per_class=2, seed=1)
    train(_in_process(root / "image_run", *_image_run(root / "image_run", root / "images")))

    words = {"pos": "good great lovely fine", "neg": "bad awful dull poor"}
    rows = [(f"{words[label]} {i}", label) for i in range(12) for label in words]
    for split in ("train", "test"):
        with open(root / f"{split}.csv", "w", newline="") as file:
            csv.writer(file).writerows([("text", "label"), *rows])
    text_run = (
        "data=text_files",
        f"data.train_file={root / 'train.csv'}",
        f"data.test_file={root / 'test.csv'}",
        "model=lstm",
        "model.embedding_dim=8",
        "model.hidden_size=8",
        *ONE_BATCH,
    )
    train(_in_process(root / "text_run", *text_run))
    return root


def _checkpoint(project: Path, run: str = "image_run") -> Path:
    return project / run / "checkpoints" / "last.ckpt"


# ---------------------------------------------------------------- 2. nothing lost


def test_predict_never_writes_over_an_input_and_an_existing_output_only_with_overwrite(
    project: Path, tmp_path: Path
) -> None:
    image = tmp_path / "a.png"
    shutil.copy(project / "images" / "test" / "dark" / "000.png", image)
    existing = tmp_path / "existing.csv"
    existing.write_text("input,prediction,probability\nkeep,me,1\n")
    checkpoint = _checkpoint(project)
    with untouched(tmp_path, checkpoint):
        ended(
            cli("predict.py", f"ckpt_path={checkpoint}", f"input={image}", f"output={image}"),
            2,
            "is the input",
        )
        ended(
            cli("predict.py", f"ckpt_path={checkpoint}", f"input={image}", f"output={existing}"),
            2,
            f"{existing} exists: pass overwrite=true",
        )
        zero = ("overwrite=true", "batch_size=0")
        done = cli("predict.py", f"ckpt_path={checkpoint}", f"input={image}", f"output={existing}", *zero)
        ended(done, 2, "batch_size=0")
        with pytest.raises(PredictError, match=rf"output={checkpoint} is the checkpoint"):
            predict(checkpoint, image, checkpoint, overwrite=True)
    assert not list(tmp_path.glob(".*.partial"))

    # a run that fails half-way leaves the existing file whole and the rows it made in the file it names
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(image, inputs / "a.png")
    (inputs / "b.png").write_bytes(b"\x89PNG broken")
    with untouched(existing), pytest.raises(PredictError, match=r"The 1 predictions before it are in (\S+) "):
        predict(checkpoint, inputs, existing, batch_size=1, overwrite=True)
    [partial] = tmp_path.glob(".existing.csv.*.partial")
    assert "a.png" in partial.read_text()
    assert predict(checkpoint, image, existing, overwrite=True) == existing
    assert "keep,me" not in existing.read_text() and "a.png" in existing.read_text()


def test_a_run_directory_with_an_earlier_run_is_refused_unless_continued_or_overwritten(
    project: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(project / "image_run", run)
    with untouched(run):
        output = ended(cli("train.py", *_image_run(run, project / "images", "model.hidden_sizes=[8]")), 2)
    assert f"{run} already holds" in output and "resume=auto" in output and "overwrite=true" in output
    assert claim_run_dir(run, resume="auto") is None  # the same run, continued
    assert claim_run_dir(run, ckpt_path=run / "checkpoints" / "last.ckpt") is None
    with pytest.raises(OutputDirError, match="already holds"):
        claim_run_dir(run, ckpt_path=_checkpoint(project, "text_run"))

    earlier = hashes(run / "checkpoints")
    (run / "test").mkdir()
    (run / "test" / "metrics.json").write_text("{}")  # what the eval.py command printed after a Ctrl-C wrote
    (run / "notes.txt").write_text("the user's own file")
    train(_in_process(run, *_image_run(run, project / "images", "model.hidden_sizes=[8]", "overwrite=true")))
    assert not (run / "test").exists() and (run / "notes.txt").read_text() == "the user's own file"
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best-epoch000.ckpt", "last.ckpt"]  # no `-v1` next to the earlier run's
    assert hashes(run / "checkpoints").keys() == earlier.keys() and hashes(run / "checkpoints") != earlier
    assert (
        load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]["net.classifier.0.weight"].shape[0]
        == 8
    )


@pytest.mark.slow
def test_ctrl_c_in_the_test_phase_records_interrupted_and_prints_the_command_that_tests_the_best_checkpoint(
    project: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    stop = (
        "+callbacks.stop._target_=tests.signals_at_step.SignalAtEvaluationBatch",
        "+callbacks.stop.phase=test",
    )
    args = _image_run(
        run, project / "images", "trainer.limit_test_batches=3", "data.eval_batch_size=2", *stop
    )
    output = ended(cli("train.py", *args), 130, "SIGINT: stopped during the test", "To test it, run:")
    status = read_status(run)
    assert status["status"] == "interrupted" and status["reason"] == "SIGINT"
    command = shlex.split(output.split("To test it, run:\n")[1].splitlines()[0])
    assert command[:2] == ["python", "eval.py"] and command[2] == f"ckpt_path={status['checkpoint']}"
    assert command[-1] == f"hydra.run.dir={run / 'test'}"
    cfg = _in_process(run / "test", *command[2:], config_name="eval")
    assert 0 <= evaluate(cfg)["test/acc"] <= 1 and (run / "test" / "metrics.json").is_file()


def test_ctrl_c_while_reading_the_data_or_during_validation_ends_interrupted(
    make_config, tmp_path: Path
) -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with pytest.raises(SystemExit) as stopped:
            train(make_config(*ONE_BATCH, "data._target_=tests.signals_at_step.SignalledInSetup"))
        assert stopped.value.code == 130 and read_status(tmp_path)["status"] == "interrupted"
        assert read_status(tmp_path)["resume"].endswith(f"hydra.run.dir={tmp_path} resume=auto")

        validation = ("+callbacks.stop._target_=tests.signals_at_step.SignalAtEvaluationBatch",)
        with pytest.raises(SystemExit) as stopped:
            train(make_config(*ONE_BATCH, "resume=auto", *validation, "+callbacks.stop.phase=validation"))
        assert stopped.value.code == 130 and read_status(tmp_path)["status"] == "interrupted"
        assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_ctrl_c_mid_epoch_saves_and_prints_a_resume_command_that_works(tmp_path: Path) -> None:
    stop = ("+callbacks.stop._target_=tests.signals_at_step.SignalAtStep", "+callbacks.stop.step=1")
    args = ("model=mlp", *ONE_BATCH, "trainer.limit_train_batches=3", f"hydra.run.dir={tmp_path}")
    output = ended(cli("train.py", *args, *stop, "+callbacks.stop.signum=2"), 130, "state saved in")
    command = shlex.split(output.split("To resume, run:\n")[1].splitlines()[0])
    assert command[-2:] == [f"hydra.run.dir={tmp_path}", "resume=auto"]
    train(compose_config(tmp_path, *command[2:-2], "resume=auto"))  # step 1 is behind: the stop stays inert
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


# ---------------------------------------------------------------- 3. nothing silently wrong


def _save(array: np.ndarray, path: Path, mode: str | None = None) -> Path:
    Image.fromarray(array, mode).save(path)
    return path


def test_every_image_mode_decodes_to_the_right_8_bit_values(tmp_path: Path) -> None:
    gradient = np.arange(64 * 64).reshape(64, 64) * 16  # 0..65520
    expected_mean = (gradient * 255 / 65535).mean()

    def mean(path: Path, channels: int = 1) -> float:
        return float(read_image(path, channels, 64).float().mean())

    assert mean(_save(gradient.astype(np.uint16), tmp_path / "i16.png")) == pytest.approx(
        expected_mean, abs=0.5
    )
    assert mean(_save(gradient.astype(np.uint16), tmp_path / "i16.tif")) == pytest.approx(
        expected_mean, abs=0.5
    )
    assert mean(_save(gradient.astype(np.int32), tmp_path / "i32.tif")) == pytest.approx(
        expected_mean, abs=0.5
    )
    assert mean(_save(np.full((64, 64), 32768, np.uint16), tmp_path / "mid.png")) == 128
    big_endian = Image.new("I;16B", (64, 64))
    big_endian.frombytes(np.full((64, 64), 65535, ">u2").tobytes())
    big_endian.save(tmp_path / "i16b.tif")
    assert mean(tmp_path / "i16b.tif") == 255
    unit = _save((gradient / 65535).astype(np.float32), tmp_path / "unit.tif")
    assert mean(unit) == pytest.approx(expected_mean, abs=0.5)
    wide = _save(gradient.astype(np.float32), tmp_path / "wide.tif")
    with pytest.raises(
        CorruptDatasetError, match=r"wide\.tif holds floating-point pixel values from 0 to 65520"
    ):
        read_image(wide, 1, 64)

    red = np.zeros((8, 8, 4), np.uint8)
    red[..., 0] = 255  # fully transparent red: the background shows
    assert read_image(_save(red, tmp_path / "clear.png", "RGBA"), 3, 8).unique().tolist() == [255]
    red[..., 3] = 255
    assert read_image(_save(red, tmp_path / "red.png", "RGBA"), 3, 8)[:, 0, 0].tolist() == [255, 0, 0]
    grey = np.zeros((8, 8, 2), np.uint8)
    grey[..., 0], grey[..., 1] = 100, 255
    assert read_image(_save(grey, tmp_path / "la.png", "LA"), 1, 8).unique().tolist() == [100]
    palette = Image.new("P", (8, 8))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (4, 0, 8, 8))
    palette.save(tmp_path / "p.png", transparency=0)  # the red half is transparent: white
    rgb = read_image(tmp_path / "p.png", 3, 8)
    assert rgb[:, 0, 0].tolist() == [255, 255, 255] and rgb[:, 0, 7].tolist() == [0, 0, 255]
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "cyan.tif")
    assert read_image(tmp_path / "cyan.tif", 3, 8)[:, 0, 0].tolist() == [0, 255, 255]


def test_a_16_bit_image_folder_trains_and_predicts_on_the_values_an_8_bit_copy_gives(
    project: Path, tmp_path: Path
) -> None:
    for name, level in (("a", 8000), ("b", 40000)):  # before: both classes decoded as all-white
        (tmp_path / "train" / name).mkdir(parents=True)
        for n in range(3):
            _save(np.full((12, 12), level + 100 * n, np.uint16), tmp_path / "train" / name / f"{n}.png")
    data = ImageFolderDataModule(
        tmp_path / "train", tmp_path / "train", channels=1, val_fraction=0.34, cache=False
    )
    data.setup("fit")
    assert data.mean[0] * 255 == pytest.approx((8100 + 40100) / 2 / 257, abs=0.5) and data.std[0] > 0.2

    deep = np.full((12, 12, 3), 40000, np.uint16)
    Image.fromarray(deep[..., 0]).save(tmp_path / "deep.png")
    Image.fromarray(np.full((12, 12, 3), round(40000 / 257), np.uint8)).save(tmp_path / "flat.png")
    rows = [
        predict(_checkpoint(project), tmp_path / n, tmp_path / f"{n}.csv").read_text()
        for n in ("deep.png", "flat.png")
    ]
    assert rows[0].split(",")[-2:] == rows[1].split(",")[-2:]  # the same class and probability


def test_a_text_checkpoint_predicts_the_text_column_of_csv_tsv_and_jsonl_files(
    project: Path, tmp_path: Path
) -> None:
    texts = ["good great film", 'awful, "dull" film']
    (tmp_path / "in.csv").write_text('text,label\ngood great film,pos\n"awful, ""dull"" film",neg\n')
    (tmp_path / "in.tsv").write_text('label\ttext\npos\tgood great film\nneg\tawful, "dull" film\n')
    with gzip.open(tmp_path / "in.jsonl.gz", "wt") as file:
        file.write('{"text": "good great film"}\n{"text": "awful, \\"dull\\" film", "label": "neg"}\n')
    (tmp_path / "in.txt").write_text("good great film\n")
    for name in ("in.csv", "in.tsv", "in.jsonl.gz"):
        output = predict(_checkpoint(project, "text_run"), tmp_path / name, tmp_path / f"{name}.out.csv")
        with open(output, newline="") as file:
            assert [row["input"] for row in csv.DictReader(file)] == texts, name
    lines = predict(_checkpoint(project, "text_run"), tmp_path / "in.txt", tmp_path / "txt.csv")
    assert lines.read_text().count("good great film") == 1  # plain text: one input a line, as before


def test_unusable_config_values_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    run = tmp_path / "run"
    values = (
        "seed=abc",
        "data.batch_size=0",
        "optimizer.lr=0",
        "trainer.max_epochs=0",
        "data.val_fraction=1",
    )
    ended(cli("train.py", *values, f"hydra.run.dir={run}"), 2, *(v.split("=")[0] + "=" for v in values))
    image_values = ("data.image_size=0", "data.eval_batch_size=-1", "optimizer.lr=-1")
    images = _image_run(run, tmp_path / "missing", *image_values)
    output = ended(cli("train.py", *images), 2, *(v.split("=")[0] + "=" for v in image_values))
    assert "trainer.max_epochs" not in output and not run.exists()
    with pytest.raises(ConfigError, match=r"data\.max_length=0"):
        train(
            _in_process(
                run, "data=parallel_text", "data.train_file=x", "data.test_file=y", "data.max_length=0"
            )
        )


def test_fewer_than_two_classes_are_refused_before_training(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "one")
    for name in ("dark", "striped"):
        shutil.rmtree(tmp_path / "one" / name)
    run = tmp_path / "run"
    images = _image_run(run, tmp_path, f"data.train_dir={tmp_path / 'one'}")
    with pytest.raises(CorruptDatasetError, match=rf"{tmp_path / 'one'} has one class folder \(bright/\)"):
        train(_in_process(run, *images))
    assert not list(run.glob("checkpoints/*.ckpt"))

    (tmp_path / "pos.csv").write_text("text,label\ngood,pos\nfine,pos\ngreat,pos\n")
    text = (
        "data=text_files",
        f"data.train_file={tmp_path / 'pos.csv'}",
        f"data.test_file={tmp_path / 'pos.csv'}",
    )
    with pytest.raises(
        CorruptDatasetError, match=rf"{tmp_path / 'pos.csv'}: every training example has the label"
    ):
        train(_in_process(tmp_path / "text", *text, "model=lstm", *ONE_BATCH))


# ---------------------------------------------------------------- 4. bounded resources


def test_parallel_text_leaves_out_pairs_longer_than_max_length(tmp_path: Path, caplog) -> None:
    long = " ".join(["word"] * 2000)
    pairs = [f"a b {i}\tx y {i}" for i in range(20)]
    (tmp_path / "train.tsv").write_text("\n".join([*pairs, f"{long}\t{long}"]) + "\n")
    (tmp_path / "test.tsv").write_text("\n".join(pairs[:3]) + "\n")
    data = ParallelTextDataModule(tmp_path / "train.tsv", tmp_path / "test.tsv", val_fraction=0.2)
    with caplog.at_level(logging.WARNING):
        data.setup()
    assert (
        "left out 1 of" in caplog.text
        and "data.max_length=200" in caplog.text
        and "longest has 2000" in caplog.text
    )
    assert data.sizes["max_target_length"] == 3
    cfg = compose_config(tmp_path, "data=parallel_text", "data.train_file=x", "data.test_file=y")
    assert cfg.data.max_length == 200


# ---------------------------------------------------------------- 5. one clear message


def test_a_checkpoint_path_that_is_no_checkpoint_is_named_as_such(project: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    run_dir = project / "image_run"
    with untouched(run_dir, text):
        ended(
            cli("eval.py", f"ckpt_path={run_dir}", f"hydra.run.dir={tmp_path / 'eval'}"),
            2,
            f"ckpt_path={run_dir} is a directory: pass a .ckpt file inside it, e.g. {run_dir / 'checkpoints'}",
        )
        for use in (
            lambda: train(_in_process(tmp_path / "run", "model=mlp", f"ckpt_path={text}")),
            lambda: evaluate(_in_process(tmp_path / "eval", f"ckpt_path={text}", config_name="eval")),
            lambda: predict(text, project / "images" / "test", tmp_path / "out.csv"),
        ):
            with pytest.raises(
                CheckpointError, match=rf"{text} is not a checkpoint file \(not a zip/torch file"
            ):
                use()


def test_text_files_with_a_bom_with_tabs_or_in_another_encoding(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes("text,label\nsehr gut,pos\n".encode("utf-8-sig"))
    assert [(e.text, e.label) for e in read_table(bom)] == [("sehr gut", "pos")]
    tabs = tmp_path / "tabs.csv"
    tabs.write_text("text\tlabel\ngood\tpos\n")
    with pytest.raises(
        CorruptDatasetError,
        match=r"tabs\.csv:1: the header 'text\\tlabel' looks tab-separated: rename the file to \.tsv",
    ):
        read_table(tabs)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("text,label\nfine,pos\ntrès bien,pos\nbad,neg\n".encode("latin-1"))
    assert read_table(latin, encoding="latin-1")[1].text == "très bien"
    run = tmp_path / "run"
    text = (
        "data=text_files",
        f"data.train_file={latin}",
        f"data.test_file={latin}",
        "model=lstm",
        *ONE_BATCH,
    )
    with untouched(tmp_path):
        ended(
            cli("train.py", *text, f"hydra.run.dir={run}"), 2, f"{latin}:3: not utf-8 text", "data.encoding="
        )


def test_an_unknown_option_in_a_group_list_names_the_options(tmp_path: Path) -> None:
    done = cli("train.py", "regularization=[dropout,mixup]", f"hydra.run.dir={tmp_path}")
    ended(done, 2, "'mixup' is not an option of 'regularization'", "dropout, early_stopping")


def test_eval_of_an_image_folder_checkpoint_needs_no_training_images(
    project: Path, tmp_path: Path, caplog
) -> None:
    checkpoint = torch.load(_checkpoint(project), weights_only=True)
    moved = tmp_path / "moved" / "train"  # where the training images were: gone
    checkpoint["classicnets"]["config"]["data"]["train_dir"] = str(moved)
    torch.save(checkpoint, tmp_path / "moved.ckpt")
    cfg = _in_process(
        tmp_path / "eval",
        f"ckpt_path={tmp_path / 'moved.ckpt'}",
        f"++data.test_dir={project / 'images' / 'test'}",
        config_name="eval",
    )
    with caplog.at_level(logging.INFO):
        assert 0 <= evaluate(cfg)["test/acc"] <= 1
    assert "decoded 6 images" in caplog.text and not moved.parent.exists()  # the test images only


def test_a_checkpoint_of_another_model_says_which_model_it_holds(project: Path, tmp_path: Path) -> None:
    other = _image_run(
        tmp_path, project / "images", "model.hidden_sizes=[32]", f"ckpt_path={_checkpoint(project)}"
    )
    with pytest.raises(
        CheckpointError,
        match=r"holds another model: MLP\(.*hidden_sizes=\[16\].*this run builds MLP\(.*hidden_sizes=\[32\]",
    ):
        train(_in_process(tmp_path, *other))
    with pytest.raises(ConfigError, match=r"model: eval.py rebuilds the run the checkpoint holds \(MLP\("):
        evaluate(
            _in_process(tmp_path, f"ckpt_path={_checkpoint(project)}", "+model=alexnet", config_name="eval")
        )


# ---------------------------------------------------------------- cases that were good, kept good


def test_junk_files_unicode_paths_and_symlink_loops_in_image_folders(tmp_path: Path) -> None:
    train_dir = make_image_folder(tmp_path / "dössier mit Leerzeichen 日本" / "train", per_class=3)
    for folder in (train_dir, *train_dir.iterdir()):
        (folder / ".DS_Store").write_bytes(b"\0\1junk")
    (train_dir / "dark" / "readme.txt").write_text("not an image")
    os.symlink(train_dir, train_dir / "bright" / "loop")  # followed, it would never end
    data = ImageFolderDataModule(train_dir, train_dir, val_fraction=0.34, cache=False)
    data.setup("fit")
    assert (
        data.classes == ("bright", "dark", "striped")
        and len(data.splits["train"]) + len(data.splits["val"]) == 9
    )


def test_crlf_lines_and_quoted_multi_line_csv_fields(tmp_path: Path) -> None:
    path = tmp_path / "crlf.csv"
    path.write_bytes(b'text,label\r\n"two\r\nlines, quoted",pos\r\nplain,neg\r\n')
    assert [(e.text, e.label) for e in read_table(path)] == [
        ("two\r\nlines, quoted", "pos"),
        ("plain", "neg"),
    ]


def test_an_unknown_model_or_a_misspelled_key_keeps_hydras_message(tmp_path: Path) -> None:
    done = cli("train.py", "model=nope", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "Could not find 'model/nope'" in done.stderr and "lenet5" in done.stderr
    done = cli("train.py", "trainer.max_epoch=1", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 1 and "Traceback" not in done.stderr and "trainer.max_epoch" in done.stderr


def test_resume_auto_in_an_empty_directory_trains_from_the_start(make_config, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        metrics = train(make_config("model=mlp", *ONE_BATCH, "resume=auto"))
    assert "no checkpoint in" in caplog.text and "test/acc" in metrics
