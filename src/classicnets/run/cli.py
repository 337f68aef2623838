"""What train.py, eval.py and predict.py share around Hydra: an expected error (`UserError`) ends as one line
`error: <message>` with exit status 2, a Ctrl-C as `interrupted` with status 130, both without a traceback;
`HYDRA_FULL_ERROR=1` keeps the traceback, and any other exception keeps it always.

Cheap to import (no torch): the entry points load it before Hydra composes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from classicnets.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, ConfigError, UserError
from classicnets.run.shutdown import exit_without_teardown


def full_error() -> bool:
    """Whether the user asked for every traceback (Hydra's own switch)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def user_error(error: BaseException) -> UserError | None:
    """The `UserError` behind `error`: itself, or what a constructor raised inside Hydra's `instantiate`."""
    if isinstance(error, InstantiationException) and isinstance(error.__cause__, UserError):
        return error.__cause__
    return error if isinstance(error, UserError) else None


@contextmanager
def expected_errors_reported() -> Iterator[None]:
    """Turn a `UserError` into `error: <message>` and exit status 2, and a Ctrl-C that reached this far into
    `interrupted` and 130. A Ctrl-C's message (`KeyboardInterrupt("…")`) says what was kept."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        if full_error():
            raise
        print(f"interrupted (Ctrl-C){f': {interrupt}' if str(interrupt) else ''}", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as error:
        expected = user_error(error)
        if expected is None or full_error():
            raise
        print(f"error: {expected}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None


def run(main: Callable[[], object], config_dir: Path) -> None:
    """Run a `hydra.main` function after the checks Hydra's own messages leave unclear; once it has returned,
    end the process without the interpreter's teardown (`shutdown.exit_without_teardown`)."""
    with expected_errors_reported():
        check_group_lists(sys.argv[1:], config_dir)
    main()
    exit_without_teardown()  # the run's files are complete: skip the interpreter's teardown


def check_group_lists(arguments: list[str], config_dir: Path) -> None:
    """`regularization=[dropout,mixup]`: Hydra says only "Could not load 'regularization/mixup'" for an unknown
    option inside a list; name the group's options, as Hydra does for a single one. Left to Hydra when other
    config folders are searched (`--config-dir`, `hydra.searchpath`), where the options are not all here."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if any(
        a.startswith(("-cd", "--config-dir", "-cp", "--config-path", "hydra.searchpath")) for a in arguments
    ):
        return
    lines = [a for a in arguments if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except HydraException:
        return  # Hydra reports a malformed override itself
    for override in overrides:
        group = override.key_or_group
        folder = config_dir / group
        if override.is_delete() or group.startswith("hydra") or not folder.is_dir():
            continue
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        for value in values:
            unknown = [v for v in value if str(v) not in options] if isinstance(value, list) else []
            if unknown:
                raise ConfigError(
                    f"{override.input_line}: {', '.join(map(repr, unknown))} is not an option of '{group}'. "
                    f"Available options in '{group}': {', '.join(options)}"
                )


class ChecksBeforeTheRun(Callback):
    """The checks a single training run makes before Hydra creates its directory and writes its `.hydra/` and
    log there (a Hydra callback, conf/train.yaml): config values that cannot work, and a directory that holds an
    earlier run (`run/output_dir.py`). A refused command leaves no trace. Sweeps decide per job instead
    (`sweeps/jobs.py`)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from classicnets.run.output_dir import claim_run_dir
        from classicnets.run.validate import check_config

        with expected_errors_reported():
            check_config(config)
            HydraConfig.instance().set_config(config)  # what `hydra.run.dir`'s `${hydra:runtime.cwd}` reads
            claim_run_dir(
                config.hydra.run.dir,
                resume=config.get("resume"),
                ckpt_path=config.get("ckpt_path"),
                overwrite=bool(config.get("overwrite")),
                hydra_written=False,
            )
