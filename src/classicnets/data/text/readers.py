"""Labelled texts from CSV, TSV and JSONL files (optionally gzipped) or from one folder per class.

Every example remembers where it came from, so that a bad label or a missing field is reported as
`file:line` rather than as an index into a list the user never sees.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, NamedTuple

from classicnets.data.errors import CorruptDatasetError, DatasetNotFoundError
from classicnets.errors import ConfigError

DELIMITERS = {".csv": ",", ".tsv": "\t"}
FORMATS = (*DELIMITERS, ".jsonl")


class Example(NamedTuple):
    text: str
    label: str
    origin: str  # "file:line", or the file itself for one text per file


def is_table(path: Path) -> bool:
    """Whether the name says CSV, TSV or JSON lines (each optionally gzipped)."""
    return path.name.lower().removesuffix(".gz").endswith(FORMATS)


def table_format(path: Path) -> str:
    """The format an extension names: `.csv`, `.tsv` or `.jsonl`, each optionally followed by `.gz`."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes.pop()
    if not suffixes or suffixes[-1] not in FORMATS:
        raise ConfigError(
            f"{path}: unknown format; the name must end in one of {', '.join(FORMATS)} (or +.gz)"
        )
    return suffixes[-1]


def check_encoding(encoding: str) -> str:
    """`encoding` if Python knows it, else a ConfigError naming `data.encoding`."""
    try:
        codecs.lookup(encoding)
    except LookupError as error:
        raise ConfigError(
            f"data.encoding={encoding}: unknown encoding (e.g. utf-8, latin-1, cp1252, utf-16)"
        ) from error
    return encoding


def text_codec(encoding: str) -> str:
    """The codec files are read with: UTF-8 reads as `utf-8-sig`, which drops a byte-order mark (BOM) at the
    start, as spreadsheet programs write one; any other encoding as it is."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def open_text(path: Path, encoding: str = "utf-8") -> IO[str]:
    """A text file, gzipped or not, for reading with `encoding` (`text_codec`); lines as they are."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    return opener(path, "rt", encoding=text_codec(encoding), newline="")


def not_text_error(path: Path, encoding: str, error: UnicodeDecodeError) -> CorruptDatasetError:
    """Where `path` stops being `encoding` text, as file:line, and what to do about it."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            try:
                line.decode(text_codec(encoding))
            except UnicodeDecodeError as bad:
                where, byte = f"{path}:{number}", line[bad.start : bad.start + 1]
                break
        else:
            where, byte = str(path), error.object[error.start : error.start + 1]
    return CorruptDatasetError(
        f"{where}: not {encoding} text (byte {byte!r} cannot be decoded). Pass the file's encoding as "
        "data.encoding=… (e.g. latin-1 or cp1252), or save it as UTF-8."
    )


def read_table(
    path: str | Path,
    text_field: str = "text",
    label_field: str | None = "label",
    encoding: str = "utf-8",
) -> list[Example]:
    """Examples from a CSV/TSV file with a header row, or from JSON lines with one object per line.

    Without `label_field` (predict) labels are not read, and are empty.
    """
    path = Path(path).expanduser()
    kind = table_format(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} does not exist")
    try:
        with open_text(path, encoding) as file:
            if kind == ".jsonl":
                examples = list(_jsonl(file, path, text_field, label_field))
            else:
                examples = list(_delimited(file, path, DELIMITERS[kind], text_field, label_field))
    except UnicodeDecodeError as error:
        raise not_text_error(path, encoding, error) from error
    if not examples:
        raise CorruptDatasetError(f"{path} is empty: it has no examples (a header alone is not enough)")
    return examples


def _jsonl(file: IO[str], path: Path, text_field: str, label_field: str | None) -> Iterable[Example]:
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
    file: IO[str], path: Path, delimiter: str, text_field: str, label_field: str | None
) -> Iterable[Example]:
    reader = csv.DictReader(file, delimiter=delimiter)
    columns = reader.fieldnames or []
    for other, name, extension in (("\t", "tab", ".tsv"), (",", "comma", ".csv")):
        if other != delimiter and len(columns) == 1 and other in columns[0]:
            raise CorruptDatasetError(
                f"{path}:1: the header {columns[0]!r} looks {name}-separated: rename the file to {extension}"
                f"{'.gz' if path.suffix.lower() == '.gz' else ''}, the format its name says"
            )
    for field, option in ((text_field, "text_field"), (label_field, "label_field")):
        if columns and field is not None and field not in columns:
            raise CorruptDatasetError(
                f"{path}:1: the header has no column {field!r} (columns: {', '.join(map(repr, columns))}); "
                f"set data.{option}=<column>"
            )
    for row in reader:
        yield _example(row, f"{path}:{reader.line_num}", text_field, label_field, columns)


def _example(
    record: dict, where: str, text_field: str, label_field: str | None, fields: Sequence[str]
) -> Example:
    # an empty text is still a text; an empty label is no label
    expected = ((text_field, None), (label_field, "")) if label_field is not None else ((text_field, None),)
    missing = [f for f, empty in expected if record.get(f) in (None, empty)]
    if missing:
        raise CorruptDatasetError(
            f"{where}: no value for {', '.join(map(repr, missing))} (fields: {', '.join(fields)})"
        )
    text = record[text_field]
    if not isinstance(text, str):
        raise CorruptDatasetError(f"{where}: {text_field!r} must be a string, got {type(text).__name__}")
    return Example(text, str(record[label_field]).strip() if label_field is not None else "", where)


def read_class_folders(
    directory: str | Path, classes: Sequence[str] | None = None, encoding: str = "utf-8"
) -> list[Example]:
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
                    examples.append(
                        Example(file.read_text(encoding=text_codec(encoding)), folder.name, str(file))
                    )
                except UnicodeDecodeError as error:
                    raise not_text_error(file, encoding, error) from error
    if not examples:
        raise CorruptDatasetError(f"{directory} is empty: expected text files in {directory}/<class>/")
    return examples
