"""IMDB movie reviews (Maas et al., 2011, "Learning Word Vectors for Sentiment Analysis"): 25k/25k, pos/neg.

Read from the official archive's layout `<data_dir>/aclImdb/{train,test}/{pos,neg}/*.txt`. The sample shipped
with classicnets holds 400 training and 200 test reviews of the official splits, balanced, as gzipped JSONL.
"""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets.utils import download_and_extract_archive

from classicnets.data.download import download_or_explain
from classicnets.data.fallback import SAMPLES_DIR, SampleFallback
from classicnets.data.text.datamodule import TextClassificationDataModule
from classicnets.data.text.readers import Example, read_class_folders, read_table

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
FOLDER = "aclImdb"


class IMDBDataModule(SampleFallback, TextClassificationDataModule):
    """Binary sentiment of movie reviews; `source=auto` falls back to the shipped sample when offline."""

    dataset_name = "IMDB"
    classes = ("neg", "pos")
    sample_dir = SAMPLES_DIR / "imdb"
    sample_description = "600 real reviews"

    def __init__(self, data_dir: str | Path, *args, source: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.data_dir = Path(data_dir).expanduser()
        self.init_source(source)

    @property
    def full_location(self) -> Path:
        return self.data_dir / FOLDER

    def _class_dirs(self) -> list[Path]:
        return [self.full_location / split / label for split in ("train", "test") for label in self.classes]

    def has_full(self) -> bool:
        return all(directory.is_dir() for directory in self._class_dirs())

    def download_full(self) -> None:
        download_or_explain(
            lambda: download_and_extract_archive(URL, str(self.data_dir), md5=MD5),
            "IMDB",
            self.data_dir,
            [f"{d.relative_to(self.data_dir)}/*.txt" for d in self._class_dirs()],
        )

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.resolve_source()
        super().setup(stage)

    def read_split(self, split: str) -> list[Example] | None:
        if split == "val":
            return None
        if self.source_used == "sample":
            return read_table(self.sample_dir / f"{split}.jsonl.gz")
        return read_class_folders(self.full_location / split, self.classes)
