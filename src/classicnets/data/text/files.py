"""A user's own labelled texts: CSV, TSV or JSONL files, or one folder per class."""

from __future__ import annotations

from pathlib import Path

from classicnets.data.text.datamodule import TextClassificationDataModule
from classicnets.data.text.readers import Example, check_encoding, read_class_folders, read_table
from classicnets.errors import ConfigError


class TextFilesDataModule(TextClassificationDataModule):
    """Texts and labels from files (`train_file`, `test_file`, optional `val_file`) or folders (`*_dir`).

    Files are read by extension: `.csv`/`.tsv` with a header row naming `text_field` and `label_field`, or
    `.jsonl` with one object per line (each optionally gzipped). A folder holds one sub-folder per class with
    one text per file; `encoding` is the files' (UTF-8 by default, a byte-order mark at the start dropped).
    Labels may be any strings; class names are the training labels in sorted order (numeric
    labels numerically). Without a validation file or folder, `val_fraction` of train is held out with the seed.
    """

    def __init__(
        self,
        *args,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        train_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        text_field: str = "text",
        label_field: str = "label",
        encoding: str = "utf-8",
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sources = {
            split: (file, directory)
            for split, file, directory in (
                ("train", train_file, train_dir),
                ("val", val_file, val_dir),
                ("test", test_file, test_dir),
            )
        }
        for split, (file, directory) in self.sources.items():
            if file and directory:
                raise ConfigError(f"text_files: give data.{split}_file or data.{split}_dir, not both")
            if split != "val" and not (file or directory):
                raise ConfigError(
                    f"text_files needs data.{split}_file=FILE (.csv, .tsv or .jsonl) or data.{split}_dir=DIR "
                    f"(one folder per class)"
                )
        self.text_field = text_field
        self.label_field = label_field
        self.encoding = check_encoding(encoding)

    def read_split(self, split: str) -> list[Example] | None:
        file, directory = self.sources[split]
        if directory:
            return read_class_folders(Path(directory), encoding=self.encoding)
        if file:
            return read_table(Path(file), self.text_field, self.label_field, self.encoding)
        return None

    def describe(self, split: str) -> str:
        file, directory = self.sources[split]
        return str(Path(file or directory).expanduser())
