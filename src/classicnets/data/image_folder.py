"""Your own images: one sub-folder per class, in any format Pillow reads.

A folder that fits in memory is decoded once into the same uint8 tensors as the built-in datasets, so
batching, normalisation and augmentation are the fast whole-batch ones of `vision.py`. The decoded tensors are
cached (by default in `<train_dir>/.classicnets_cache/`) under a key made of the file list, the files' sizes and
modification times and the decoding settings, so the next run reads one file instead of decoding every image,
and editing, adding or removing an image decodes again.

A folder whose decoded size exceeds `in_memory_limit_gb` streams from disk instead: DataLoader workers decode one
image at a time. It is slower per epoch but its memory use does not grow with the folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from classicnets.data.batches import TensorBatches
from classicnets.data.errors import CorruptDatasetError, DatasetNotFoundError
from classicnets.data.vision import InMemoryImageDataModule
from classicnets.errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(ext for ext, name in Image.registered_extensions().items() if name in Image.OPEN)
CACHE_FOLDER = ".classicnets_cache"
STATS_SAMPLE = 5000  # images a streamed folder's mean and std are estimated from
CACHE_VERSION = 2  # bump when the cached layout or the decoding changes (2: 16-bit, float and alpha rules)
ALPHA_BACKGROUND = 255  # white: what transparent pixels become
TIFF_BITS_PER_SAMPLE = 258


def image_files(folder: Path) -> list[Path]:
    """Every image below `folder`, recursively and sorted; hidden files and folders (the cache) are skipped."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # pruned in place: os.walk does not enter them
        found += [
            os.path.join(root, name)
            for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        ]
    return [Path(path) for path in sorted(found)]


def read_image(path: Path, channels: int, image_size: int, resize: bool = True) -> torch.Tensor:
    """Decode one image into uint8 C×S×S: grey (1 channel) or RGB (3), square-resized to `image_size`.

    Every mode Pillow opens becomes 8-bit values by the rules of `eight_bit` (documented in
    docs/your_own_data.md). With `resize=False` an image of another size is an error rather than silently
    distorted.
    """
    try:
        with Image.open(path) as opened:
            image = eight_bit(opened, path).convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        if isinstance(error, CorruptDatasetError):
            raise
        raise _unreadable(path, error) from error
    if image.size != (image_size, image_size):
        if not resize:
            width, height = image.size
            raise CorruptDatasetError(
                f"{path} is {width}×{height}, not {image_size}×{image_size} like the first training image: "
                "pass data.image_size=N to resize every image to N×N."
            )
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    array = torch.from_numpy(np.array(image, dtype=np.uint8))
    return array.unsqueeze(0) if channels == 1 else array.permute(2, 0, 1).contiguous()


def eight_bit(image: Image.Image, path: Path) -> Image.Image:
    """An image of any mode Pillow opens as grey (L) or colour (RGB) with 8-bit values:

    - 16-bit grey (`I;16`, `I;16B`, …) is scaled from its bit depth (16, or the lower depth a TIFF states, e.g.
      12) to 0..255; 32-bit integer grey (`I`) likewise as 16-bit when every value fits in 0..65535 (such files
      usually carry 16-bit data), else from 0..2³¹−1; negative values are an error;
    - floating-point grey (`F`) in 0..1 is scaled to 0..255, in 0..255 taken as it is; other ranges are an error;
    - palette (`P`), CMYK, YCbCr, LAB and HSV are converted to RGB, 1-bit to 0/255 grey;
    - transparency (an alpha channel, or a palette's transparent colour) is composited onto white, as a viewer
      shows the image on a white page.
    """
    mode = image.mode
    if mode.startswith("I"):
        return Image.fromarray(_scaled_integers(np.asarray(image), _bit_depth(image), path), "L")
    if mode == "F":
        return Image.fromarray(_scaled_floats(np.asarray(image, dtype=np.float64), path), "L")
    if mode in ("P", "PA"):
        image = image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "RGBA", "RGBa"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (ALPHA_BACKGROUND,) * 3 + (255,))
        return Image.alpha_composite(background, image).convert("RGB")
    return image if image.mode in ("L", "RGB") else image.convert("RGB" if len(image.getbands()) > 1 else "L")


