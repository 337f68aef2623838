"""Sequence-to-sequence learning: teacher-forced cross-entropy, scored on what the model generates on its own."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.text import BLEUScore

from classicnets.data.text.vocab import PAD_INDEX, until_end
from classicnets.tasks.base import LRSchedule, OptimizerFactory, Task, WeightedMean

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class SequenceMetrics(nn.Module):
    """Token accuracy, exact match, BLEU and loss over one split.

    The generated output is compared with the reference position by position (end token included) for token
    accuracy, and as a whole for exact match. BLEU (up to 4-grams) is over target tokens; ids stand in for them,
    which gives the same n-gram counts as the token strings.
    """

    NAMES = ("exact_match", "bleu", "token_acc", "loss")

    def __init__(self) -> None:
        super().__init__()
        self.loss, self.token_acc, self.exact_match = WeightedMean(), WeightedMean(), WeightedMean()
        self.bleu = BLEUScore(n_gram=4)

    def update(self, loss: torch.Tensor, generated: torch.Tensor, references: torch.Tensor) -> None:
        """generated B×T' and references B×T: ids after the begin token, padded with 0 after the end token."""
        length = max(generated.size(1), references.size(1))
        generated = F.pad(generated, (0, length - generated.size(1)), value=PAD_INDEX)
        references = F.pad(references, (0, length - references.size(1)), value=PAD_INDEX)
        real = references != PAD_INDEX
        same = generated == references
        self.loss.update(loss, weight=len(references))
        self.token_acc.update((same & real).sum() / real.sum(), weight=real.sum())
        self.exact_match.update(same.all(dim=1).float())
        # BLEU counts n-grams on the host: one copy of the batch, not one sync per row
        self.bleu.update(
            [" ".join(map(str, until_end(row))) for row in generated.tolist()],
            [[" ".join(map(str, until_end(row)))] for row in references.tolist()],
        )

    def compute(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}/{name}": getattr(self, name).compute() for name in self.NAMES}

    def reset(self) -> None:
        for name in self.NAMES:
            getattr(self, name).reset()


@dataclass
class Example:
    """One sentence kept for TensorBoard: source ids (no padding), reference and output ids (end token
    included when there is one) and the attention weights, a row per output id and a column per source id."""

    source: list[int]
    reference: list[int]
    output: list[int]
    attention: torch.Tensor | None


class Seq2SeqTask(Task):
    """Cross-entropy over target tokens (padding ignored), with any `Seq2Seq`-like backbone that has
    `forward(source, lengths, target_inputs) -> (logits, attention)` and `generate(source, lengths, beam_width)`.

    Validation decodes greedily, test with `beam_width`. Logs `val/*` and `test/*` token_acc, exact_match, bleu
    and loss, `val/exact_match_best`, and writes example translations and attention heatmaps to TensorBoard.
    """

    #: shown in TensorBoard's HPARAMS tab next to the run's hyperparameters
    summary_metrics = (
        "val/exact_match_best",
        "val/exact_match",
        *(f"test/{name}" for name in SequenceMetrics.NAMES),
    )

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: LRSchedule | None = None,
        label_smoothing: float = 0.0,
        beam_width: int = 1,
        num_examples: int = 16,
        num_heatmaps: int = 4,
    ) -> None:
        super().__init__(net, optimizer, scheduler)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.label_smoothing = label_smoothing
        self.beam_width = beam_width
        self.num_examples = num_examples
        self.num_heatmaps = num_heatmaps
        self.val_metrics, self.test_metrics = SequenceMetrics(), SequenceMetrics()
        self.val_exact_match_best = MaxMetric()
        self.val_exact_match_best.persistent(True)  # in checkpoints: a resumed run remembers its best epoch
        self.examples: list[Example] = []

    def _loss(self, batch: Batch) -> torch.Tensor:
        source, lengths, target = batch
        logits, _ = self.net(source, lengths, target[:, :-1])
        return F.cross_entropy(
            logits.flatten(0, 1),
            target[:, 1:].flatten(),
            ignore_index=PAD_INDEX,
            label_smoothing=self.label_smoothing,
        )

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log_training_step(loss, len(batch[0]))
        return loss

    def _evaluate(self, batch: Batch, metrics: SequenceMetrics, beam_width: int) -> None:
        source, lengths, target = batch
        generation = self.net.generate(source, lengths, beam_width=beam_width)
        metrics.update(self._loss(batch), generation.tokens, target[:, 1:])
        self._keep_examples(batch, generation.tokens, generation.attention)

    def on_validation_epoch_start(self) -> None:
        self.examples = []

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, beam_width=1)

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute("val")
        self.val_metrics.reset()
        self.log_dict(metrics, prog_bar=True)
        if not self.trainer.sanity_checking:  # a few batches before training (or after a resume) are no epoch
            self.val_exact_match_best(metrics["val/exact_match"])
            self.log("val/exact_match_best", self.val_exact_match_best.compute())
        self._write_examples("val")

    def on_test_epoch_start(self) -> None:
        self.examples = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, beam_width=self.beam_width)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute("test"))
        self.test_metrics.reset()
        self._write_examples("test")

    def _keep_examples(self, batch: Batch, outputs: torch.Tensor, attention: torch.Tensor | None) -> None:
        source, lengths, target = batch
        wanted = min(len(source), self.num_examples - len(self.examples))
        if wanted <= 0:  # the usual case: the examples were kept from the first batch
            return
        rows = zip(
            source[:wanted].tolist(), lengths[:wanted].tolist(), target[:wanted, 1:].tolist(), strict=True
        )
        kept_outputs = outputs[:wanted].tolist()
        for row, (source_ids, length, reference_ids) in enumerate(rows):
            output = until_end(kept_outputs[row], include_end=True)
            weights = None if attention is None else attention[row, : len(output), :length].cpu()
            reference = until_end(reference_ids, include_end=True)
            self.examples.append(Example(source_ids[:length], reference, output, weights))

    def _write_examples(self, split: str) -> None:
        """The kept examples as text and heatmaps, through the data module's decode helpers (ids alone say
        little)."""
        writer = self.tensorboard
        data = self.trainer.datamodule
        if writer is None or not self.examples or not hasattr(data, "decode_target"):
            return
        if not self.trainer.is_global_zero:  # each process kept its own examples; one set is enough
            return
        from classicnets.tasks.visuals import log_attention, log_translations

        rows = [
            (data.decode_source(e.source), data.decode_target(e.reference), data.decode_target(e.output))
            for e in self.examples
        ]
        log_translations(writer, rows, self.global_step, tag=f"{split}/translations")
        heatmaps = [
            (data.source_tokens(e.source), data.target_tokens(e.output), e.attention)
            for e in self.examples
            if e.attention is not None
        ][: self.num_heatmaps]
        if heatmaps:
            log_attention(writer, heatmaps, self.global_step, tag=f"{split}/attention")
