"""Pictures and tables for TensorBoard, written once at test time (matplotlib is imported only here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy
import torch
from torch.utils.tensorboard import SummaryWriter


def log_confusion_matrix(
    writer: SummaryWriter, matrix: torch.Tensor, class_names: Sequence[str], step: int, tag: str = "test"
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(matrix.numpy(), cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=90)
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(class_names) <= 20:
        threshold = matrix.max().item() / 2
        for (row, col), count in numpy.ndenumerate(matrix.numpy()):
            color = "white" if count > threshold else "black"
            axes.text(col, row, str(count), ha="center", va="center", color=color, fontsize=7)
    figure.tight_layout()
    writer.add_figure(f"{tag}/confusion_matrix", figure, step)


def log_examples(
    writer: SummaryWriter,
    examples: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    class_names: Sequence[str],
    step: int,
    datamodule: Any = None,
    tag: str = "test/misclassified",
) -> None:
    """Images go in as a grid; other inputs as text, through the data module's `decode` when it has one."""
    if not examples:
        return
    rows = ["| # | predicted | true | input |", "|---|---|---|---|"]
    decode = getattr(datamodule, "decode", None)
    for number, (inputs, predicted, true) in enumerate(examples):
        shown = "(image)" if inputs.dim() == 3 else decode(inputs) if decode else str(inputs.tolist())[:200]
        rows.append(
            f"| {number} | {class_names[predicted]} | {class_names[true]} | {shown.replace('|', '/')} |"
        )
    writer.add_text(tag, "\n".join(rows), step)
    if all(inputs.dim() == 3 for inputs, _, _ in examples):
        from torchvision.utils import make_grid

        grid = make_grid(
            torch.stack([inputs for inputs, _, _ in examples]), nrow=8, normalize=True, scale_each=True
        )
        writer.add_image(tag, grid, step)