def _bit_depth(image: Image.Image) -> int:
    """A lower depth the file states (a TIFF's BitsPerSample, e.g. 12), else 16 for `I;16*` and for `I` when
    every value fits in 16 bits (32-bit files often carry 16-bit data), else 31 (positive 32-bit integers)."""
    stated = getattr(image, "tag_v2", {}).get(TIFF_BITS_PER_SAMPLE)
    stated = stated[0] if isinstance(stated, tuple) else stated
    if isinstance(stated, int) and 1 <= stated <= 16:
        return stated
    if image.mode.startswith("I;16"):
        return 16
    return 16 if int(np.asarray(image).max(initial=0)) <= 0xFFFF else 31


def _scaled_integers(values: np.ndarray, bits: int, path: Path) -> np.ndarray:
    if values.size and values.min() < 0:
        raise CorruptDatasetError(
            f"{path} holds negative pixel values ({values.min()}): signed images cannot be read as brightness; "
            "save it as 8- or 16-bit unsigned."
        )
    return np.round(values.astype(np.float64) * (255 / (2**bits - 1))).clip(0, 255).astype(np.uint8)


def _scaled_floats(values: np.ndarray, path: Path) -> np.ndarray:
    if not np.isfinite(values).all():
        raise CorruptDatasetError(f"{path} holds NaN or infinite pixel values: fix or remove the image.")
    low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if low >= 0 and high <= 1:
        values = values * 255
    elif not (low >= 0 and high <= 255):
        raise CorruptDatasetError(
            f"{path} holds floating-point pixel values from {low:g} to {high:g}: float images are read in 0..1 "
            "or 0..255. Rescale it to one of them."
        )
    return np.round(values).astype(np.uint8)


