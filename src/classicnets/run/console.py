"""What a run prints: each message once, a header before training, its progress, and a closing block with the
results and the commands to run next.

Every line goes through logging, so that the console and the run's log file (`<run dir>/<job>.log`, Hydra's job
logging in conf/hydra/default.yaml) say the same. `ConsoleFormatter` prints a message alone, a warning or an
error after its level. Progress (`callbacks.progress_bar`) is an in-place bar where standard output is a terminal
and one line per epoch where it is not (a file, CI, a sweep job): a bar redrawn in place is kilobytes of carriage
returns in a file. Under `-m` the console shows one line per finished job and the warnings; the rest is in each
job's log file. Nothing here imports torch: Hydra's logging config imports this module before the command line is
parsed.
"""

from __future__ import annotations

import logging
import re
import shlex
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

# Hydra's console handler (conf/hydra/default.yaml names it); the file handler is left as it is
CONSOLE_HANDLER = "console"
# the logger whose lines a sweep's console keeps: one per finished job, and where the report is
SWEEP_LOGGER = "classicnets.sweep"
# dependencies whose deprecation warnings are for their own authors, not for someone running train.py
DEPENDENCIES = (
    r"(lightning|lightning_fabric|lightning_utilities|pytorch_lightning|torch|torchvision|torchmetrics|"
    r"tensorboard|hydra|omegaconf|matplotlib|numpy|scipy|PIL|optuna|joblib|submitit|google)(\.|$)"
)
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
# Lightning's lines that say nothing about this run: advertisements, the accelerators found (the header names
# the device used), the precision (the header says it, and why), and the expected end of training (the closing
# block follows)
LIGHTNING_NOISE = re.compile(
    r"💡 Tip:|(GPU|TPU|HPU) available:|Using .* Automatic Mixed Precision|`Trainer.fit` stopped: `max_epochs="
)

log = logging.getLogger(__name__)


class ConsoleFormatter(logging.Formatter):
    """The message alone; a warning or an error after its level (`warning: …`)."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return f"{record.levelname.lower()}: {message}" if record.levelno >= logging.WARNING else message


class _LightningNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not LIGHTNING_NOISE.match(record.getMessage())


class _SweepConsole(logging.Filter):
    """Under `-m`: one line per job and the warnings, each warning once per sweep (the jobs share their data and
    their warnings); everything goes to each job's log file all the same."""

    # the warnings shown by this process: Hydra sets up new handlers for every job it runs here
    shown: ClassVar[set[str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == SWEEP_LOGGER:
            return True
        if record.levelno < logging.WARNING or record.getMessage() in self.shown:
            return False
        self.shown.add(record.getMessage())
        return True


def setup() -> None:
    """The console of an entry point (train.py, eval.py, predict.py), once torch and Lightning are imported: each
    message once, no advertisements, warnings through logging (into the log file too, without the source line),
    the dependencies' deprecation warnings hidden, and under `-m` one line per job."""
    quiet_dependencies(show_deprecations=debugging())
    if logging.getLogger().handlers:  # Hydra's: the console and the run's log file
        warnings.showwarning = _log_warning
    if multirun():
        sweep_console()


def quiet_dependencies(show_deprecations: bool = False) -> None:
    """Each message once, no advertisements, no dependencies' deprecation warnings (`show_deprecations`, a
    `debug=` config, or any `python -W …`/`PYTHONWARNINGS` keeps Python's own rules)."""
    if logging.getLogger().handlers:
        # Lightning (`lightning/__init__.py`, and `lightning.pytorch` when imported before logging was set up) and
        # torchmetrics add a console handler of their own at import, on loggers whose records also reach the
        # root's handlers, which Hydra has set up: every line came twice, once as `INFO: …`.
        for name in (
            "lightning",
            "lightning.pytorch",
            "lightning.fabric",
            "pytorch_lightning",
            "torchmetrics",
        ):
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                logger.removeHandler(handler)
            logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _LightningNoise) for f in logger.filters):
            logger.addFilter(_LightningNoise())
    if sys.warnoptions or show_deprecations:
        return
    for category in DEPRECATIONS:
        warnings.filterwarnings("ignore", category=category, module=DEPENDENCIES)
    # On a small data set (the shipped sample: 36 steps an epoch) Lightning warns that the step loss is logged less
    # than once an epoch; the epoch means are logged every epoch anyway.
    warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")


