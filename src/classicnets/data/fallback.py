"""`source=auto|full|sample`: the full dataset when it is on disk or downloadable, else a small real sample
shipped with classicnets, chosen loudly so that nobody mistakes sample results for published ones."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn

from classicnets.data.errors import DatasetNotFoundError
from classicnets.errors import ConfigError

SAMPLES_DIR = Path(__file__).parent / "samples"
SOURCES = ("auto", "full", "sample")


class SampleFallback:
    """Mixin for DataModules: call `init_source` in `__init__` and `resolve_source` at the top of `setup`.

    Subclasses say where the full dataset lives (`full_location`), whether it is there (`has_full`) and how to
    download it (`download_full`, raising `DatasetNotFoundError` on failure); `sample_dir` names the sample.
    """

    dataset_name: str
    sample_dir: Path | None = None
    sample_description: str = "a small part of the real data"
    source: str
    source_used: str

    @property
    @abstractmethod
    def full_location(self) -> Path:
        """Where the full dataset is looked for (shown in the warning)."""

    @abstractmethod
    def has_full(self) -> bool: ...

    @abstractmethod
    def download_full(self) -> None: ...

    def init_source(self, source: str) -> None:
        if source not in SOURCES or (source == "sample" and self.sample_dir is None):
            valid = SOURCES if self.sample_dir else ("auto", "full")
            raise ConfigError(f"{type(self).__name__}: source must be one of {valid}, got {source!r}")
        self.source = source
        self.source_used = "full"

    def prepare_data(self) -> None:
        if self.source == "sample" or self.has_full():
            return
        try:
            self.download_full()
        except DatasetNotFoundError as error:
            if self.source == "full" or self.sample_dir is None:
                raise
            rank_zero_warn(f"{error}\n\n*** Falling back to the small sample shipped with classicnets. ***")

    def resolve_source(self) -> None:
        """Decide between the full data and the sample; `source_used` records the choice for the run."""
        if self.source == "sample" or (self.source == "auto" and self.sample_dir and not self.has_full()):
            if self.source == "auto":
                rank_zero_warn(
                    f"*** {self.dataset_name} not found in {self.full_location}: training on the SAMPLE shipped "
                    f"with classicnets ({self.sample_description}), not the full dataset. Results are not "
                    f"comparable to published ones. Pass data.source=full to forbid this fallback. ***"
                )
            self.source_used = "sample"
