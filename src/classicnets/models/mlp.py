from collections.abc import Sequence

import torch
from torch import nn

from .layers import make_classifier


class MLP(nn.Module):
    """Multilayer perceptron on flattened pixels (Rumelhart, Hinton & Williams, 1986,
    "Learning representations by back-propagating errors")."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        hidden_sizes: Sequence[int] = (512, 256),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        in_features = in_channels * image_size * image_size
        self.classifier = make_classifier(in_features, hidden_sizes, num_classes, activation, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(x, 1))
