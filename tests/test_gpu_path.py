"""What can be proved about the GPU path on a CPU (issue 25; docs/gpu.md lists what only a GPU run shows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import open_dict
from torch import nn

from tests.conftest import CONF_DIR, compose_config

MODELS = sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml") if path.stem != "custom")
SIZES = {
    "num_classes": 10,
    "channels": 3,
    "image_size": 32,
    "vocab_size": 50,
    "vocab_file": None,
    "source_vocab_size": 30,
    "target_vocab_size": 20,
    "max_target_length": 12,
}

# Modules whose CUDA backward has no deterministic implementation: with `trainer.deterministic=true` torch raises
# at the first backward on a GPU (torch.use_deterministic_algorithms' list), while on a CPU they run fine.
NO_DETERMINISTIC_CUDA_BACKWARD = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool2d,
    nn.AvgPool3d,
    nn.MaxPool3d,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
    nn.MaxUnpool1d,
    nn.MaxUnpool2d,
    nn.MaxUnpool3d,
    nn.ReflectionPad1d,
    nn.ReflectionPad2d,
    nn.ReflectionPad3d,
    nn.ReplicationPad1d,
    nn.ReplicationPad2d,
    nn.ReplicationPad3d,
    nn.Upsample,
    nn.CTCLoss,
    nn.EmbeddingBag,
)


def _model(name: str, tmp_path: Path) -> nn.Module:
    cfg = compose_config(tmp_path, f"model={name}")
    with open_dict(cfg):
        cfg.sizes = SIZES
    return instantiate(cfg.model)


@pytest.mark.parametrize("name", MODELS)
def test_no_model_uses_a_module_without_a_deterministic_cuda_backward(name: str, tmp_path: Path) -> None:
    found = [
        type(m).__name__
        for m in _model(name, tmp_path).modules()
        if isinstance(m, NO_DETERMINISTIC_CUDA_BACKWARD)
    ]
    assert not found, f"model={name} uses {found}: trainer.deterministic=true would fail on a GPU"
