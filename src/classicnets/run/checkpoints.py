"""The checkpoint format, owned here: what a classicnets checkpoint holds besides Lightning's own keys, how it is
written (atomically) and read (tensors and plain containers only, with errors that name the file).

A checkpoint is Lightning's dictionary plus, under `RUN_KEY`, the run's resolved config and the classicnets
version that wrote it. Lightning keeps the data module's state (class names, normalisation, vocabularies) under
the data module's class name; `data_state` finds it from the saved config.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import site
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from classicnets import __version__

RUN_KEY = "classicnets"

# what the project's own configs instantiate; any other `_target_` in a checkpoint's saved config must be the
# user's own code: importable, but neither built into Python nor from its standard library or installed packages
TRUSTED_TARGETS = ("classicnets.", "torch.optim.", "lightning.pytorch.", "datetime.timedelta")


class CheckpointError(ValueError):
    """The file given as a checkpoint cannot be used."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """`torch.load(weights_only=True)`: a checkpoint that carries code is refused, not run; so is one whose saved
    config would make rebuilding the run import and call something the user never chose."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain containers, which could "
            f"run code when unpickled. Only load checkpoints you trust; classicnets' own never need this.\n"
            f"({str(error).splitlines()[0]})"
        ) from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): {type(error).__name__}: {error}"
        ) from error
    if not isinstance(checkpoint, dict) or RUN_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a classicnets training checkpoint (no saved run config in it)")
    if untrusted := [t for t in _targets(checkpoint[RUN_KEY].get("config")) if not _trusted(t)]:
        raise CheckpointError(
            f"refusing to use {path}: its saved config names {', '.join(sorted(set(untrusted)))} as `_target_`, "
            "which is neither part of classicnets' configs nor a module of your own (one importable from outside "
            "the standard library and the installed packages). Rebuilding the run would import and call it."
        )
    return checkpoint


def saved_step(path: str | Path) -> int:
    """The global step at which the checkpoint in `path` was written, read without reading its tensors (mmap)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def record_run(checkpoint: dict[str, Any], config: dict[str, Any]) -> None:
    """Add the run's resolved config (plain containers) to a checkpoint Lightning is about to write."""
    checkpoint[RUN_KEY] = {"config": config, "version": __version__}


def saved_config(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The resolved config of the run that wrote `checkpoint` (a plain dictionary)."""
    return checkpoint[RUN_KEY]["config"]


def data_state_key(data_target: str) -> str:
    """Where Lightning keeps a data module's `state_dict()` in a checkpoint: under its class's qualified name,
    which for a module-level class is its name."""
    return data_target.rsplit(".", 1)[-1]


def data_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The saved state of the run's data module; empty when it saved none."""
    return checkpoint.get(data_state_key(saved_config(checkpoint)["data"]["_target_"])) or {}


def network_weights(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The backbone's `state_dict` inside the task's (tasks keep it as `net`)."""
    return {
        key.removeprefix("net."): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("net.")
    }


def _targets(config: Any) -> list[str]:
    if isinstance(config, dict):
        own = [config["_target_"]] if isinstance(config.get("_target_"), str) else []
        return own + [target for value in config.values() for target in _targets(value)]
    if isinstance(config, list):
        return [target for value in config for target in _targets(value)]
    return []


def _trusted(target: str) -> bool:
    if target.startswith(TRUSTED_TARGETS):
        return True
    spec = importlib.util.find_spec(target.split(".")[0])  # a top-level lookup imports nothing
    if spec is None:
        return False
    # a module file, or the folders of a namespace package; built-in and frozen modules have neither
    locations = [spec.origin] if spec.has_location else list(spec.submodule_search_locations or [])
    libraries = [p for key, p in sysconfig.get_paths().items() if "lib" in key] + [site.getusersitepackages()]
    installed = [Path(p).resolve() for p in libraries]
    return bool(locations) and not any(
        Path(place).resolve().is_relative_to(library) for place in locations for library in installed
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes every checkpoint so that a kill at any moment leaves either the old file or the new one, whole.

    Lightning's own writer puts the bytes in a file of the system temp folder and `shutil.move`s it, which
    across filesystems is a copy onto the final name, and never fsyncs. Here the temporary file sits next to
    the target, is fsynced, then renamed over it (atomic on POSIX), and the folder is fsynced so the rename
    survives a power cut. Remote URLs are left to Lightning.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise OSError(
                error.errno,
                f"could not write checkpoint {path} ({error.strerror}); the previous one is intact",
            ) from error
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
