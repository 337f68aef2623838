"""Evaluate a checkpoint on the test split: `python eval.py ckpt_path=logs/runs/.../checkpoints/last.ckpt`."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from classicnets.run.cli import expected_errors_reported, run
from classicnets.run.config import register, user_code_importable

register()
user_code_importable()


def _allow_run_overrides(argv: list[str]) -> list[str]:
    # The checkpoint's saved data and task configs are the base, so `data.<key>=…` and `task.<key>=…` may name
    # keys eval.yaml does not have.
    return [f"++{arg}" if arg.startswith(("data.", "task.")) else arg for arg in argv]


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from classicnets.run import console
    from classicnets.run.pipeline import evaluate

    console.setup()  # what the console shows: classicnets/run/console.py

    with expected_errors_reported():
        evaluate(cfg)


if __name__ == "__main__":
    sys.argv[1:] = _allow_run_overrides(sys.argv[1:])
    run(main, Path(__file__).with_name("conf"))
