"""Downloads that fail within seconds when there is no network, instead of hanging."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from classicnets.data.errors import DatasetNotFoundError

DOWNLOAD_TIMEOUT_S = 15.0


@contextmanager
def socket_timeout(seconds: float = DOWNLOAD_TIMEOUT_S) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download_or_explain(
    download: Callable[[], None], name: str, directory: Path, expected_files: Sequence[str]
) -> None:
    """Run a (checksum-verifying) download; on any failure raise one error naming the files to provide."""
    try:
        with socket_timeout():
            download()
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError... all mean the same here
        files = "\n".join(f"  {directory / f}" for f in expected_files)
        # on one line: torchvision lists each mirror tried with its error, which offline is the same line twice
        reason = " ".join(str(error).split())
        raise DatasetNotFoundError(
            f"{name} is not on disk and could not be downloaded ({type(error).__name__}: {reason}).\n"
            f"Put these files in place (or pass paths.data_dir=DIR pointing to a folder that has them):\n{files}"
        ) from error
