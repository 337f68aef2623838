"""What the machine offers a run, asked without importing torch where that matters (the launching process of a GPU
sweep must not start CUDA)."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

GPU_COUNT_VARIABLE = "CLASSICNETS_NUM_GPUS"
NVML_CUDA_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def gpu_count() -> int:
    """GPUs a GPU sweep spreads over: $CLASSICNETS_NUM_GPUS, else the ids in CUDA_VISIBLE_DEVICES, else the
    GPUs `nvidia-smi` lists. Asked without importing torch: CUDA must not start in the launching process.
    """
    if GPU_COUNT_VARIABLE in os.environ:
        return int(os.environ[GPU_COUNT_VARIABLE])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([i for i in visible.split(",") if i.strip()])
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return sum(line.startswith("GPU ") for line in listing.splitlines())


def skip_futile_nvml_probe() -> None:
    """Drops Lightning's `PYTORCH_NVML_BASED_CUDA_CHECK=1` where the NVML library is missing.

    Lightning sets it so that `torch.cuda.is_available()` asks NVML, which does not initialise CUDA before
    processes fork. Without NVML (no NVIDIA driver) torch falls back to the CUDA runtime's answer anyway, after
    failing to load the library again on every call, and torch's optimizers make that call on every step: about
    0.1 ms, half a per cent of a LeNet-5 step on a CPU. Where it is dropped, the answer is the same without it.
    """
    if os.environ.get(NVML_CUDA_CHECK) != "1":
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ[NVML_CUDA_CHECK]


def launched_rank() -> int:
    """The global rank this process was started as: 0 for the process the user started, others for the DDP
    processes Lightning's launchers (subprocess script, torchrun, SLURM) start, read from their variables."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0
