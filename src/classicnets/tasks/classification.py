"""Classification of images or sequences by any backbone that maps a batch of inputs to logits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from classicnets.tasks.base import LRSchedule, OptimizerFactory, Task, WeightedMean

MetricFactory = Callable[..., Metric]
# the metrics of checkpoints written before `task.metrics` existed: conf/task/classification.yaml lists the rest
ACCURACY_ONLY: dict[str, MetricFactory] = {
    "acc": partial(MulticlassAccuracy, average="micro", validate_args=False)
}


def applicable_metrics(metrics: Mapping[str, MetricFactory], num_classes: int) -> list[str]:
    """The metrics that say something with `num_classes` classes: a top-k accuracy needs more than k classes."""
    keywords = {name: getattr(make, "keywords", {}) for name, make in metrics.items()}
    return [name for name in metrics if keywords[name].get("top_k", 1) < num_classes]


def augmented_logits(
    net: nn.Module, images: torch.Tensor, flip: bool = False, shift: int = 0
) -> torch.Tensor:
    """The logits of a batch of images averaged over views of it: test-time augmentation (none: `net(images)`).

    `flip` averages each image with its left-right mirror image (for classes that look the same mirrored,
    CIFAR-10's, not digits). `shift` > 0 also takes the images moved by `shift` pixels up-left and down-right
    (reflect-padded), each with the same flip, weighted ½ unmoved, ¼ each moved: the fast CIFAR-10 recipes'
    test-time augmentation (Keller Jordan's airbench). The views disagree on the uncertain images, where
    averaging them gains accuracy; the cost is one forward pass per view (2 with `flip`, 3 or 6 with `shift`).
    """
    if not (flip or shift):
        return net(images)
    if not (isinstance(images, torch.Tensor) and images.is_floating_point() and images.dim() == 4):
        raise ValueError(
            "test-time augmentation moves and mirrors images (batches of shape N×C×H×W); this run's inputs are "
            f"{getattr(images, 'shape', type(images).__name__)}: set task.test_time_flip=false "
            "task.test_time_shift=0"
        )

    def views(batch: torch.Tensor) -> torch.Tensor:
        return (net(batch) + net(batch.flip(-1))) / 2 if flip else net(batch)

    logits = views(images)
    if shift:
        height, width = images.shape[-2:]
        padded = F.pad(images, (shift,) * 4, mode="reflect")
        moved = views(padded[..., :height, :width]) + views(padded[..., 2 * shift :, 2 * shift :])
        logits = logits / 2 + moved / 4
    return logits


class ClassificationTask(Task):
    """Cross-entropy (optionally label-smoothed), scored by the torchmetrics of `metrics`.

    `metrics` maps a name to a metric factory (a Hydra partial) that receives `num_classes`; each is logged as
    `val/<name>` and `test/<name>` (conf/task/classification.yaml: accuracy, macro F1, top-5 accuracy; `acc` is
    required, `val/acc_best` tracks it). Also logs `train/loss`, `train/acc`, `val/loss` and `test/loss`; at
    test time it writes the confusion matrix and the misclassified examples to TensorBoard. `test_time_flip` and
    `test_time_shift` validate and test on the logits averaged over mirrored and moved views of each image
    (`augmented_logits`).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: LRSchedule | None = None,
        metrics: Mapping[str, MetricFactory] | None = None,
        label_smoothing: float = 0.0,
        num_examples: int = 32,
        test_time_flip: bool = False,
        test_time_shift: int = 0,
    ) -> None:
        super().__init__(net, optimizer, scheduler)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "metrics"], logger=False)
        metrics = ACCURACY_ONLY if metrics is None else metrics
        if "acc" not in metrics:
            raise ValueError(
                f"task.metrics must include acc (val/acc_best tracks it), got {', '.join(metrics)}"
            )
        self.metric_names = applicable_metrics(metrics, num_classes)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.num_examples = num_examples
        self.test_time_flip = test_time_flip
        self.test_time_shift = test_time_shift
        self.val_metrics, self.test_metrics = (
            MetricCollection(
                {name: metrics[name](num_classes=num_classes) for name in self.metric_names}, prefix=p
            )
            for p in ("val/", "test/")
        )
        self.val_loss, self.test_loss = WeightedMean(), WeightedMean()
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in checkpoints: a resumed run remembers its best epoch
        self.confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)
        self.misclassified: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    @property
    def summary_metrics(self) -> tuple[str, ...]:
        """Shown in TensorBoard's HPARAMS tab next to the run's hyperparameters."""
        names = self.metric_names
        return ("val/acc_best", *(f"val/{n}" for n in names), *(f"test/{n}" for n in names), "test/loss")

    def _step(
        self, batch: tuple[Any, torch.Tensor], evaluating: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        if evaluating:
            logits = augmented_logits(self.net, inputs, self.test_time_flip, self.test_time_shift)
        else:
            logits = self(inputs)
        loss = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        return loss, logits, targets

    def training_step(self, batch: tuple[Any, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits, targets = self._step(batch)
        # the training loop only tracks accuracy: F1 and top-5 every step would cost time for no use
        self.log_training_step(loss, len(targets), acc=(logits.argmax(1) == targets).sum())
        return loss

    def validation_step(self, batch: tuple[Any, torch.Tensor], batch_idx: int) -> None:
        loss, logits, targets = self._step(batch, evaluating=True)
        self.val_loss(loss, weight=len(targets))
        self.val_metrics.update(logits, targets)
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict(metrics, prog_bar=True)
        if not self.trainer.sanity_checking:  # a few batches before training (or after a resume) are no epoch
            self.val_acc_best(metrics["val/acc"])
            self.log("val/acc_best", self.val_acc_best.compute())

    def test_step(self, batch: tuple[Any, torch.Tensor], batch_idx: int) -> None:
        loss, logits, targets = self._step(batch, evaluating=True)
        self.test_loss(loss, weight=len(targets))
        self.test_metrics.update(logits, targets)
        self.confusion.update(logits, targets)
        self.log("test/loss", self.test_loss, on_epoch=True)
        self._keep_misclassified(batch[0], logits.argmax(1), targets)

    def on_test_epoch_start(self) -> None:
        self.misclassified = []

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()
        # under DDP the compute is collective: every rank takes part, rank 0 draws
        confusion = self.confusion.compute().cpu()
        writer = self.tensorboard
        if writer is not None and self.trainer.is_global_zero:
            from classicnets.tasks.visuals import log_confusion_matrix, log_examples

            class_names = self._class_names()
            log_confusion_matrix(writer, confusion, class_names, self.global_step)
            log_examples(writer, self.misclassified, class_names, self.global_step, self.trainer.datamodule)
        self.confusion.reset()

    def _keep_misclassified(self, inputs: Any, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        room = self.num_examples - len(self.misclassified)
        if room <= 0 or not isinstance(inputs, torch.Tensor):
            return
        wrong = (predictions != targets).nonzero().flatten()[:room].cpu()
        self.misclassified += [
            (inputs[i].detach().cpu(), predictions[i].cpu(), targets[i].cpu()) for i in wrong.tolist()
        ]

    def _class_names(self) -> list[str]:
        names = getattr(self.trainer.datamodule, "classes", None)
        return list(names) if names else [str(i) for i in range(self.num_classes)]
