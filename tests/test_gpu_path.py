"""What can be proved about the GPU path on a CPU (issue 25; docs/gpu.md lists what only a GPU run shows)."""

from __future__ import annotations

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
from torch.utils.data import BatchSampler

from classicnets.data.batches import _channel_tensors, normalize, random_crop, random_hflip
from classicnets.data.loading import InMemoryLoader, Placement
from classicnets.data.sampling import EpochSampler
from classicnets.data.text.batching import BucketBatchSampler
from classicnets.errors import ConfigError
from classicnets.models import RecurrentClassifier, Seq2Seq
from classicnets.run.build import build
from classicnets.run.callbacks import DivergedError, FiniteLoss, LastCheckpoint, RngStates, cuda_rng_state
from classicnets.run.checkpoints import network_weights
from classicnets.run.hardware import choose_precision, cpu_capabilities
from classicnets.run.hardware import configure as configure_hardware
from classicnets.run.pipeline import train
from classicnets.tasks import ClassificationTask
from classicnets.tasks.base import WeightedMean
from classicnets.tasks.classification import augmented_logits
from tests.conftest import CONF_DIR, FAST, RANDOM_MLP, compose_config
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


BRIEF = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
)


@pytest.mark.parametrize(
    ("precision", "overrides"),
    [
        ("bf16-true", ("data.source=sample",)),
        ("bf16-mixed", ("data.source=sample",)),
        (
            "bf16-mixed",
            ("experiment=seq2seq_bahdanau", "data.num_train=200", "data.num_val=20", "data.num_test=20"),
        ),
    ],
    ids=["images-bf16-true", "images-bf16-mixed", "seq2seq-bf16-mixed"],
)
def test_runs_train_and_draw_their_tensorboard_figures_in_bf16(
    make_config, precision: str, overrides: tuple[str, ...]
) -> None:
    # bf16-true used to fail at the first convolution (Lightning casts a batch before the data module normalises
    # it, so the model got float32 images); bf16 misclassified images and attention weights failed in numpy
    metrics = train(make_config(*BRIEF, *overrides, f"trainer.precision={precision}"))
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
    assert all(torch.isfinite(t).all() for t in network_weights(saved).values())


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


def test_precision_auto_asks_this_machine_and_an_explicit_value_wins(make_config) -> None:
    cfg = make_config()
    shown = configure_hardware(cfg)  # what the run's header says
    expected, reason = choose_precision("cpu", cpu_capabilities())
    assert cfg.trainer.precision == expected
    assert shown == f"{expected} (auto: {reason})"
    assert cfg.trainer.benchmark is True  # cuDNN's autotuner (no-op on a CPU) unless deterministic
    explicit = make_config("trainer.precision=16-mixed", "trainer.deterministic=true")
    assert configure_hardware(explicit) == "16-mixed"
    assert explicit.trainer.precision == "16-mixed" and explicit.trainer.benchmark is False


def test_cpu_features_come_from_torch_or_the_kernel() -> None:
    features = cpu_capabilities()
    if Path("/proc/cpuinfo").is_file() or hasattr(torch.cpu, "get_capabilities"):
        assert features, "neither torch nor /proc/cpuinfo told the CPU's features"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and "avx512_bf16" in cpuinfo.read_text():
        assert features.get("avx512_bf16")


# ---------------------------------------------------------------- data.placement: where the data sit

TINY = (
    *RANDOM_MLP,
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.deterministic=true",
    "trainer.precision=32-true",
)


def test_placement_device_trains_exactly_like_host_on_a_cpu(tmp_path: Path) -> None:
    # the same order, batches, augmentation and weights wherever the data sit (on a CPU, the same memory)
    weights = {}
    for placement in ("host", "device"):
        train(compose_config(tmp_path / placement, *FAST, *TINY, f"data.placement={placement}"))
        weights[placement] = network_weights(
            torch.load(tmp_path / placement / "checkpoints" / "last.ckpt", weights_only=True)
        )
    assert weights["host"].keys() == weights["device"].keys()
    assert all(torch.equal(weights["host"][key], weights["device"][key]) for key in weights["host"])


