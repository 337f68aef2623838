"""Figure 6, recurrent: IMDB LSTM sequences/s with length bucketing against random batches.

`model=lstm`, batch 64, reviews cut at 400 tokens, the model step included; `data.bucketing=true` (the
default) against random batches. Both pad per batch (the model masks padding rather than packing:
docs/recurrent.md says why). Skipped when the data directory has no aclImdb/. No target.
"""

from __future__ import annotations

import time

import torch
from core import Bench, Record, alternate, figure

from classicnets.run.build import build

NUMBER = 6
TITLE = "Recurrent"
NEEDS = "aclImdb"


def run(bench: Bench) -> Record:
    print("figure 6: IMDB LSTM", flush=True)
    datamodule, task = build(bench.config(["data=imdb", "model=lstm", "data.source=full"]))
    optimizer = task.optimizer_factory(params=task.net.parameters())
    batches = bench.batches(30)

    def throughput(bucketing: bool) -> float:
        datamodule.bucketing = bucketing
        task.net.train()
        start, seen = time.perf_counter(), 0
        for step, (inputs, targets) in enumerate(datamodule.train_dataloader()):
            loss = torch.nn.functional.cross_entropy(task.net(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(targets)
            if step + 1 == batches:
                break
        return seen / (time.perf_counter() - start)

    runs = alternate(
        {"bucketing": lambda: throughput(True), "random batches": lambda: throughput(False)}, bench.reps
    )
    return figure(
        NUMBER,
        "IMDB LSTM (max_length 400, batch 64), packed sequences",
        "sequences/s",
        runs,
        {"bucketing / random": ("bucketing", "random batches")},
        batches=batches,
    )
