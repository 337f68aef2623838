"""LightningModules, one per task type, each wrapping any backbone `nn.Module`."""

from classicnets.tasks.base import Task
from classicnets.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask", "Task"]