def _log_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, *_: Any
) -> None:
    # a warning meant for the user (Lightning's hints, the data fallback) reads as its message; others, meant for
    # code, keep their category and where they were raised
    text = str(message)
    if not issubclass(category, UserWarning):
        text = f"{category.__name__}: {text} ({filename}:{lineno})"
    logging.getLogger("py.warnings").warning("%s", text)


def sweep_console() -> None:
    """Under `-m`: the console shows one line per finished job (`sweeps.jobs`) and the warnings."""
    for handler in logging.getLogger().handlers:
        if handler.name == CONSOLE_HANDLER and not any(isinstance(f, _SweepConsole) for f in handler.filters):
            handler.addFilter(_SweepConsole())


def multirun() -> bool:
    """Whether this process runs a job of a `-m` sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def debugging() -> bool:
    """Whether this run chose a `debug=` config, which keeps the dependencies' deprecation warnings visible."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and HydraConfig.get().runtime.choices.get("debug") is not None


# -- progress ---------------------------------------------------------------------------------------------
def epoch_summary(metrics: Mapping[str, Any]) -> str:
    """`train/loss 0.512  val/acc 0.874 … 5,912 samples/s  9.1 s` from the metrics Lightning holds."""
    values = {key: float(value) for key, value in metrics.items() if not key.endswith(("_step", "_epoch"))}
    shown = [f"{key} {values[key]:.4g}" for key in sorted(values) if key.startswith(("train/", "val/"))]
    shown += [f"{key[3:]} lr {values[key]:.3g}" for key in sorted(values) if key.startswith("lr-")]
    if "perf/train_samples_per_s" in values:
        shown.append(f"{values['perf/train_samples_per_s']:,.0f} samples/s")
    if "perf/epoch_s" in values:
        shown.append(f"{values['perf/epoch_s']:.1f} s")
    return "  ".join(shown)


# -- header and closing block -----------------------------------------------------------------------------
def shown_path(path: str | Path) -> str:
    """A path as a command should give it: relative to the working directory when it is below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def data_description(datamodule: Any, name: str | None = None) -> str:
    """`fashion_mnist (full): num_classes 10, channels 1, image_size 28; train 54,000, val 6,000, test 10,000`."""
    name = name or type(datamodule).__name__
    source = getattr(datamodule, "source_used", None)
    sizes = ", ".join(
        f"{key} {value}" for key, value in (getattr(datamodule, "sizes", {}) or {}).items() if value
    )
    splits = ", ".join(
        f"{split} {len(data):,}" for split, data in (getattr(datamodule, "splits", {}) or {}).items()
    )
    return f"{name}{f' ({source})' if source else ''}: {sizes}{f'; {splits}' if splits else ''}"


def run_header(
    model: str, parameters: int, data: str, device: str, precision: str, seed: int | None, output_dir: Path
) -> None:
    """The lines before training: what runs, on what, where its files go."""
    rows = {
        "model": f"{model}, {parameters:,} parameters",
        "data": data,
        "device": f"{device}, precision {precision}",
        **({"seed": str(seed)} if seed is not None else {}),
        "run directory": shown_path(output_dir),
    }
    _block(rows)


def closing_block(metrics: Mapping[str, float], rows: Mapping[str, str], commands: Mapping[str, str]) -> None:
    """The results, then the commands to run next, each on its own line so that it can be copied."""
    shown = [key for key in sorted(metrics) if key.startswith("test/")]
    shown = shown or [key for key in sorted(metrics) if key.startswith("val/")]
    lines = ["", "  ".join(f"{key} {metrics[key]:.4f}" for key in shown) if shown else "no metrics"]
    width = max(map(len, rows), default=0)
    lines += [f"{name:<{width}}  {value}" for name, value in rows.items()]
    if commands:
        lines.append("next:")
        lines += [f"  {command}{f'    # {why}' if why else ''}" for command, why in commands.items()]
    log.info("%s", "\n".join(lines))


def _block(rows: Mapping[str, str]) -> None:
    width = max(map(len, rows))
    log.info("%s", "\n".join(f"{name:<{width}}  {value}" for name, value in rows.items()))


def command(script: str, *arguments: str | Path) -> str:
    """A command line to print: `python <script> key=value …`, each argument quoted for the shell."""
    return shlex.join(["python", script, *map(str, arguments)])


def device_name(root_device: Any) -> str:
    """`cpu (2 threads)`, or `cuda:0 (NVIDIA H200)`."""
    import torch

    if root_device.type == "cuda":
        return f"{root_device} ({torch.cuda.get_device_name(root_device)})"
    if root_device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads > 1 else ''})"
    return str(root_device)
