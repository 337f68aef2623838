"""Config values checked before anything is built or read: a value that cannot work fails at once with a
`ConfigError` naming its key, not as a torch or Lightning traceback after the data has loaded."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from typing import Any

from omegaconf import DictConfig

from classicnets.errors import ConfigError

RESUME_MODES = (None, "auto")
NAN_POLICIES = ("stop", "skip")  # what a NaN/inf training loss does (run.callbacks.FiniteLoss)


def check_config(cfg: DictConfig, only: tuple[str, ...] = ()) -> None:
    """Fail with every unusable value of a train config named, before data loads; `only` limits the check to
    keys with those prefixes (eval checks the data keys of a checkpoint's rebuilt config)."""
    checks = [(key, check) for key, check in CHECKS if not only or key.startswith(only)]
    problems = [problem for key, check in checks if (problem := _check(cfg, key, check))]
    if not only and cfg.get("ckpt_path") and cfg.get("resume"):
        problems.append("ckpt_path and resume: give either ckpt_path=FILE or resume=auto, not both")
    if problems:
        raise ConfigError("\n".join(problems))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _at_least_one(value: Any) -> str | None:
    return None if _whole(value) and value >= 1 else "must be a whole number of at least 1"


def _optional_at_least_one(value: Any) -> str | None:
    return None if value is None else _at_least_one(value)


def _fraction(value: Any) -> str | None:
    return None if _number(value) and 0 < value < 1 else "must be a fraction strictly between 0 and 1"


def _positive(value: Any) -> str | None:
    return None if _number(value) and value > 0 else "must be a number above 0"


def _integer(value: Any) -> str | None:
    return None if _whole(value) else "must be a whole number (e.g. seed=7)"


def _max_epochs(value: Any) -> str | None:
    # Lightning: None is 1000 epochs unless max_steps says otherwise, -1 is no limit (max_steps then decides)
    if value is None or (_whole(value) and (value >= 1 or value == -1)):
        return None
    if value == 0:
        return (
            "must be at least 1: with 0 the run would test an untrained model (-1 means no limit, with "
            "trainer.max_steps=N as the budget)"
        )
    return "must be a whole number of at least 1, or -1 for no limit"


def _max_steps(value: Any) -> str | None:
    if value is None or (_whole(value) and (value >= 1 or value == -1)):
        return None
    return "must be a whole number of at least 1, or -1 for no limit (the default)"


def _image_size(value: Any) -> str | None:
    if value is None or (_whole(value) and value >= 1):
        return None
    return "must be the side in pixels (at least 1), or null to keep the images' own size"


def _one_of(choices: tuple) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(map(str, choices))}"


CHECKS: tuple[tuple[str, Callable[[Any], str | None]], ...] = (
    ("seed", _integer),
    ("data.batch_size", _at_least_one),
    ("data.eval_batch_size", _at_least_one),
    ("data.val_fraction", _fraction),
    ("data.image_size", _image_size),
    ("data.max_length", _optional_at_least_one),
    ("optimizer.lr", _positive),
    ("trainer.max_epochs", _max_epochs),
    ("trainer.max_steps", _max_steps),
    ("resume", _one_of(RESUME_MODES)),
    ("nan_policy", _one_of(NAN_POLICIES)),
)


def _check(cfg: DictConfig, key: str, check: Callable[[Any], str | None]) -> str | None:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return None  # a config without the key (eval, another data module) has nothing to check
        node = node[part]
    problem = check(node)
    return f"{key}={_shown(node)}: {problem}" if problem else None


def _shown(value: Any) -> str:
    return "null" if value is None else str(value)
