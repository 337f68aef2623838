from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from .layers import conv_block, make_classifier, make_pool


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998, "Gradient-based learning applied to document recognition").

    Two convolution → activation → 2×2 pooling stages followed by a fully connected classifier.
    The default ReLU and max pooling train faster and more reliably than the paper's scaled tanh and
    average subsampling; ``activation="tanh", pooling="avg", padding=0`` on 32×32 inputs recovers the
    original layout. ``padding=None`` pads by ``kernel_size // 2`` so that any kernel size fits 28×28 inputs.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        kernel_size: int = 5,
        activation: str = "relu",
        pooling: str = "max",
        padding: int | None = None,
        channels: Sequence[int] = (6, 16),
        hidden_sizes: Sequence[int] = (120, 84),
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = kernel_size // 2
        layers: list[nn.Module] = []
        size = image_size
        for c_in, c_out in pairwise((in_channels, *channels)):
            layers += conv_block(c_in, c_out, kernel_size, padding, activation, batch_norm)
            layers.append(make_pool(pooling))
            size = (size + 2 * padding - kernel_size + 1) // 2
            if size < 1:
                raise ValueError(
                    f"{image_size}×{image_size} inputs are too small for kernel_size={kernel_size}, "
                    f"padding={padding} and {len(channels)} stages"
                )
        self.features = nn.Sequential(*layers)
        self.classifier = make_classifier(
            channels[-1] * size * size, hidden_sizes, num_classes, activation, dropout
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
