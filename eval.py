"""Evaluate a checkpoint on the test split: `python eval.py ckpt_path=logs/runs/.../checkpoints/last.ckpt`."""

import sys

import hydra
from omegaconf import DictConfig

from classicnets.run.config import register, user_code_importable
from classicnets.run.shutdown import exit_without_teardown

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

    evaluate(cfg)


if __name__ == "__main__":
    sys.argv[1:] = _allow_run_overrides(sys.argv[1:])
    main()
    exit_without_teardown()  # the run's files are complete: skip the interpreter's teardown
