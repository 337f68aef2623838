"""Labelled texts from CSV, TSV and JSONL files (optionally gzipped) or from one folder per class.

Every example remembers where it came from, so that a bad label or a missing field is reported as
`file:line` rather than as an index into a list the user never sees.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, NamedTuple

from classicnets.data.errors import CorruptDatasetError, DatasetNotFoundError

DELIMITERS = {".csv": ",", ".tsv": "\t"}
FORMATS = (*DELIMITERS, ".jsonl")


class Example(NamedTuple):
    text: str
    label: str
    origin: str  # "file:line", or the file itself for one text per file


def table_format(path: Path) -> str:
    """The format an extension names: `.csv`, `.tsv` or `.jsonl`, each optionally followed by `.gz`."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes.pop()
    if not suffixes or suffixes[-1] not in FORMATS:
        raise ValueError(
            f"{path}: unknown format; the name must end in one of {', '.join(FORMATS)} (or +.gz)"
        )
    return suffixes[-1]


def read_table(path: str | Path, text_field: str = "text", label_field: str = "label") -> list[Example]:
    """Examples from a CSV/TSV file with a header row, or from JSON lines with one object per line."""
    path = Path(path).expanduser()
    kind = table_format(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} does not exist")
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as file:
            if kind == ".jsonl":
                examples = list(_jsonl(file, path, text_field, label_field))
            else:
                examples = list(_delimited(file, path, DELIMITERS[kind], text_field, label_field))
    except UnicodeDecodeError as error:
        raise CorruptDatasetError(f"{path} is not UTF-8 text: {error}") from error
    if not examples:
        raise CorruptDatasetError(f"{path} is empty: it has no examples (a header alone is not enough)")
    return examples


def _jsonl(file: IO[str], path: Path, text_field: str, label_field: str) -> Iterable[Example]:
    for number, line in enumerate(file, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CorruptDatasetError(f"{where}: not a JSON object ({error})") from error
        if not isinstance(record, dict):
            raise CorruptDatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
        yield _example(record, where, text_field, label_field, sorted(record))


def _delimited(
    file: IO[str], path: Path, delimiter: str, text_field: str, label_field: str
) -> Iterable[Example]:
    reader = csv.DictReader(file, delimiter=delimiter)
    columns = reader.fieldnames or []
    for field, option in ((text_field, "text_field"), (label_field, "label_field")):
        if columns and field not in columns:
            raise CorruptDatasetError(
                f"{path}:1: the header has no column {field!r} (columns: {', '.join(columns)}); "
                f"set data.{option}=<column>"
            )
    for row in reader:
        yield _example(row, f"{path}:{reader.line_num}", text_field, label_field, columns)


def _example(record: dict, where: str, text_field: str, label_field: str, fields: Sequence[str]) -> Example:
    # an empty text is still a text; an empty label is no label
    missing = [f for f, empty in ((text_field, None), (label_field, "")) if record.get(f) in (None, empty)]
    if missing:
        raise CorruptDatasetError(
            f"{where}: no value for {', '.join(map(repr, missing))} (fields: {', '.join(fields)})"
        )
    text = record[text_field]
    if not isinstance(text, str):
        raise CorruptDatasetError(f"{where}: {text_field!r} must be a string, got {type(text).__name__}")
    return Example(text, str(record[label_field]).strip(), where)


def read_class_folders(directory: str | Path, classes: Sequence[str] | None = None) -> list[Example]:
    """One example per file in `<directory>/<class>/`, labelled by its folder's name.

    `classes` limits the folders read (IMDB's train folder also holds an unlabelled `unsup/`).
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DatasetNotFoundError(f"{directory} is not a folder (expected {directory}/<class>/<file>)")
    folders = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is not None:
        missing = [name for name in classes if not (directory / name).is_dir()]
        if missing:
            raise DatasetNotFoundError(f"{directory}: missing class folders {', '.join(missing)}")
        folders = [directory / name for name in classes]
    examples = []
    for folder in folders:
        for file in sorted(folder.iterdir()):
            if file.is_file() and not file.name.startswith("."):
                try:
                    examples.append(Example(file.read_text(encoding="utf-8"), folder.name, str(file)))
                except UnicodeDecodeError as error:
                    raise CorruptDatasetError(f"{file} is not UTF-8 text: {error}") from error
    if not examples:
        raise CorruptDatasetError(f"{directory} is empty: expected text files in {directory}/<class>/")
    return examples
