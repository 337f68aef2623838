import torch
import torch.nn.functional as F
from torch import nn

from .layers import lookup
from .resnet import ResNetBase, projection_shortcut


class PadShortcut(nn.Module):
    """Option A of He et al. (2016): subsample by ``stride`` and zero-pad the new channels.

    Adds no parameters, which is what keeps the paper's CIFAR ResNets at their reported sizes.
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


_SHORTCUTS = {"A": PadShortcut, "B": projection_shortcut}


class CifarResNet(ResNetBase):
    """CIFAR ResNet of He et al. (2016, "Deep residual learning for image recognition", Section 4.2).

    Three stages of ``n`` BasicBlocks with 16, 32 and 64 channels, so ``depth = 6n + 2`` (20, 32, 44, 56,
    110, ...). ``shortcut="A"`` is the paper's parameter-free shortcut, ``"B"`` a 1×1 projection.
    ``image_size`` is accepted for a uniform interface only.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        depth: int,
        shortcut: str = "A",
        zero_init_residual: bool = False,
    ) -> None:
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(
                f"CifarResNet depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth}"
            )
        n = (depth - 2) // 6
        super().__init__(
            num_classes,
            in_channels,
            widths=(16, 32, 64),
            blocks_per_stage=(n, n, n),
            shortcut=lookup(_SHORTCUTS, shortcut, "shortcut"),
            zero_init_residual=zero_init_residual,
        )
