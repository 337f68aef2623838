import torch
from torch import nn

from .layers import conv_block, lookup, make_classifier, make_pool

# Output channels of the 3×3 convolutions in each of the five blocks; every block ends in a 2×2 max pool.
_CONFIGS: dict[int, tuple[tuple[int, ...], ...]] = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),  # A
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),  # B
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),  # D
    19: ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),  # E
}


class VGG(nn.Module):
    """VGG-11/13/16/19 (Simonyan & Zisserman, 2015, "Very deep convolutional networks for large-scale
    image recognition"), configurations A, B, D and E, adapted to small images.

    Pools round up so that five halvings take 28×28 as well as 32×32 inputs to 1×1, and a global average
    pool (a mean over the map) feeds the 512 channels to a classifier of two ``classifier_width`` hidden layers instead of the
    paper's 4096-unit layers on a 7×7 map. ``image_size`` is accepted for a uniform interface only.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        depth: int,
        batch_norm: bool = False,
        dropout: float = 0.5,
        classifier_width: int = 512,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for block in lookup(_CONFIGS, depth, "VGG depth"):
            for width in block:
                layers += conv_block(in_channels, width, batch_norm=batch_norm)
                in_channels = width
            layers.append(make_pool("max", ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.classifier = make_classifier(
            in_channels, (classifier_width, classifier_width), num_classes, dropout=dropout
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the global average pool as a mean: AdaptiveAvgPool2d has no deterministic CUDA backward, so it would
        # make `trainer.deterministic=true` fail on a GPU
        return self.classifier(self.features(x).mean((2, 3)))