def _sample_data(make_config, *overrides: str):
    datamodule = instantiate(make_config(*overrides).data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@pytest.mark.parametrize(
    "overrides",
    [
        ("data=mnist", "data.source=sample"),
        ("data=imdb", "data.source=sample", "model=lstm"),
        ("data=imdb", "data.source=sample", "model=lstm", "data.bucketing=false"),
        ("experiment=seq2seq_bahdanau", "data.num_train=100", "data.num_val=10", "data.num_test=10"),
    ],
    ids=["images", "text", "text-unbucketed", "pairs"],
)
def test_batches_are_gathered_where_the_data_sit(make_config, overrides: tuple[str, ...]) -> None:
    # on the "meta" device every tensor is shape only: a gather that read a value of the device's data on the
    # host (a sync on a GPU) fails there. The source lengths of sentence pairs are the one tensor kept on the host.
    datamodule = _sample_data(make_config, *overrides)
    data = datamodule.splits["train"]
    for shuffle in (True, False):
        order = EpochSampler(len(data), seed=0, shuffle=shuffle)
        batches = BatchSampler(order, 16, drop_last=False)
        if hasattr(data, "lengths"):
            batches = BucketBatchSampler(
                order, 16, lengths=data.lengths, bucket_batches=2 if shuffle else None
            )
        on_host = list(InMemoryLoader(data, batches, device=None))
        on_meta = list(InMemoryLoader(data.to(torch.device("meta")), batches, device=torch.device("meta")))
        assert len(on_host) == len(on_meta) == len(batches)
        kept_on_host = {1} if hasattr(data, "source_lengths") else set()  # (source, lengths, target)
        for host_batch, meta_batch in zip(on_host, on_meta, strict=True):
            for position, (host, meta) in enumerate(zip(host_batch, meta_batch, strict=True)):
                assert host.shape == meta.shape and host.dtype == meta.dtype
                assert meta.device.type == ("cpu" if position in kept_on_host else "meta")


def test_placement_decides_by_the_training_device() -> None:
    cpu = torch.device("cpu")
    assert Placement("auto").device_for(10**9, cpu) == cpu  # a CPU: host and device are the same memory
    assert Placement("auto").device_for(10**9, None) == cpu  # no trainer: host
    assert Placement("host").device_for(10, torch.device("meta")) == cpu
    assert Placement("device").device_for(10**12, torch.device("meta")) == torch.device("meta")
    with pytest.raises(ConfigError, match=r"data.placement='gpu': choose one of auto, host, device"):
        Placement("gpu")


# ---------------------------------------------------------------- tensors made on the right device

DEFAULT_DEVICE_TRAP = torch.device("meta")  # no values: a tensor made here and used with real ones fails


def _inputs(model: nn.Module) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    if isinstance(model, Seq2Seq):
        source = torch.randint(4, SIZES["source_vocab_size"], (6, 9))
        lengths = torch.tensor([9, 3, 5, 1, 9, 7])
        source[torch.arange(9) >= lengths[:, None]] = 0
        return source, lengths, torch.randint(4, SIZES["target_vocab_size"], (6, 5))
    if isinstance(model, RecurrentClassifier) and model.embedding is not None:
        ids = torch.randint(1, SIZES["vocab_size"], (4, 11))
        ids[1, 6:] = 0  # padding
        return (ids,)
    return (torch.randn(4, SIZES["channels"], SIZES["image_size"], SIZES["image_size"]),)


@pytest.mark.parametrize("name", MODELS)
def test_models_make_their_tensors_on_the_inputs_device(name: str, tmp_path: Path) -> None:
    # With torch's default device set to "meta", a tensor made without device= is a meta tensor and fails when it
    # meets the real inputs: on a GPU it would be a CPU tensor meeting CUDA ones (the default device is the CPU)
    model = _model(name, tmp_path)
    inputs = _inputs(model)
    with DEFAULT_DEVICE_TRAP:
        if isinstance(model, Seq2Seq):
            source, lengths, target = inputs
            logits, _ = model(source, lengths, target)
            logits.sum().backward()
            model.teacher_forcing_ratio = 0.5  # draws which steps see their own predictions
            model(source, lengths, target)
            model.eval()
            for beam_width in (1, 3):
                for check_every in (1, 4):
                    model.generate(source, lengths, beam_width=beam_width, check_every=check_every)
        else:
            model(*inputs).sum().backward()
            model.eval()
            if inputs[0].is_floating_point():
                augmented_logits(model, inputs[0], flip=True, shift=1)


def test_rnn_on_image_rows_and_batch_transforms_make_their_tensors_on_the_inputs_device() -> None:
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    model = RecurrentClassifier(num_classes=10, channels=1, image_size=28, bidirectional=True, pooling="mean")
    with DEFAULT_DEVICE_TRAP:
        augmented = random_hflip(random_crop(images, 2))
        model(normalize(augmented, (0.1,), (0.3,))).sum().backward()


def test_decoding_less_often_asked_whether_it_is_done_gives_the_same_outputs() -> None:
    # on a GPU, generate() asks whether every sequence has ended every 8 tokens (each ask waits for the device)
    torch.manual_seed(0)
    model = Seq2Seq(SIZES["source_vocab_size"], SIZES["target_vocab_size"], max_output_length=15).eval()
    with torch.no_grad():
        model.decoder.output.bias[model.eos_index] += 3.0  # sequences end at different steps
    source, lengths, _ = _inputs(model)
    for beam_width in (1, 3):
        every = model.generate(source, lengths, beam_width=beam_width, check_every=1)
        sometimes = model.generate(source, lengths, beam_width=beam_width, check_every=8)
        assert every.tokens.shape[1] < 16  # they did end early
        assert torch.equal(every.tokens, sometimes.tokens) and torch.equal(every.scores, sometimes.scores)
        assert torch.equal(every.attention, sometimes.attention)


# ---------------------------------------------------------------- compile=true


def test_compile_switch_compiles_the_network_in_place(make_config) -> None:
    _, plain = build(make_config("data.source=sample"))
    _, compiled = build(make_config("data.source=sample", "compile=true", "compile_mode=reduce-overhead"))
    assert compiled.net._compiled_call_impl is not None and plain.net._compiled_call_impl is None
    assert compiled.state_dict().keys() == plain.state_dict().keys()  # checkpoints look the same


@pytest.mark.slow
def test_a_compiled_network_trains_checkpoints_and_predicts(make_config, tmp_path: Path) -> None:
    metrics = train(make_config(*TINY, "compile=true", "trainer.max_epochs=1"))
    assert math.isfinite(metrics["test/loss"])
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any(
        "_orig_mod" in key for key in checkpoint["state_dict"]
    )  # eval and predict load it as usual
