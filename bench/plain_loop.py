"""The baseline of every figure: a hand-written PyTorch training loop, what one writes without a framework.

Same in-memory uint8 tensors, same normalisation, same model classes (`classicnets.models`), same optimizer,
schedule and batch size as `train.py`; no logging, no validation, no checkpoints, one test at the end.
The bench imports its functions to time them against `train.py` in the same process; run on its own it is the
plain script of figure 3, timed from a cold start (imports included):

    python bench/plain_loop.py --data-dir /tmp/data --epochs 10
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from classicnets.models import LeNet5

FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float().div_(255) - mean_t) / std_t


def holdout_split(num_examples: int, val_fraction: float, seed: int) -> torch.Tensor:
    """Indices of the training part, the same images `train.py` trains on (it holds out a validation set)."""
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed))
    return order[max(1, round(num_examples * val_fraction)) :]


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_batches: int | None = None,
    bf16: bool = False,
    channels_last: bool = False,
) -> tuple[int, float]:
    """One shuffled pass (or its first `max_batches` batches); returns (images seen, seconds).

    The batches are gathered where the tensors sit (moved to the model's device first: a no-op when they are
    there already, as with `train.py`'s `data.placement=device`).
    """
    model.train()
    device = next(model.parameters()).device
    start = time.perf_counter()
    order = torch.randperm(len(labels), device=images.device)
    batches = torch.split(order, batch_size)[:max_batches]
    # made once: built per batch, they would be a host-to-device copy (and a wait) per step on a GPU
    mean_t, std_t = (torch.tensor(values, device=device).view(1, -1, 1, 1) for values in (mean, std))
    for index in batches:
        inputs = (images[index].to(device, non_blocking=True).float().div_(255) - mean_t) / std_t
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(inputs), labels[index].to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return sum(len(index) for index in batches), time.perf_counter() - start


@torch.no_grad()
def accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 1000,
) -> float:
    model.eval()
    correct = sum(
        (model(normalize(images[i : i + batch_size], mean, std)).argmax(1) == labels[i : i + batch_size])
        .sum()
        .item()
        for i in range(0, len(labels), batch_size)
    )
    return correct / len(labels)


def load_fashion_mnist(data_dir: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 N×1×28×28 images and labels of the train and test splits, read the usual torchvision way."""
    from torchvision.datasets import FashionMNIST

    train, test = (FashionMNIST(data_dir, train=flag) for flag in (True, False))
    return train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1), test.targets


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", required=True, help="folder holding FashionMNIST/raw")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (peak of one-cycle)")
    parser.add_argument("--channels", type=int, nargs=2, default=(6, 16))
    parser.add_argument("--batch-norm", action="store_true")
    parser.add_argument("--onecycle", action="store_true", help="one-cycle schedule, 25%% warm-up, per step")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    train_images, train_labels, test_images, test_labels = load_fashion_mnist(args.data_dir)
    keep = holdout_split(len(train_labels), 0.1, args.seed)
    train_images, train_labels = train_images[keep].contiguous(), train_labels[keep]
    model = LeNet5(10, 1, 28, channels=args.channels, batch_norm=args.batch_norm)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * -(-len(train_labels) // args.batch_size)
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps, pct_start=0.25)
        if args.onecycle
        else None
    )
    epoch_seconds = []
    for _ in range(args.epochs):
        _, seconds = train_epoch(
            model, optimizer, train_images, train_labels, args.batch_size,
            FASHION_MNIST_MEAN, FASHION_MNIST_STD, scheduler,
        )  # fmt: skip
        epoch_seconds.append(seconds)
    test_acc = accuracy(model, test_images, test_labels, FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    result = {
        "test_acc": test_acc,
        "epoch_s": epoch_seconds,
        "seconds_after_imports": time.perf_counter() - start,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
