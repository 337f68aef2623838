"""Errors that tell a user which file is wrong and what to do about it."""

from classicnets.errors import UserError


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The dataset is neither on disk nor downloadable."""


class CorruptDatasetError(UserError, ValueError):
    """A dataset file exists but is not what it claims to be."""
