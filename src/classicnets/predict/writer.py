"""Predictions for every input below a path, written to a CSV: `python predict.py ckpt_path=… input=…`."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from classicnets.predict.predictors import PredictError, predictor_for
from classicnets.run.checkpoints import load_checkpoint

COLUMNS = ("input", "prediction", "probability")
PROGRESS_FROM = (
    1000  # inputs from which a progress bar is shown (on a terminal: in a file it is carriage returns)
)

log = logging.getLogger(__name__)


def predict(
    ckpt_path: str | Path,
    input_path: str | Path,
    output: str | Path,
    batch_size: int = 256,
    device: str = "auto",
    beam_width: int = 1,
) -> Path:
    """Write `input,prediction,probability` rows for every input below `input_path` to the CSV `output`.

    Rows are flushed a batch at a time, so an unreadable input stops the run without losing those before it.
    """
    chosen = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device == "auto"
        else torch.device(device)
    )
    input_path, output = Path(input_path).expanduser(), Path(output).expanduser()
    if not input_path.exists():
        raise PredictError(f"input {input_path} does not exist")
    predictor = predictor_for(load_checkpoint(ckpt_path), chosen, beam_width)
    items = predictor.inputs(input_path)
    log.info(
        "checkpoint  %s\ninputs      %d below %s\ndevice      %s", ckpt_path, len(items), input_path, chosen
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        written = 0
        with tqdm(
            total=len(items), unit="input", disable=len(items) < PROGRESS_FROM or not sys.stderr.isatty()
        ) as progress:
            for start in range(0, len(items), batch_size):
                batch = items[start : start + batch_size]
                prepared, error = [], None
                for item in batch:
                    try:
                        prepared.append(predictor.prepare(item))
                    except (ValueError, OSError) as failure:
                        error = failure
                        break
                if prepared:
                    rows = predictor(prepared)
                    done = zip(batch[: len(rows)], rows, strict=True)
                    writer.writerows((str(item), label, f"{p:.6f}") for item, (label, p) in done)
                    file.flush()
                    written += len(rows)
                    progress.update(len(rows))
                if error is not None:
                    raise PredictError(
                        f"{error}\nThe {written} predictions before it are in {output}."
                    ) from error
    return output
