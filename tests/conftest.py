"""Shared test helpers: compose the real configs in-process, or run the real entry points in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from PIL import Image

from classicnets.run.config import register

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
# small, quiet and quick: what every end-to-end test wants unless it says otherwise
# a small MLP on the shipped MNIST sample whose steps draw from the global RNG (dropout, augmentation): a run that
# did not restore or reproduce that generator would diverge
RANDOM_MLP = (
    "model=mlp",
    "model.hidden_sizes=[32]",
    "regularization=[dropout,augment]",
    "data.source=sample",
    "data.batch_size=32",
)
FAST = (
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
    "data.eval_batch_size=256",
)


def compose_config(output_dir: Path, *overrides: str, config_name: str = "train") -> DictConfig:
    """The config `train.py`/`eval.py` would get, with every path inside `output_dir`."""
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        if not any(o.startswith("paths.data_dir=") for o in overrides):
            cfg.paths.data_dir = str(output_dir / "data")  # empty: MNIST falls back to the shipped sample
    return cfg


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str, config_name: str = "train") -> DictConfig:
        fast = FAST if config_name == "train" else FAST[:3]
        return compose_config(tmp_path, *fast, *overrides, config_name=config_name)

    return make


def as_in_a_terminal() -> None:
    """`preexec_fn` of a child process: Ctrl-C has its default action, as for a command typed in a terminal, also
    where the suite itself runs as a background job (which a shell starts with SIGINT ignored, and children
    inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_script(
    script: str,
    *args: str,
    cwd: Path = ROOT,
    timeout: float = 600,
    full_error: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run one of the repository's entry points as a user would in a terminal; the output is kept for assertions.

    `full_error=False` leaves out `HYDRA_FULL_ERROR=1`, as a user's shell does: expected errors are then one line.
    Warnings are ignored unless `env` says otherwise (`{"PYTHONWARNINGS": ""}`: what a user's shell has).
    """
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "HYDRA_FULL_ERROR": "1" if full_error else "0",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=as_in_a_terminal,
    )


def make_image_folder(
    root: Path, per_class: int = 10, size: int = 12, suffix: str = ".png", seed: int = 0
) -> Path:
    """`root/<class>/<n><suffix>`: noisy bright, dark and striped RGB images, three classes any model can learn."""
    rng = np.random.default_rng(seed)
    stripes = np.tile(np.array([40, 215], dtype=np.uint8), size // 2 + 1)[:size]
    base = {
        "bright": np.full((size, size), 200),
        "dark": np.full((size, size), 50),
        "striped": stripes[None, :],
    }
    for name, pattern in base.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            noise = rng.integers(-25, 26, (size, size, 3))
            pixels = np.clip(pattern[..., None] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{n:03d}{suffix}")
    return root
