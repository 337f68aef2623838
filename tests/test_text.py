"""Text DataModules: file formats, vocabulary from train only, bucketing, bad input, and runs end to end."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import RandomSampler, SequentialSampler

from classicnets.data import AGNewsDataModule, CorruptDatasetError, IMDBDataModule, TextFilesDataModule
from classicnets.data.errors import DatasetNotFoundError
from classicnets.data.text.batching import BucketBatchSampler
from classicnets.data.text.vocab import UNK_INDEX
from classicnets.run.pipeline import evaluate, train
from tests.conftest import run_script

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "a", "movie", "film", "plot", "acting"]


def _texts(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Reviews of 2-12 words whose label is whether "good"/"great" outnumber "bad"/"awful"."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(2, 13, (1,), generator=generator))
        words = [WORDS[i] for i in torch.randint(0, len(WORDS), (length,), generator=generator)]
        score = sum(w in ("good", "great") for w in words) - sum(w in ("bad", "awful") for w in words)
        rows.append({"text": " ".join(words), "label": "positive" if score >= 0 else "negative"})
    return rows


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, ["label", "text"], delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    return path


def _module(tmp_path: Path, **kwargs) -> TextFilesDataModule:
    train = _write(tmp_path / "train.csv", _texts(60))
    test = _write(tmp_path / "test.csv", _texts(20, seed=1))
    return TextFilesDataModule(train_file=str(train), test_file=str(test), batch_size=8, **kwargs)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_reads_csv_tsv_and_jsonl(tmp_path: Path, suffix: str) -> None:
    rows = [*_texts(30), {"text": 'a "quoted", multi\nline review', "label": "negative"}]
    train = _write(tmp_path / f"train{suffix}", rows)
    test = _write(tmp_path / f"test{suffix}", _texts(10, seed=1))
    datamodule = TextFilesDataModule(train_file=str(train), test_file=str(test), val_fraction=0.2)
    datamodule.setup()
    assert datamodule.classes == ("negative", "positive")
    assert [len(datamodule.splits[s]) for s in ("train", "val", "test")] == [25, 6, 10]
    assert datamodule.sizes["num_classes"] == 2 and datamodule.sizes["vocab_size"] == len(datamodule.vocab)


def test_reads_gzipped_jsonl_with_other_field_names(tmp_path: Path) -> None:
    rows = [{"review": r["text"], "stars": 5 if r["label"] == "positive" else 1} for r in _texts(20)]
    for name in ("train.jsonl.gz", "test.jsonl.gz"):
        with gzip.open(tmp_path / name, "wt") as file:
            file.writelines(json.dumps(row) + "\n" for row in rows)
    datamodule = TextFilesDataModule(
        train_file=str(tmp_path / "train.jsonl.gz"), test_file=str(tmp_path / "test.jsonl.gz"),
        text_field="review", label_field="stars",
    )  # fmt: skip
    datamodule.setup()
    assert datamodule.classes == ("1", "5")


def test_reads_one_folder_per_class(tmp_path: Path) -> None:
    for split, rows in (("train", _texts(20)), ("test", _texts(6, seed=1))):
        for number, row in enumerate(rows):
            folder = tmp_path / split / row["label"]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{number}.txt").write_text(row["text"])
    datamodule = TextFilesDataModule(
        train_dir=str(tmp_path / "train"), test_dir=str(tmp_path / "test"), val_dir=str(tmp_path / "test")
    )
    datamodule.setup()
    assert datamodule.classes == ("negative", "positive")
    assert len(datamodule.splits["train"]) == 20 and len(datamodule.splits["val"]) == 6


def test_vocabulary_comes_from_train_only_and_round_trips(tmp_path: Path) -> None:
    _write(tmp_path / "train.csv", _texts(40))
    _write(tmp_path / "test.csv", [{"text": "zyzzyva good", "label": "positive"}])
    datamodule = TextFilesDataModule(
        train_file=str(tmp_path / "train.csv"), test_file=str(tmp_path / "test.csv"), vocab_dir=str(tmp_path)
    )
    datamodule.setup()
    assert "zyzzyva" not in datamodule.vocab.tokens
    ids, _ = datamodule.splits["test"][0]
    assert ids[0] == UNK_INDEX and datamodule.decode(ids) == "<unk> good"
    assert json.loads((tmp_path / "vocab.json").read_text()) == list(datamodule.vocab.tokens)

    # the state is plain data, and a module given it back uses it even if the training file has changed
    state = datamodule.state_dict()
    torch.save(state, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    _write(tmp_path / "train.csv", [{"text": "entirely new words", "label": "positive"}] * 5)
    restored = TextFilesDataModule(
        train_file=str(tmp_path / "train.csv"), test_file=str(tmp_path / "test.csv")
    )
    restored.load_state_dict(state)
    restored.setup()
    assert restored.vocab == datamodule.vocab and restored.classes == datamodule.classes
    assert torch.equal(restored.splits["test"].ids, datamodule.splits["test"].ids)


def test_max_length_truncates_and_char_level_tokenizes(tmp_path: Path) -> None:
    datamodule = _module(tmp_path, max_length=3, tokenizer="char")
    datamodule.setup()
    assert max(datamodule.splits["train"].lengths) == 3
    assert set(datamodule.vocab.tokens[4:]) <= set("".join(WORDS) + " ")


def test_bucketing_groups_similar_lengths_and_covers_every_text_once() -> None:
    lengths = torch.randint(1, 400, (1000,)).tolist()

    def padding(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    def sampler(seed: int) -> RandomSampler:
        return RandomSampler(range(1000), generator=torch.Generator().manual_seed(seed))

    buckets = list(BucketBatchSampler(sampler(0), 32, lengths=lengths, bucket_batches=10))
    assert sorted(i for b in buckets for i in b) == list(range(1000))
    assert len(buckets) == len(BucketBatchSampler(sampler(0), 32, lengths=lengths)) == 32
    plain = [list(range(1000))[i : i + 32] for i in range(0, 1000, 32)]
    assert padding(buckets) < padding(plain) / 5
    # same seed, same batches; the batch order is shuffled, not rising with length through each chunk
    assert list(BucketBatchSampler(sampler(0), 32, lengths=lengths, bucket_batches=10)) == buckets
    assert list(BucketBatchSampler(sampler(1), 32, lengths=lengths, bucket_batches=10)) != buckets
    longest = [max(lengths[i] for i in b) for b in buckets[:10]]
    assert longest != sorted(longest)
    whole = list(BucketBatchSampler(SequentialSampler(range(1000)), 32, True, lengths, bucket_batches=None))
    assert len(whole) == 31 and all(len(b) == 32 for b in whole)


def test_batches_are_padded_per_batch(tmp_path: Path) -> None:
    datamodule = _module(tmp_path)
    datamodule.setup()
    for ids, labels in datamodule.train_dataloader():
        lengths = (ids != 0).sum(1)
        assert ids.dtype == torch.long and labels.shape == (len(ids),)
        assert ids.shape[1] == lengths.max()  # no wider than its longest text


def _setup_fails(train: Path, test: Path, match: str) -> None:
    datamodule = TextFilesDataModule(train_file=str(train), test_file=str(test))
    with pytest.raises(CorruptDatasetError, match=match):
        datamodule.setup()


def test_missing_column_names_the_file_line_and_option(tmp_path: Path) -> None:
    csv_file, jsonl_file, tsv_file = tmp_path / "train.csv", tmp_path / "train.jsonl", tmp_path / "blank.tsv"
    csv_file.write_text("sentence,label\nhello,a\n")
    _setup_fails(csv_file, csv_file, r"train.csv:1: the header has no column 'text'.*text_field")
    jsonl_file.write_text('{"text": "fine", "label": 1}\n\n{"text": "no label"}\n')
    _setup_fails(jsonl_file, jsonl_file, r"train.jsonl:3: no value for 'label'")
    tsv_file.write_text("text\tlabel\nfine\ta\nno label\t\n")
    _setup_fails(tsv_file, tsv_file, r"blank.tsv:3: no value for 'label'")


def test_empty_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "test.tsv").write_text("text\tlabel\n")
    _setup_fails(_write(tmp_path / "train.csv", _texts(10)), tmp_path / "test.tsv", r"test.tsv is empty")


def test_label_unseen_in_train_names_file_and_line(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", _texts(10))
    test = _write(
        tmp_path / "test.csv", [{"text": "ok", "label": "positive"}, {"text": "meh", "label": "neutral"}]
    )
    _setup_fails(train, test, r"test.csv:3: label 'neutral' never appears in the training")


def test_text_files_requires_train_and_test() -> None:
    with pytest.raises(ValueError, match=r"data\.train_file"):
        TextFilesDataModule(test_file="test.csv")


def test_imdb_reads_the_official_layout(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for label in ("neg", "pos", *(("unsup",) if split == "train" else ())):
            folder = tmp_path / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for number in range(4):
                (folder / f"{number}_7.txt").write_text(f"A {label} review.<br /><br />Number {number}.")
    datamodule = IMDBDataModule(tmp_path, source="full", val_fraction=0.25)
    datamodule.prepare_data()  # present: nothing to download
    datamodule.setup()
    assert datamodule.source_used == "full" and datamodule.classes == ("neg", "pos")
    assert [len(datamodule.splits[s]) for s in ("train", "val", "test")] == [6, 2, 8]  # unsup/ left out
    assert "br" not in datamodule.vocab.tokens


def test_imdb_falls_back_to_the_shipped_sample_loudly(tmp_path: Path) -> None:
    datamodule = IMDBDataModule(tmp_path)
    with pytest.warns(UserWarning, match="SAMPLE"):
        datamodule.setup()
    assert datamodule.source_used == "sample" and datamodule.state_dict()["source"] == "sample"
    assert [len(datamodule.splits[s]) for s in ("train", "val", "test")] == [360, 40, 200]
    with pytest.raises(ValueError, match="source"):
        IMDBDataModule(tmp_path, source="mini")


def test_ag_news_reads_the_official_csv(tmp_path: Path) -> None:
    folder = tmp_path / "ag_news_csv"
    folder.mkdir()
    rows = [
        ["3", "Wall St. Bears Claw Back", "Short-sellers are seeing green\\again."],
        ["2", "Goal", "A late win."],
    ]
    for name in ("train.csv", "test.csv"):
        with open(folder / name, "w", newline="") as file:
            csv.writer(file, quoting=csv.QUOTE_ALL).writerows(rows * 10)
    datamodule = AGNewsDataModule(tmp_path)
    datamodule.prepare_data()
    datamodule.setup()
    assert datamodule.classes == ("World", "Sports", "Business", "Sci/Tech")
    assert datamodule.sizes["num_classes"] == 4 and len(datamodule.splits["test"]) == 20
    assert datamodule.splits["test"].labels[:2].tolist() == [2, 1]

    (folder / "train.csv").write_text('"5","title","text"\n')
    with pytest.raises(CorruptDatasetError, match=r"train.csv:1: expected class index 1-4"):
        AGNewsDataModule(tmp_path).setup()
    with pytest.raises(DatasetNotFoundError, match=r"train\.csv"):
        AGNewsDataModule(tmp_path / "elsewhere").setup()


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru", "bilstm", "bigru"])
def test_every_recurrent_config_trains_on_text(make_config, tmp_path: Path, model: str) -> None:
    train_file = _write(tmp_path / "train.jsonl", _texts(40))
    test_file = _write(tmp_path / "test.jsonl", _texts(16, seed=1))
    cfg = make_config(
        f"model={model}", "data=text_files", f"data.train_file={train_file}", f"data.test_file={test_file}",
        "trainer.fast_dev_run=true", "data.batch_size=8", "model.hidden_size=8", "model.embedding_dim=8",
    )  # fmt: skip
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert cfg.sizes.vocab_size == len(json.loads((tmp_path / "vocab.json").read_text()))


def test_lstm_reads_mnist_row_by_row(make_config) -> None:
    cfg = make_config(
        "model=lstm", "data=mnist", "data.source=sample", "trainer.fast_dev_run=true", "data.batch_size=16"
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and cfg.sizes.vocab_size is None


def test_eval_reuses_the_saved_vocabulary_and_shows_texts(make_config, tmp_path: Path) -> None:
    train_file = _write(tmp_path / "train.csv", _texts(200))
    test_file = _write(tmp_path / "test.csv", _texts(40, seed=1))
    trained = train(
        make_config(
            "model=gru", "data=text_files", f"data.train_file={train_file}", f"data.test_file={test_file}",
            "trainer.max_epochs=2", "model.hidden_size=16", "model.embedding_dim=16", "data.batch_size=16",
        )
    )  # fmt: skip
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert "test/misclassified/text_summary" in events.Tags()["tensors"]
    shown = events.Tensors("test/misclassified/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| positive |" in shown or "| negative |" in shown
    assert any(word in shown for word in WORDS)

    # a new training file would give another vocabulary: eval must not build one from it
    other = [{"text": "other words entirely", "label": label} for label in ("positive", "negative")]
    _write(tmp_path / "train.csv", other * 5)
    best = next((tmp_path / "checkpoints").glob("best-*.ckpt"))
    cfg = make_config(f"ckpt_path={best}", config_name="eval")
    cfg.paths.output_dir = str(tmp_path / "eval")
    evaluated = evaluate(cfg)
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)


@pytest.mark.slow
def test_bucketing_shards_the_data_under_ddp(tmp_path: Path) -> None:
    train_file = _write(tmp_path / "train.jsonl", _texts(80))
    test_file = _write(tmp_path / "test.jsonl", _texts(16, seed=1))
    result = run_script(
        "train.py", "trainer=ddp_cpu", "model=gru", "data=text_files", f"data.train_file={train_file}",
        f"data.test_file={test_file}", "data.batch_size=8", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # 72 training texts: each of the 2 processes buckets its own 36 into 5 batches of at most 8
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 5
