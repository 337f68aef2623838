from collections.abc import Callable, Sequence

import torch
from torch import nn

from .layers import lookup

# Builds the shortcut of a block whose input and output shapes differ: (in_planes, planes, stride) -> module.
Shortcut = Callable[[int, int, int], nn.Module]

_BLOCKS_PER_STAGE: dict[int, tuple[int, ...]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def conv3x3(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding; no bias because batch norm follows."""
    return nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


def projection_shortcut(in_planes: int, planes: int, stride: int) -> nn.Module:
    """Option B of He et al. (2016): a strided 1×1 convolution and batch norm."""
    return nn.Sequential(
        nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
    )


class BasicBlock(nn.Module):
    """Two 3×3 convolutions whose output is added to the (shortcut-projected) input."""

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, shortcut: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Identity() if shortcut is None else shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetBase(nn.Module):
    """Residual network of BasicBlocks with a 3×3 stride-1 stem and no max pool, suited to small images.

    Stage ``i`` has ``widths[i]`` channels and ``blocks_per_stage[i]`` blocks; every stage after the first
    halves the resolution. A global average pool makes the network independent of the input size.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        widths: Sequence[int],
        blocks_per_stage: Sequence[int],
        shortcut: Shortcut,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            conv3x3(in_channels, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages: list[nn.Module] = []
        in_planes = widths[0]
        for i, (planes, num_blocks) in enumerate(zip(widths, blocks_per_stage, strict=True)):
            stride = 1 if i == 0 else 2
            reshaped = stride != 1 or in_planes != planes
            first_shortcut = shortcut(in_planes, planes, stride) if reshaped else None
            blocks = [BasicBlock(in_planes, planes, stride, first_shortcut)]
            blocks += [BasicBlock(planes, planes) for _ in range(num_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            in_planes = planes
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_planes, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Starting each residual branch at zero makes every block an identity map at initialisation,
        # which Goyal et al. (2017) found to ease large-batch training.
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        # the global average pool as a mean: AdaptiveAvgPool2d has no deterministic CUDA backward, so it would
        # make `trainer.deterministic=true` fail on a GPU
        return self.fc(x.mean((2, 3)))


class CifarStemResNet(ResNetBase):
    """The ImageNet ResNet-18/34 (He et al., 2016, "Deep residual learning for image recognition", torchvision's
    `ResNet`) with a CIFAR stem: the network kuangliu/pytorch-cifar trains on CIFAR-10.

    Four stages of ``width``, 2×, 4× and 8× ``width`` channels with projection (option B) shortcuts, as in
    torchvision, but with a 3×3 stride-1 stem and no max pool so that 32×32 inputs keep their resolution. Not the
    paper's own CIFAR networks (ResNet-20…110: `CifarResNet`), which have three narrower stages.
    ``image_size`` is accepted for a uniform interface only.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        depth: int,
        width: int = 64,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(
            num_classes,
            in_channels,
            widths=[width * 2**i for i in range(4)],
            blocks_per_stage=lookup(_BLOCKS_PER_STAGE, depth, "ResNet depth"),
            shortcut=projection_shortcut,
            zero_init_residual=zero_init_residual,
        )
