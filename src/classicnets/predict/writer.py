"""Predictions for every input below a path, written to a CSV: `python predict.py ckpt_path=… input=…`.

Nothing is lost: the CSV is written to a temporary file next to `output` and renamed onto it when every row is
in, an existing `output` is replaced only with `overwrite=True`, and an input or the checkpoint never is.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from classicnets.errors import ConfigError
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
    overwrite: bool = False,
) -> Path:
    """Write `input,prediction,probability` rows for every input below `input_path` to the CSV `output`.

    Rows are flushed a batch at a time into the temporary file, so an unreadable input or a Ctrl-C stops the
    run without losing those before it: the error names the file that holds them.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be a whole number of at least 1")
    input_path, output = Path(input_path).expanduser(), Path(output).expanduser()
    if not input_path.exists():
        raise PredictError(f"input {input_path} does not exist")
    _refuse_to_replace(output, {"input": input_path, "checkpoint": Path(ckpt_path).expanduser()}, overwrite)
    chosen = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device == "auto"
        else torch.device(device)
    )
    predictor = predictor_for(load_checkpoint(ckpt_path), chosen, beam_width)
    items = predictor.inputs(input_path)
    log.info(
        "checkpoint  %s\ninputs      %d below %s\ndevice      %s", ckpt_path, len(items), input_path, chosen
    )
    if output.exists() and any(isinstance(item, Path) and _same(item, output) for item in items):
        raise PredictError(f"output={output} is one of the inputs: predict never writes over its inputs")
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    partial, written = Path(name), 0
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o666 & ~umask)  # the permissions a plain open() gives, not mkstemp's owner-only ones
    try:
        with open(handle, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(COLUMNS)
            shown = (
                len(items) >= PROGRESS_FROM and sys.stderr.isatty()
            )  # a bar only where it redraws in place
            with tqdm(total=len(items), unit="input", disable=not shown) as progress:
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
                        raise PredictError(f"{error}\n{_kept(written, partial, 'before it')}") from error
        os.replace(partial, output)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_kept(written, partial, "made so far")) from None
    finally:
        if written == 0:
            partial.unlink(missing_ok=True)
    return output


def _refuse_to_replace(output: Path, protected: dict[str, Path], overwrite: bool) -> None:
    """An input or the checkpoint is never written over; an existing output only with `overwrite`."""
    for role, path in protected.items():
        if _same(output, path):
            raise PredictError(
                f"output={output} is the {role} ({path}): predict never writes over its inputs. Choose another "
                "output=…, e.g. predictions.csv"
            )
    if output.is_dir():
        raise PredictError(
            f"output={output} is a folder: give a file name, e.g. output={output / 'predictions.csv'}"
        )
    if output.exists() and not overwrite:
        raise PredictError(f"{output} exists: pass overwrite=true to replace it, or choose another output=…")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def _kept(written: int, partial: Path, which: str) -> str:
    if written == 0:
        return "No prediction was written."
    return f"The {written} predictions {which} are in {partial} (the output file was left as it was)."
