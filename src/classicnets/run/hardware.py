"""Choices that depend on the hardware a run trains on: the precision (`trainer.precision=auto`) and the switches
of the CUDA backends (cuDNN's autotuner, TF32 matrix products).

bf16-mixed is chosen where the hardware computes in bf16 natively: a CUDA GPU of compute capability 8.0 or later
(Ampere, Hopper, ...), a CPU with AVX-512 BF16 or AMX. Elsewhere bf16 is emulated and many times slower (15× on
an AVX2 CPU, bench/README.md, figure 5), so the run stays in 32-bit. An explicit `trainer.precision` always wins.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)

AUTO = "auto"
BF16 = "bf16-mixed"
FP32 = "32-true"
# CPU features with bf16 arithmetic in hardware, as torch.cpu.get_capabilities() and /proc/cpuinfo name them
CPU_BF16_FEATURES = ("amx_bf16", "avx512_bf16")


def configure(cfg: DictConfig) -> str:
    """Resolve `trainer.precision=auto` and `trainer.benchmark=null` in `cfg` for the device the run trains on,
    log what was chosen and why, and set the CUDA matmul precision. Call before the trainer is made.

    Returns the precision as the run's header shows it: with the reason where `auto` chose it."""
    device = device_type(cfg.trainer.get("accelerator", AUTO))
    if cfg.trainer.get("precision", AUTO) == AUTO:
        precision, reason = choose_precision(device, *hardware_facts(device))
        cfg.trainer.precision = precision
        log.debug("trainer.precision=auto chose %s: %s", precision, reason)
        shown = f"{precision} (auto: {reason})"
    else:
        shown = str(cfg.trainer.precision)
    if cfg.trainer.get("benchmark") is None:
        # cuDNN times its algorithms for each new input shape and keeps the fastest; it is not deterministic
        cfg.trainer.benchmark = not cfg.trainer.get("deterministic", False)
    if device == "cuda":
        # TF32 tensor cores for fp32 matrix products (cuDNN's convolutions use them by default already)
        torch.set_float32_matmul_precision(cfg.get("float32_matmul_precision") or "high")
    return shown


def device_type(accelerator: str) -> str:
    """The kind of device Lightning will train on for `trainer.accelerator` (asked without starting CUDA)."""
    if accelerator in ("cpu", "cuda", "mps"):
        return accelerator
    if accelerator in (AUTO, "gpu"):
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
    return "cpu" if accelerator == AUTO else str(accelerator)


def hardware_facts(device: str) -> tuple[Mapping[str, Any], tuple[int, int] | None]:
    """What `choose_precision` needs to know of this machine: the CPU's features, the GPU's compute capability."""
    capability = torch.cuda.get_device_capability() if device == "cuda" else None
    return cpu_capabilities(), capability


def choose_precision(
    device: str, cpu_features: Mapping[str, Any], cuda_capability: tuple[int, int] | None = None
) -> tuple[str, str]:
    """`trainer.precision` for `device` ("cuda", "cpu", ...) given the hardware's answers, and why, in words."""
    if device == "cuda":
        if cuda_capability is None:
            return FP32, "the GPU's compute capability is unknown"
        major, minor = cuda_capability
        if cuda_capability >= (8, 0):
            return BF16, f"the GPU (compute capability {major}.{minor}) computes in bf16 natively"
        return FP32, f"the GPU (compute capability {major}.{minor}, before 8.0) has no native bf16"
    if device == "cpu":
        found = [name for name in CPU_BF16_FEATURES if cpu_features.get(name)]
        if found:
            return BF16, f"the CPU computes in bf16 natively ({', '.join(found)})"
        return (
            FP32,
            f"the CPU has no native bf16 (none of {', '.join(CPU_BF16_FEATURES)}): it would be emulated",
        )
    return FP32, f"bf16 on {device} is not measured here"


def cpu_capabilities() -> dict[str, Any]:
    """The CPU's features: torch's own report where it has one (torch.cpu.get_capabilities, recent versions),
    else the flags of /proc/cpuinfo (Linux); empty where neither answers."""
    if hasattr(torch.cpu, "get_capabilities"):
        return dict(torch.cpu.get_capabilities())
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    flags = next((line.split(":", 1)[1] for line in lines if line.startswith(("flags", "Features"))), "")
    return dict.fromkeys(flags.split(), True)
