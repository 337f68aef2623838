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
    # margins for the longest class name, set rather than measured: `tight_layout` renders the figure once more
    # to measure the labels, half of this function's time
    labels = (0.6 + 0.075 * max(map(len, class_names), default=1)) / size
    figure.subplots_adjust(left=labels, bottom=labels, right=1 - 0.2 / size, top=1 - 0.2 / size)
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

        # float32: images kept from a bf16-true run are bf16, which numpy (and so TensorBoard) cannot take
        grid = make_grid(
            torch.stack([inputs for inputs, _, _ in examples]).float(),
            nrow=8,
            normalize=True,
            scale_each=True,
        )
        writer.add_image(tag, grid, step)


def log_translations(
    writer: SummaryWriter, rows: Sequence[tuple[str, str, str]], step: int, tag: str = "test/translations"
) -> None:
    """A markdown table of (input, reference, output) rows, each marked ✓ when the output is exact."""
    lines = ["| # | ok | input | reference | output |", "|---|---|---|---|---|"]
    for number, (source, reference, output) in enumerate(rows):
        cells = [text.replace("|", "/")[:200] for text in (source, reference, output)]
        lines.append(f"| {number} | {'✓' if output == reference else '✗'} | {' | '.join(cells)} |")
    writer.add_text(tag, "\n".join(lines), step)


def attention_figure(examples: Sequence[tuple[Sequence[str], Sequence[str], torch.Tensor]]) -> Any:
    """One heatmap per (source tokens, output tokens, weights output×source) example, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = [max(2.0, 0.22 * len(source) + 1) for source, _, _ in examples]
    height = max(2.5, 0.25 * max(len(output) for _, output, _ in examples) + 1.5)
    figure, axes = plt.subplots(1, len(examples), figsize=(sum(widths), height), squeeze=False)
    for ax, (source, output, weights) in zip(axes[0], examples, strict=True):
        # float32: attention weights computed under bf16 autocast are bf16, which numpy cannot take
        ax.imshow(weights.float().numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(source)), ["␣" if t.isspace() else t for t in source], fontsize=7)
        ax.set_yticks(range(len(output)), output, fontsize=7)
        ax.set_xlabel("input")
        ax.set_ylabel("output")
    figure.tight_layout()
    return figure


def log_attention(
    writer: SummaryWriter,
    examples: Sequence[tuple[Sequence[str], Sequence[str], torch.Tensor]],
    step: int,
    tag: str = "test/attention",
) -> None:
    writer.add_figure(tag, attention_figure(examples), step)
