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
from classicnets.errors import UserError
from classicnets.run.files import CHECKPOINT_DIR, LAST_CHECKPOINT

RUN_KEY = "classicnets"
# how a torch.save file begins: a zip archive, or (torch's legacy format) a pickle of protocol 2 or later
TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
MODEL_SETTINGS_SHOWN = 6

# what the project's own configs instantiate; any other `_target_` in a checkpoint's saved config must be the
# user's own code: importable, but neither built into Python nor from its standard library or installed packages
TRUSTED_TARGETS = (
    "classicnets.",
    "torch.optim.",
    "torchmetrics.",
    "lightning.pytorch.",
    "datetime.timedelta",
)


class CheckpointError(UserError, ValueError):
    """The file given as a checkpoint cannot be used."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """`torch.load(weights_only=True)`: a checkpoint that carries code is refused, not run; so is one whose saved
    config would make rebuilding the run import and call something the user never chose."""
    path = Path(path).expanduser()
    _check_is_checkpoint_file(path)
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
    if untrusted := [t for t in _targets(saved_config(checkpoint)) if not _trusted(t)]:
        raise CheckpointError(
            f"refusing to use {path}: its saved config names {', '.join(sorted(set(untrusted)))} as `_target_`, "
            "which is neither part of classicnets' configs nor a module of your own (one importable from outside "
            "the standard library and the installed packages). Rebuilding the run would import and call it."
        )
    return checkpoint


def _check_is_checkpoint_file(path: Path) -> None:
    """A missing file, a folder or a file that is no torch checkpoint at all, named as such before unpickling."""
    if path.is_dir():
        inside = sorted(path.glob("*.ckpt")) or sorted(path.glob(f"{CHECKPOINT_DIR}/*.ckpt"))
        example = next((p for p in inside if p.name == LAST_CHECKPOINT), inside[0] if inside else None)
        hint = f", e.g. {example}" if example else f" (there is none in {path})"
        raise CheckpointError(f"ckpt_path={path} is a directory: pass a .ckpt file inside it{hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with open(path, "rb") as file:
        start = file.read(len(TORCH_FILE_STARTS[0]))
    if not start:
        raise CheckpointError(f"{path} is an empty file, not a checkpoint")
    # torch.save writes a zip archive (a truncated one is reported below, when it fails to load); files of
    # torch's legacy format start as a pickle. Anything else was never written by torch.save.
    if not start.startswith(TORCH_FILE_STARTS):
        raise CheckpointError(
            f"{path} is not a checkpoint file (not a zip/torch file; it starts with {start!r}): pass a .ckpt "
            "file that training wrote, e.g. logs/runs/<run>/checkpoints/last.ckpt"
        )


def describe_model(config: dict[str, Any]) -> str:
    """A run's model as a reader recognises it, from its resolved config: `LeNet5(kernel_size=5, …) on
    MNISTDataModule`."""
    model = config.get("model") or {}
    settings = [
        f"{key}={value}"
        for key, value in model.items()
        if key != "_target_" and not isinstance(value, dict) and len(str(value)) <= 40
    ]
    shown = ", ".join(settings[:MODEL_SETTINGS_SHOWN]) + (
        ", …" if len(settings) > MODEL_SETTINGS_SHOWN else ""
    )
    name = str(model.get("_target_", "an unknown model")).rsplit(".", 1)[-1]
    data = str((config.get("data") or {}).get("_target_", "")).rsplit(".", 1)[-1]
    return f"{name}({shown})" + (f" on {data}" if data else "")


def check_weights_fit(
    expected: dict[str, torch.Tensor], checkpoint: dict[str, Any], path: str | Path, config: dict[str, Any]
) -> None:
    """The weights of `checkpoint` must fit the task state `expected` that this run's `config` builds; if they
    do not, say which model the checkpoint holds instead of Lightning's list of size mismatches."""
    saved = checkpoint["state_dict"]
    built = {
        k: v for k, v in expected.items() if not isinstance(v, torch.nn.parameter.UninitializedTensorMixin)
    }
    missing, unexpected = sorted(built.keys() - saved.keys()), sorted(saved.keys() - expected.keys())
    resized = sorted(k for k in built.keys() & saved.keys() if tuple(built[k].shape) != tuple(saved[k].shape))
    if not (missing or unexpected or resized):
        return
    if resized:
        key = resized[0]
        detail = f"{key} is {list(saved[key].shape)} there and {list(built[key].shape)} here"
    else:
        detail = f"{len(missing)} weights missing, {len(unexpected)} not of this model, e.g. {(missing or unexpected)[0]}"
    raise CheckpointError(
        f"{path} holds another model: {describe_model(saved_config(checkpoint))}, while this run builds "
        f"{describe_model(config)}; its weights do not fit ({detail}). Give the model and data overrides of the "
        "run that wrote it, or another checkpoint."
    )


def saved_step(path: str | Path) -> int:
    """The global step at which the checkpoint in `path` was written, read without reading its tensors (mmap)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def record_run(checkpoint: dict[str, Any], config: dict[str, Any]) -> None:
    """Add the run's resolved config (plain containers) to a checkpoint Lightning is about to write."""
    checkpoint[RUN_KEY] = {"config": config, "version": __version__}


# `_target_`s renamed since checkpoints were first written (version 0.1.0): the saved configs of older runs still
# rebuild
RENAMED_TARGETS = {
    "classicnets.models.ResNet": "classicnets.models.CifarStemResNet",
    "classicnets.callbacks.LastCheckpoint": "classicnets.run.callbacks.LastCheckpoint",
    "classicnets.callbacks.TrainingSpeed": "classicnets.run.callbacks.TrainingSpeed",
    "classicnets.checkpoints.AtomicCheckpointIO": "classicnets.run.checkpoints.AtomicCheckpointIO",
}
LR_SCHEDULE = "classicnets.tasks.LRSchedule"
# what a classification run of 0.1.0 computed, before `task.metrics` named its metrics
METRICS_0_1 = {
    "acc": {"average": "micro"},
    "f1": {"average": "macro", "_target_": "torchmetrics.classification.MulticlassF1Score"},
    "acc_top5": {"average": "micro", "top_k": 5},
}


def saved_config(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The resolved config of the run that wrote `checkpoint` (a plain dictionary), in today's layout."""
    return upgrade_config(checkpoint[RUN_KEY]["config"])


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config of an older version in today's layout: renamed targets, the scheduler as an `LRSchedule`
    (0.1.0 kept `interval`/`monitor` beside the scheduler's own keys), the classification metrics named, GloVe
    embeddings read by the data side."""
    config = _renamed(config)
    scheduler = config.get("scheduler")
    if isinstance(scheduler, dict) and scheduler.get("_target_") not in (None, LR_SCHEDULE):
        settings = {key: scheduler.pop(key) for key in ("interval", "monitor") if key in scheduler}
        config["scheduler"] = {"_target_": LR_SCHEDULE, **settings, "scheduler": scheduler}
    task = config.get("task")
    if (
        isinstance(task, dict)
        and task.get("_target_", "").endswith("ClassificationTask")
        and "metrics" not in task
    ):
        accuracy = "torchmetrics.classification.MulticlassAccuracy"
        task["metrics"] = {
            name: {"_target_": accuracy, "_partial_": True, "validate_args": False, **settings}
            for name, settings in METRICS_0_1.items()
        }
    model = config.get("model")
    if isinstance(model, dict) and "vocabulary" in model:
        path = model.get("pretrained_embeddings")
        model["pretrained_embeddings"] = {
            "_target_": "classicnets.data.text.embeddings.read_glove",
            "path": path,
            "vocabulary": model.pop("vocabulary"),
            "dim": model.get("embedding_dim"),
        }
    return config


def _renamed(config: Any) -> Any:
    if isinstance(config, dict):
        return {
            key: RENAMED_TARGETS.get(value, value) if key == "_target_" else _renamed(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_renamed(value) for value in config]
    return config


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
