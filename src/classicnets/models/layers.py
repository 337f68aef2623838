"""Building blocks shared by the model definitions."""

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from torch import nn

K = TypeVar("K")
V = TypeVar("V")

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}

_POOLS: dict[str, Callable[..., nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def lookup(table: Mapping[K, V], key: K, what: str) -> V:
    """Return ``table[key]``, or raise a ValueError that lists the valid choices for ``what``."""
    try:
        return table[key]
    except KeyError:
        choices = ", ".join(str(k) for k in table)
        raise ValueError(f"unknown {what} {key!r}; valid choices: {choices}") from None


def make_activation(name: str) -> nn.Module:
    """Return a new activation module: relu, tanh, sigmoid, leaky_relu or gelu."""
    return lookup(_ACTIVATIONS, name, "activation")()


def make_pool(kind: str, kernel_size: int = 2, ceil_mode: bool = False) -> nn.Module:
    """Return a non-overlapping (stride = kernel size) 2-D pooling layer: max or avg."""
    return lookup(_POOLS, kind, "pooling")(kernel_size, ceil_mode=ceil_mode)


def conv_block(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    padding: int | None = None,
    activation: str = "relu",
    batch_norm: bool = False,
) -> list[nn.Module]:
    """Conv2d → optional BatchNorm2d → activation; ``padding=None`` keeps the spatial size for odd kernels."""
    if padding is None:
        padding = kernel_size // 2
    # The convolution bias is redundant when batch norm re-centres the output.
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(make_activation(activation))
    return layers


def make_classifier(
    in_features: int,
    hidden_sizes: Sequence[int],
    num_classes: int,
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """Fully connected head: Linear → activation → Dropout per hidden size, then a Linear to the logits."""
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [nn.Linear(in_features, width), make_activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)
