"""Figure 2, data path: the project's in-memory batches against torchvision's `Dataset` + `DataLoader`.

Ours: uint8 tensors indexed a batch at a time, crop + flip + normalise on the whole batch
(`InMemoryImageDataModule.transform_batch`). Conventional: a torchvision `Dataset` with per-image
`RandomCrop`/`RandomHorizontalFlip`/`ToTensor`/`Normalize` and a `DataLoader` with 0 and 2 workers; the ratio
is against the faster of the two. Fashion-MNIST and CIFAR-10, batch 128. Target: ≥ 1.5.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from core import Bench, Record, alternate, figure

NUMBER = 2
TITLE = "Data path"
NEEDS = None


def run(bench: Bench) -> list[Record]:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from classicnets.data import CIFAR10DataModule, FashionMNISTDataModule

    records = []
    batches = bench.batches(100)
    for module, dataset in (
        (FashionMNISTDataModule, datasets.FashionMNIST),
        (CIFAR10DataModule, _cifar10_class()),
    ):
        print(f"figure 2: data path, {dataset.__name__} with crop + flip", flush=True)
        ours = module(bench.data_dir, batch_size=128, augment=True)
        ours.setup("fit")
        conventional = dataset(
            str(bench.data_dir),
            train=True,
            transform=transforms.Compose(
                [
                    transforms.RandomCrop(ours.image_size, padding=ours.crop_padding),
                    transforms.RandomHorizontalFlip(),
                    transforms.ToTensor(),
                    transforms.Normalize(ours.mean, ours.std),
                ]
            ),
        )

        def timed(loader: Any, transform: Callable[[torch.Tensor], torch.Tensor]) -> float:
            start, seen = time.perf_counter(), 0
            for step, (images, _) in enumerate(loader):
                seen += len(transform(images))
                if step + 1 == batches:
                    break
            return seen / (time.perf_counter() - start)

        runs = alternate(
            {
                "classicnets in-memory batches": lambda o=ours: timed(
                    o.train_dataloader(), lambda x, o=o: o.transform_batch(x, training=True)
                ),
                **{
                    f"torchvision DataLoader, {w} workers": lambda w=w, c=conventional: timed(
                        DataLoader(c, batch_size=128, shuffle=True, num_workers=w), lambda x: x
                    )
                    for w in (0, 2)
                },
            },
            bench.reps,
        )
        best = max(
            (name for name in runs if name.startswith("torchvision")),
            key=lambda n: statistics.median(runs[n]),
        )
        records.append(
            figure(
                NUMBER,
                f"Data path, {dataset.__name__}, batch 128, crop + flip + normalise",
                "images/s",
                runs,
                {"ours / best torchvision": ("classicnets in-memory batches", best)},
                ("ours / best torchvision", 1.5, float("inf")),
                batches=batches,
            )
        )
    return records


def _cifar10_class() -> type:
    from torchvision import datasets

    class CIFAR10(datasets.CIFAR10):
        """torchvision's CIFAR-10 without its MD5 check: a prepared copy may be re-pickled (same arrays)."""

        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:
            self.classes = []  # the class names (another checksummed file) are not needed to time the data path

    return CIFAR10
