"""What the entry points print: each message once, no advertisements or dependency deprecation warnings, a
header, one line per epoch where the output is not a terminal (an in-place bar where it is), a closing block whose
commands run, and under `-m` one line per job and the report's path. Asserted on real runs, never on timings."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import warnings
from collections import Counter
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from classicnets.run import console
from tests.conftest import ROOT, run_script

# what a user's shell has: no PYTHONWARNINGS (run_script ignores warnings by default)
USER_ENV = {"PYTHONWARNINGS": ""}
# `python train.py` as it comes, cut short: offline, the data falls back to the shipped sample, loudly
TINY = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
)
# what must never reach the console of a run
NOISE = (
    "Tip:",
    "litlogger",
    "LitLogger",
    "deprecated",
    "DeprecationWarning",
    "FLOPs",
    "log_every_n_steps",
    "INFO:",
)


def _repeated(output: str) -> list[str]:
    return [line for line, n in Counter(output.splitlines()).items() if n > 1 and line.strip()]


def _assert_clean(output: str) -> None:
    assert "\r" not in output, "carriage returns in output that is not a terminal"
    assert _repeated(output) == [], output
    assert not [word for word in NOISE if word in output], output


def test_a_run_to_a_file_prints_a_report(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_script("train.py", *TINY, f"hydra.run.dir={run}", cwd=tmp_path, env=USER_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    _assert_clean(output)
    lines = result.stdout.splitlines()
    first_epoch = next(n for n, line in enumerate(lines) if line.startswith("epoch "))
    header = {line.split("  ")[0] for line in lines[:first_epoch]}  # the rows before training
    assert {"model", "data", "device", "seed", "run directory"} <= header, result.stdout
    assert any(line.startswith("data") and "mnist (sample)" in line for line in lines), result.stdout
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"], result.stdout
    assert all("val/acc" in line and "train/loss" in line and "samples/s" in line for line in epochs)
    # the closing block ends the output: the test metrics, the best checkpoint, the next commands
    closing = result.stdout[result.stdout.rindex("test/acc") :]
    assert closing.splitlines()[1].startswith("best checkpoint  run/checkpoints/best-epoch"), closing
    commands = [line.split("    #")[0].strip() for line in closing.splitlines() if line.startswith("  ")]
    assert [c.split()[0:2] for c in commands] == [
        ["tensorboard", "--logdir"],
        ["python", "eval.py"],
        ["python", "predict.py"],
        ["python", "train.py"],
    ], closing
    assert commands[3].endswith("hydra.run.dir=run resume=auto")
    # the log file says the same as the console
    logged = (run / "train.log").read_text()
    assert all(line in logged for line in [*epochs, *commands])

    # the files are complete although the process skipped the interpreter's teardown
    metrics = json.loads((run / "metrics.json").read_text())
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "test/acc" in events.Tags()["scalars"] and "test/confusion_matrix" in events.Tags()["images"]

    # the printed eval command runs from where train.py ran, with the same layout, on the same checkpoint
    evaluated = run_script(
        *commands[1].split()[1:],
        "trainer.limit_test_batches=1",
        "hydra.run.dir=eval",
        cwd=tmp_path,
        env=USER_ENV,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    _assert_clean(evaluated.stdout + evaluated.stderr)
    assert "test/acc" in evaluated.stdout and "metrics  eval/metrics.json" in evaluated.stdout
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_a_terminal_gets_a_bar_redrawn_in_place(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns: a window
    env = {**os.environ, **USER_ENV}
    command = [sys.executable, str(ROOT / "train.py"), *TINY, f"hydra.run.dir={tmp_path / 'run'}"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=terminal, stderr=terminal)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=600) == 0
    output = b"".join(chunks).decode()
    # a terminal ends lines with \r\n; a bar redrawn in place returns the carriage alone
    assert re.search(r"\r(?!\n)", output) and "Epoch 1: 100%" in output, output[-3000:]
    assert not re.search(r"^epoch 1/2 ", output, re.MULTILINE)  # the bar, not the lines meant for files
    assert "python eval.py ckpt_path=" in output


@pytest.mark.slow
def test_a_sweep_prints_one_line_per_job_and_its_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "model.activation=relu,tanh",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=USER_ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    _assert_clean(output)
    jobs = [line for line in result.stdout.splitlines() if "completed in" in line]
    assert len(jobs) == 2 and all("val/acc_best" in line and "test/acc" in line for line in jobs), output
    assert jobs[1].startswith("sweep/1 [model.activation=tanh ") and "]: completed in" in jobs[1]
    assert not [line for line in result.stdout.splitlines() if line.startswith(("epoch ", "model ", "next:"))]
    assert "report of the sweep: sweep/report.md" in result.stdout
    assert (sweep / "report.md").is_file() and (sweep / "report.csv").is_file()
    assert "epoch 2/2" in (sweep / "0" / "train.log").read_text()  # the job's details are in its log


def test_dependencies_deprecation_warnings_are_hidden_unless_asked() -> None:
    def shown(module: str, category: type[Warning], show: bool) -> bool:
        with warnings.catch_warnings(record=True) as caught:
            warnings.resetwarnings()
            console.quiet_dependencies(show_deprecations=show)
            warnings.warn_explicit("old API", category, "file.py", 1, module=module)
        return bool(caught)

    if sys.warnoptions:
        pytest.skip("python -W or PYTHONWARNINGS sets the warning rules")
    assert not shown("lightning.pytorch.utilities._pytree", FutureWarning, show=False)
    assert not shown("torch.utils.data", DeprecationWarning, show=False)
    assert shown("torch.utils.data", DeprecationWarning, show=True)  # debug= configs
    assert shown("classicnets.models", DeprecationWarning, show=False)  # ours, and the user's, stay
    assert shown("mynets", FutureWarning, show=False)
    assert shown("lightning.pytorch.trainer", UserWarning, show=False)  # hints are not deprecations


def test_console_formatter_names_warnings_and_errors_only() -> None:
    formatter = console.ConsoleFormatter()
    record = logging.LogRecord("x", logging.INFO, "f.py", 1, "epoch %d", (1,), None)
    assert formatter.format(record) == "epoch 1"
    record.levelno, record.levelname = logging.WARNING, "WARNING"
    assert formatter.format(record) == "warning: epoch 1"
