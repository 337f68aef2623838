"""OmegaConf resolvers the configs use. Imported by the entry points before Hydra composes (cheap: no torch)."""

import os
import sys

from omegaconf import OmegaConf

from classicnets.run.devices import gpu_count


def register() -> None:
    # "LR /10 at 50% and 75% of training" stays right whatever max_epochs a run chooses; at least 1, since a
    # step size of 0 epochs is undefined
    OmegaConf.register_new_resolver(
        "fraction_of", lambda total, fraction: max(1, int(total * fraction)), replace=True
    )
    # one sweep job per GPU of this machine (conf/launcher/gpus.yaml)
    OmegaConf.register_new_resolver("gpu_count", gpu_count, replace=True)
    # how experiment trackers name and group runs (conf/logger/mlflow.yaml, wandb.yaml)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("run_group", run_group, replace=True)


def run_name(output_dir: str) -> str:
    """What makes this run: its command-line overrides, less where files go (`paths.*`, `hydra.*`); the name of
    its directory when there are none."""
    from hydra.core.hydra_config import HydraConfig

    given = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    chosen = [o for o in given if not o.lstrip("+~").startswith(("paths.", "hydra."))]
    return " ".join(chosen) or os.path.basename(os.path.normpath(output_dir))


def run_group(output_dir: str) -> str:
    """The directory of the `-m` sweep this run is a job of; a single run's own directory."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    return HydraConfig.get().sweep.dir if multirun else output_dir


def user_code_importable() -> None:
    """Let `_target_`s name the user's own modules (`model=custom model._target_=mynets.TinyNet`).

    Python puts the script's folder on `sys.path`, not the folder the command runs in, where `mynets.py` is.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
