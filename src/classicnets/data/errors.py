"""Errors that tell a user which file is wrong and what to do about it."""


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is neither on disk nor downloadable."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but is not what it claims to be."""
