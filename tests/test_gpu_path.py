"""What can be proved about the GPU path on a CPU (issue 25; docs/gpu.md lists what only a GPU run shows)."""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch import Trainer
from omegaconf import open_dict
from torch import nn

from classicnets.data.batches import _channel_tensors, normalize
from classicnets.run.build import build
from classicnets.run.callbacks import DivergedError, FiniteLoss, LastCheckpoint, RngStates, cuda_rng_state
from classicnets.run.hardware import choose_precision, cpu_capabilities
from classicnets.run.hardware import configure as configure_hardware
from classicnets.run.pipeline import train
from classicnets.tasks import ClassificationTask
from classicnets.tasks.base import WeightedMean
from tests.conftest import CONF_DIR, compose_config
from tests.signals_at_step import NaNInputAtStep

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


def test_weighted_mean_weighs_its_values_and_never_looks_at_them() -> None:
    # torchmetrics' MeanMetric checks each update for NaN (a host sync per step on a GPU), and with the check off
    # it drops the weights: 1.5 here instead of 1.25
    mean = WeightedMean()
    mean.update(torch.tensor(1.0), weight=3)
    mean.update(torch.tensor([2.0, 2.0]), weight=torch.tensor(0.5))
    mean.update(torch.tensor(4.0, dtype=torch.bfloat16))
    assert mean.compute().item() == pytest.approx((3 * 1.0 + 2 * 0.5 * 2.0 + 4.0) / (3 + 1 + 1))
    mean.update(torch.tensor(float("nan")))
    assert mean.compute().isnan()  # passed through, not checked on the host


def test_training_epoch_sums_stay_exact_in_bf16_true() -> None:
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    task = ClassificationTask(net, optimizer=partial(torch.optim.SGD, lr=0.0), num_classes=3)
    inputs, targets = torch.randn(1200, 4), torch.randint(0, 3, (1200,))
    batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, targets), batch_size=4)
    trainer = Trainer(
        max_epochs=1,
        accelerator="cpu",
        precision="bf16-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, batches)
    with torch.no_grad():
        expected = F.cross_entropy(net(inputs.bfloat16()).float(), targets)
    # a bf16 running sum of 300 batch losses near 4.6 would be off by a quarter
    assert trainer.callback_metrics["train/loss"].item() == pytest.approx(expected.item(), rel=0.002)


def test_normalisation_constants_are_made_once_per_device() -> None:
    images = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8)
    first = normalize(images, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    constants = _channel_tensors((0.5, 0.4, 0.3), (0.2, 0.2, 0.2), images.device)
    assert _channel_tensors((0.5, 0.4, 0.3), (0.2, 0.2, 0.2), images.device) is constants
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.2, 0.2]).view(1, 3, 1, 1)
    assert torch.equal(first, (images.float() / 255 - mean) / std)


@pytest.mark.parametrize("precision", ["bf16-true", "bf16-mixed"])
def test_image_data_trains_in_bf16(make_config, precision: str) -> None:
    # bf16-true used to fail at the first convolution: Lightning casts the batch before the data module
    # normalises it, so the model got float32 images
    metrics = train(make_config("debug=fast_dev_run", "data.source=sample", f"trainer.precision={precision}"))
    assert math.isfinite(metrics["test/loss"])


def test_the_cuda_generator_state_is_the_training_gpus_own() -> None:
    # one state, the GPU's the run trained on: it is restored to whatever GPU the resumed rank trains on
    state = torch.arange(8, dtype=torch.uint8)
    assert cuda_rng_state(state, torch.device("cuda", 3)) is state
    # checkpoints of earlier versions hold one state per visible GPU: the same index, or none (no IndexError)
    every_gpu = [torch.full((8,), i, dtype=torch.uint8) for i in range(2)]
    assert cuda_rng_state(every_gpu, torch.device("cuda", 1)) is every_gpu[1]
    assert cuda_rng_state(every_gpu, torch.device("cuda", 5)) is None
    assert cuda_rng_state(None, torch.device("cuda", 0)) is None
    assert RngStates().state_dict()["cuda"] is None  # a CPU run saves none


def test_a_deferred_nan_check_stops_one_step_later_before_any_checkpoint(make_config, tmp_path: Path) -> None:
    # on a GPU, nan_policy=stop reads each step's verdict at the next step (no host sync per step); forced here
    datamodule, task = build(make_config("model=mlp", "model.hidden_sizes=[16]", "data.source=sample"))
    last = LastCheckpoint(tmp_path, every_n_train_steps=1)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=10,
        limit_val_batches=0,
        callbacks=[NaNInputAtStep(5), FiniteLoss("stop", deferred=True), last],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(
        DivergedError, match=r"became nan at step 5 \(epoch 0\); the last finite loss was .* at step 4"
    ):
        trainer.fit(task, datamodule=datamodule)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 5  # the save after the non-finite step read its verdict and never happened


@pytest.mark.parametrize(
    ("device", "cpu_features", "capability", "expected"),
    [
        ("cpu", {"avx2": True, "avx512_bf16": True, "amx_bf16": False}, None, "bf16-mixed"),  # this machine
        ("cpu", {"avx2": True, "amx_bf16": True}, None, "bf16-mixed"),  # Sapphire Rapids
        (
            "cpu",
            {"avx2": True, "avx512_f": True, "avx512_bf16": False},
            None,
            "32-true",
        ),  # bench/README's host
        ("cpu", {}, None, "32-true"),  # nothing known
        ("cuda", {}, (9, 0), "bf16-mixed"),  # H100, H200
        ("cuda", {}, (8, 0), "bf16-mixed"),  # A100
        ("cuda", {}, (7, 5), "32-true"),  # T4: bf16 only emulated
        ("mps", {}, None, "32-true"),
    ],
)
def test_precision_auto_picks_bf16_where_the_hardware_has_it(
    device: str, cpu_features: dict, capability: tuple[int, int] | None, expected: str
) -> None:
    precision, reason = choose_precision(device, cpu_features, capability)
    assert precision == expected and reason


def test_precision_auto_asks_this_machine_and_an_explicit_value_wins(make_config, caplog) -> None:
    cfg = make_config()
    with caplog.at_level(logging.INFO, logger="classicnets.run.hardware"):
        configure_hardware(cfg)
    expected, _ = choose_precision("cpu", cpu_capabilities())
    assert cfg.trainer.precision == expected
    assert f"trainer.precision=auto chose {expected}: " in caplog.text
    assert cfg.trainer.benchmark is True  # cuDNN's autotuner (no-op on a CPU) unless deterministic
    explicit = make_config("trainer.precision=16-mixed", "trainer.deterministic=true")
    configure_hardware(explicit)
    assert explicit.trainer.precision == "16-mixed" and explicit.trainer.benchmark is False


def test_cpu_features_come_from_torch_or_the_kernel() -> None:
    features = cpu_capabilities()
    if Path("/proc/cpuinfo").is_file() or hasattr(torch.cpu, "get_capabilities"):
        assert features, "neither torch nor /proc/cpuinfo told the CPU's features"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and "avx512_bf16" in cpuinfo.read_text():
        assert features.get("avx512_bf16")
