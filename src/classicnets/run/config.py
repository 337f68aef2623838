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


def user_code_importable() -> None:
    """Let `_target_`s name the user's own modules (`model=custom model._target_=mynets.TinyNet`).

    Python puts the script's folder on `sys.path`, not the folder the command runs in, where `mynets.py` is.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
