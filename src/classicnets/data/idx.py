"""Reader for the IDX format of MNIST and Fashion-MNIST, with errors that name the broken file."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from classicnets.data.errors import CorruptDatasetError

_MAGIC = {2049: 1, 2051: 3}  # labels are 1-d, images 3-d; both unsigned bytes


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (plain or .gz) of unsigned bytes into a uint8 tensor."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as file:
                raw = file.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as error:
        raise CorruptDatasetError(
            f"{path} cannot be read ({error}); delete it and download it again."
        ) from error
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic not in _MAGIC:
        raise CorruptDatasetError(
            f"{path} is not an IDX file of unsigned bytes (magic number {magic}, expected 2049 or 2051); "
            "delete it and download it again."
        )
    ndim = _MAGIC[magic]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise CorruptDatasetError(
            f"{path} is truncated or padded: {len(raw)} bytes, expected {expected} for shape {shape}; "
            "delete it and download it again."
        )
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy())
