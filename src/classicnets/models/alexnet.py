from collections.abc import Sequence

import torch
from torch import nn

from .layers import conv_block, make_classifier, make_pool


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky, Sutskever & Hinton, 2012, "ImageNet classification with deep convolutional
    neural networks") adapted to 28×28 and 32×32 inputs.

    Keeps the five convolutions (64-192-384-256-256 channels, as in torchvision's single-tower variant),
    three max pools and the dropout classifier. The paper's 11×11 stride-4 stem would shrink a 32×32 image
    to 8×8 at once, so the first convolution is 5×5 with stride 1 and the rest are 3×3; the classifier is
    narrower than the paper's 4096 units to match the far smaller inputs.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        dropout: float = 0.5,
        batch_norm: bool = False,
        hidden_sizes: Sequence[int] = (1024, 1024),
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_block(in_channels, 64, kernel_size=5, batch_norm=batch_norm),
            make_pool("max"),
            *conv_block(64, 192, batch_norm=batch_norm),
            make_pool("max"),
            *conv_block(192, 384, batch_norm=batch_norm),
            *conv_block(384, 256, batch_norm=batch_norm),
            *conv_block(256, 256, batch_norm=batch_norm),
            make_pool("max"),
        )
        # Convolutions preserve the size; each of the three pools halves it, rounding down.
        size = image_size // 8
        if size < 1:
            raise ValueError(f"AlexNet needs inputs of at least 8×8, got {image_size}×{image_size}")
        self.classifier = make_classifier(256 * size * size, hidden_sizes, num_classes, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
