"""LightningModules, one per task type, each wrapping any backbone `nn.Module`."""

from classicnets.tasks.base import LRSchedule, Task
from classicnets.tasks.classification import ClassificationTask
from classicnets.tasks.seq2seq import Seq2SeqTask

__all__ = ["ClassificationTask", "LRSchedule", "Seq2SeqTask", "Task"]
