"""Errors a user can fix. Their message says what is wrong, where (a file:line or a config key) and what to do;
the entry points print it as one line and exit with status 2, without a traceback (`HYDRA_FULL_ERROR=1` keeps
the traceback). Any other exception is a bug, and keeps its traceback.

Cheap to import (no torch): the entry points load it before Hydra composes.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # what a shell reports after Ctrl-C (128 + SIGINT)


class UserError(Exception):
    """Base of the errors the user can fix (bad config values, missing or bad data, bad checkpoints, refused
    outputs)."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work; the message names the key (`data.batch_size=0: …`)."""
