import inspect
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from torch import nn

from classicnets import models
from classicnets.models import CifarResNet, CifarStemResNet, LeNet5
from classicnets.models.cifar_resnet import PadShortcut
from classicnets.models.layers import make_activation, make_pool

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"


def _image_model(target: object) -> bool:
    """What a config builds is an image model when its class takes the images' `in_channels` (README, "Add a
    model")."""
    if not (isinstance(target, str) and target.startswith("classicnets.models.")):
        return False
    return "in_channels" in inspect.signature(get_class(target)).parameters


IMAGE_MODEL_CONFIGS = sorted(
    path for path in CONF_DIR.glob("*.yaml") if _image_model(OmegaConf.load(path).get("_target_"))
)
SHAPES = {"mnist": (1, 28, 10), "cifar": (3, 32, 10)}  # channels, image size, classes
ACTIVATIONS = ["relu", "tanh", "sigmoid", "leaky_relu", "gelu"]


def _forward(model: torch.nn.Module, channels: int, image_size: int) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(2, channels, image_size, image_size))


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_image_model_has_configs() -> None:
    classes = {
        f"classicnets.models.{name}" for name in models.__all__ if _image_model(f"classicnets.models.{name}")
    }
    assert {OmegaConf.load(path)._target_ for path in IMAGE_MODEL_CONFIGS} == classes
    assert {
        "classicnets.models.LeNet5",
        "classicnets.models.CifarResNet",
        "classicnets.models.VGG",
    } <= classes


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("config", IMAGE_MODEL_CONFIGS, ids=lambda path: path.stem)
def test_config_instantiates_and_forwards(config: Path, shape: tuple[int, int, int]) -> None:
    channels, image_size, num_classes = shape
    sizes = {"num_classes": num_classes, "channels": channels, "image_size": image_size}
    cfg = OmegaConf.create({"sizes": sizes, "model": OmegaConf.load(config)})
    model = instantiate(cfg.model)
    assert _forward(model, channels, image_size).shape == (2, num_classes)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("kernel_size", [3, 5, 7])
@pytest.mark.parametrize("pooling", ["max", "avg"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_lenet5_variants(
    activation: str, pooling: str, kernel_size: int, shape: tuple[int, int, int]
) -> None:
    channels, image_size, num_classes = shape
    model = LeNet5(
        num_classes, channels, image_size, kernel_size=kernel_size, activation=activation, pooling=pooling
    )
    assert _forward(model, channels, image_size).shape == (2, num_classes)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_lenet5_without_padding(kernel_size: int, shape: tuple[int, int, int]) -> None:
    channels, image_size, num_classes = shape
    model = LeNet5(num_classes, channels, image_size, kernel_size=kernel_size, padding=0, batch_norm=True)
    assert _forward(model, channels, image_size).shape == (2, num_classes)


def test_lenet5_classic_layout_has_paper_feature_size() -> None:
    model = LeNet5(10, 1, 32, activation="tanh", pooling="avg", padding=0)
    assert model.classifier[0].in_features == 16 * 5 * 5


@pytest.mark.parametrize(
    ("depth", "paper_params"), [(20, 0.27e6), (32, 0.46e6), (44, 0.66e6), (56, 0.85e6), (110, 1.7e6)]
)
def test_cifar_resnet_matches_paper_parameter_count(depth: int, paper_params: float) -> None:
    model = CifarResNet(num_classes=10, in_channels=3, image_size=32, depth=depth)
    assert _num_params(model) == pytest.approx(paper_params, rel=0.03)


def test_option_a_shortcut_is_parameter_free() -> None:
    option_a = CifarResNet(10, 3, 32, depth=20, shortcut="A")
    option_b = CifarResNet(10, 3, 32, depth=20, shortcut="B")
    shortcuts = [m for m in option_a.modules() if isinstance(m, PadShortcut)]
    assert len(shortcuts) == 2
    assert all(_num_params(m) == 0 for m in shortcuts)
    assert _num_params(option_b) > _num_params(option_a)


def test_option_a_shortcut_subsamples_and_pads() -> None:
    out = PadShortcut(16, 32, stride=2)(torch.ones(1, 16, 7, 7))
    assert out.shape == (1, 32, 4, 4)
    assert out[:, 16:].abs().sum() == 0


@pytest.mark.parametrize(
    "model",
    [
        CifarStemResNet(10, 3, 32, depth=18, width=8, zero_init_residual=True),
        CifarResNet(10, 3, 32, depth=20, zero_init_residual=True),
    ],
    ids=["resnet18", "resnet20"],
)
def test_zero_init_residual_zeroes_last_batch_norm(model: nn.Module) -> None:
    assert all(block.bn2.weight.abs().sum() == 0 for stage in model.stages for block in stage)


def test_unknown_activation_lists_valid_choices() -> None:
    with pytest.raises(ValueError, match="swish") as excinfo:
        make_activation("swish")
    assert all(name in str(excinfo.value) for name in ACTIVATIONS)


def test_unknown_pooling_lists_valid_choices() -> None:
    with pytest.raises(ValueError, match="max, avg"):
        make_pool("median")


@pytest.mark.parametrize(
    ("model_cls", "depth"), [(models.VGG, 15), (CifarStemResNet, 50), (CifarResNet, 21), (CifarResNet, 2)]
)
def test_unsupported_depth_raises(model_cls: type[torch.nn.Module], depth: int) -> None:
    with pytest.raises(ValueError, match="depth"):
        model_cls(num_classes=10, in_channels=3, image_size=32, depth=depth)


def test_lenet5_gradients_reach_every_parameter() -> None:
    model = LeNet5(num_classes=10, in_channels=1, image_size=28)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 1, 28, 28)), torch.tensor([3, 7]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
