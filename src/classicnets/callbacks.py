"""Callbacks the pipeline adds to every run."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from classicnets import __version__

CHECKPOINT_KEY = "classicnets"


class ConfigInCheckpoint(Callback):
    """Stores the run's resolved config in every checkpoint, so eval/predict rebuild the run from the file alone.

    Plain containers only: checkpoints must load with `torch.load(weights_only=True)`.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CHECKPOINT_KEY] = {"config": self.config, "version": __version__}