def image_size_of(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise _unreadable(path, error) from error


def _unreadable(path: Path, error: Exception) -> CorruptDatasetError:
    empty = path.is_file() and path.stat().st_size == 0
    reason = "is an empty file" if empty else f"is not an image Pillow can read ({error})"
    return CorruptDatasetError(f"{path} {reason}: remove or replace it.")


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and std of uint8 N×C×H×W images scaled to [0, 1], from a histogram per channel."""
    levels = torch.arange(256, dtype=torch.float64) / 255
    mean, std = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].flatten(), minlength=256).double()
        channel_mean = (counts * levels).sum() / counts.sum()
        mean.append(channel_mean.item())
        std.append(((counts * (levels - channel_mean).square()).sum() / counts.sum()).sqrt().item())
    return mean, std


class ImageFiles(Dataset):
    """Images decoded from disk one at a time, for folders too large to hold in memory."""

    def __init__(
        self, files: Sequence[Path], labels: Sequence[int], channels: int, image_size: int, resize: bool
    ):
        self.files, self.labels = list(files), list(labels)
        self.channels, self.image_size, self.resize = channels, image_size, resize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = read_image(self.files[index], self.channels, self.image_size, self.resize)
        return image, self.labels[index]


class ImageFolderDataModule(InMemoryImageDataModule):
    """Images in `<dir>/<class name>/**/<image>`: class ids follow the sorted names of the training folder.

    `image_size` is the square side every image is resized to; left out, it is the images' own size, which
    must then be square and the same for every image. Mean and std are measured on the training split.
    """

    hflip = True

    def __init__(
        self,
        train_dir: str | Path,
        test_dir: str | Path,
        val_dir: str | Path | None = None,
        image_size: int | None = None,
        channels: int = 3,
        cache: bool = True,
        cache_dir: str | Path | None = None,
        in_memory_limit_gb: float = 4.0,
        num_workers: int = 4,
        **kwargs: Any,
    ) -> None:
        """`kwargs`: the batching and augmentation settings of `InMemoryImageDataModule`."""
        super().__init__(train_dir, **kwargs)
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 (grey) or 3 (RGB), got {channels}")
        self.train_dir = self.data_dir
        self.test_dir = Path(test_dir).expanduser()
        self.val_dir = Path(val_dir).expanduser() if val_dir else None
        self.requested_size = image_size
        self.channels = channels
        self.cache = cache
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.train_dir / CACHE_FOLDER
        self.in_memory_limit_gb = in_memory_limit_gb
        self.num_workers = num_workers
        self.streaming = False
        # decided from the files in setup, or restored from a checkpoint by load_state_dict
        self.classes: tuple[str, ...] = ()
        self.image_size = image_size or 0
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        folder = self.train_dir if train else self.test_dir
        return self._decoded(folder, *self._scan(folder))

    def setup(self, stage: str | None = None) -> None:
        # with a checkpoint's classes, size and statistics restored (eval), the test needs no training image
        restored = bool(self.mean)
        if "train" not in self.splits and not (stage == "test" and restored):
            self._setup_fit()
        if stage in (None, "test") and "test" not in self.splits:
            self.splits["test"] = self._dataset(self.test_dir, *self._scan(self.test_dir))

    def _setup_fit(self) -> None:
        files, labels = self._scan(self.train_dir)
        self._decide_size(files[0])
        decoded_gb = len(files) * self.channels * self.image_size**2 / 1e9
        self.streaming = decoded_gb > self.in_memory_limit_gb
        if self.streaming and self.placement.placement == "device":
            raise ValueError(
                f"data.placement=device: the decoded images of {self.train_dir} ({decoded_gb:.1f} GB) exceed "
                f"data.in_memory_limit_gb={self.in_memory_limit_gb}, so they would stream from disk, not sit on the "
                "device: raise the limit if the memory is there, or use data.placement=auto"
            )
        if self.streaming:
            log.warning(
                "%s: the decoded images (%.1f GB) exceed data.in_memory_limit_gb=%s, so they stream from disk "
                "through %d DataLoader workers (slower per epoch; raise the limit if the memory is there)",
                self.train_dir,
                decoded_gb,
                self.in_memory_limit_gb,
                self.num_workers,
            )
        train = self._dataset(self.train_dir, files, labels)
        if self.val_dir is None:
            train_part, val_part = self.train_val_indices(len(files))
            self.splits["train"], self.splits["val"] = _subset(train, train_part), _subset(train, val_part)
        else:
            self.splits["train"] = train
            self.splits["val"] = self._dataset(self.val_dir, *self._scan(self.val_dir))
        if not self.mean:
            self.mean, self.std = self._train_stats()
            if blank := [c for c, std in enumerate(self.std) if std == 0]:
                raise CorruptDatasetError(
                    f"every training image in {self.train_dir} has the same value in every pixel of channel "
                    f"{blank[0]} ({self.mean[blank[0]] * 255:.0f}): there is nothing to learn from. Check that "
                    "the images are not blank, and open one to see what it holds."
                )

    def _decide_size(self, first: Path) -> None:
        if self.image_size:
            return
        width, height = image_size_of(first)
        if width != height:
            raise CorruptDatasetError(
                f"{first} is {width}×{height}: the images are not square, so pass data.image_size=N to "
                "resize every image to N×N."
            )
        self.image_size = width

    def _scan(self, folder: Path) -> tuple[list[Path], list[int]]:
        """Files and labels of a `<class>/<images>` folder; the training folder decides the class names."""
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"{folder} is not a folder: data.train_dir, data.test_dir and data.val_dir must each be a folder "
                "with one sub-folder of images per class."
            )
        names = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not names:
            raise DatasetNotFoundError(
                f"{folder} has no class sub-folders: put each class's images in {folder}/<class>/"
            )
        if not self.classes:
            if len(names) < 2:
                raise CorruptDatasetError(
                    f"{folder} has one class folder ({names[0]}/): classification needs at least 2 classes, each "
                    f"in its own sub-folder {folder}/<class>/"
                )
            self.classes = tuple(names)
        known_classes = self.classes
        unknown = sorted(set(names) - set(known_classes))
        if unknown:
            raise CorruptDatasetError(
                f"{folder} has class folders the training folder {self.train_dir} does not: {', '.join(unknown)}. "
                f"The model only knows the training classes ({', '.join(known_classes)})."
            )
        files: list[Path] = []
        labels: list[int] = []
        for name in names:
            found = image_files(folder / name)
            if not found:
                raise CorruptDatasetError(
                    f"class folder {folder / name} has no images (no file with an extension Pillow reads, such as "
                    ".png, .jpg or .bmp): add images or remove the folder."
                )
            files += found
            labels += [known_classes.index(name)] * len(found)
        return files, labels

    def _dataset(self, folder: Path, files: list[Path], labels: list[int]) -> Dataset:
        """A scanned folder as in-memory tensors or, when streaming, as files to decode batch by batch."""
        if self.streaming:
            return ImageFiles(files, labels, self.channels, self.image_size, resize=bool(self.requested_size))
        return TensorBatches(*self._checked(*self._decoded(folder, files, labels)))

    def _decoded(
        self, folder: Path, files: list[Path], labels: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = self._cache_key(folder, files, labels)
        cached = self._read_cache(folder, key)
        if cached is not None:
            return cached
        start = time.perf_counter()
        images = torch.empty(len(files), self.channels, self.image_size, self.image_size, dtype=torch.uint8)
        resize = bool(self.requested_size)
        # Pillow releases the GIL while decoding, so threads decode in parallel without pickling images around
        pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
        try:
            decoded = pool.map(lambda f: read_image(f, self.channels, self.image_size, resize), files)
            for i, image in enumerate(decoded):
                images[i] = image
        finally:  # a Ctrl-C or an unreadable image stops now, not after every queued image is decoded
            pool.shutdown(cancel_futures=True)
        result = images, torch.tensor(labels, dtype=torch.long)
        log.info("decoded %d images from %s in %.1f s", len(files), folder, time.perf_counter() - start)
        self._write_cache(folder, key, result)
        return result

    def _cache_key(self, folder: Path, files: Sequence[Path], labels: Sequence[int]) -> str:
        digest = hashlib.sha256(
            f"{CACHE_VERSION} {self.channels} {self.image_size} {bool(self.requested_size)}\n".encode()
        )
        start = len(str(folder)) + 1  # names relative to the folder, without pathlib's slow relative_to
        for path, label in zip(files, labels, strict=True):
            stat = os.stat(path)
            digest.update(f"{str(path)[start:]}\t{label}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:24]

    def _cache_prefix(self, folder: Path) -> str:
        # one cache file per folder: a new key replaces the file of the folder's previous contents
        return hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]

    def _read_cache(self, folder: Path, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self.cache_dir / f"{self._cache_prefix(folder)}-{key}.pt"
        if not (self.cache and path.is_file()):
            return None
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            result = cached["images"], cached["labels"]
        except Exception as error:  # a half-written or foreign file is decoded again, not trusted
            log.warning("ignoring unreadable image cache %s (%s); decoding again", path, error)
            return None
        log.info("read %d decoded images of %s from the cache %s", len(result[1]), folder, path)
        return result

    def _write_cache(self, folder: Path, key: str, result: tuple[torch.Tensor, torch.Tensor]) -> None:
        if not self.cache or (self.cache_dir.parent == self.train_dir and not self.train_dir.is_dir()):
            return  # eval after the training folder moved: no cache folder where it was
        prefix = self._cache_prefix(folder)
        path = self.cache_dir / f"{prefix}-{key}.pt"
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            torch.save({"images": result[0], "labels": result[1]}, partial)
            os.replace(partial, path)  # atomic: another process (a DDP rank) never reads a half-written cache
        except OSError as error:
            log.warning("could not write the image cache %s (%s): the next run decodes again", path, error)
            partial.unlink(missing_ok=True)
            return
        for stale in self.cache_dir.glob(f"{prefix}-*.pt"):
            if stale != path:
                stale.unlink(missing_ok=True)

    def _train_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        train = self.splits["train"]
        if not self.streaming:
            images = train.tensors[0]
        else:
            sample = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
            images = torch.stack([train[i][0] for i in sample[:STATS_SAMPLE].tolist()])
            log.info("mean and std estimated from %d of the %d training images", len(images), len(train))
        mean, std = channel_stats(images)
        return tuple(mean), tuple(std)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> Iterable[Any]:
        if not self.streaming:
            return super()._loader(split, batch_size, shuffle)
        return DataLoader(
            self.splits[split],
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the training folder's classes, size and statistics (eval of a checkpoint on other folders)."""
        self.classes = tuple(state["classes"])
        self.channels = int(state["channels"])
        self.image_size = int(state["image_size"])
        self.mean, self.std = tuple(state["mean"]), tuple(state["std"])


def _subset(dataset: Dataset, indices: torch.Tensor) -> Dataset:
    if isinstance(dataset, ImageFiles):
        picked = indices.tolist()
        return ImageFiles(
            [dataset.files[i] for i in picked],
            [dataset.labels[i] for i in picked],
            dataset.channels,
            dataset.image_size,
            dataset.resize,
        )
    return TensorBatches(*(tensor[indices] for tensor in dataset.tensors))
