"""Train a model: `python train.py model=alexnet data=cifar10` (see README for sweeps)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from classicnets.run.cli import expected_errors_reported, run
from classicnets.run.config import register, user_code_importable

register()
user_code_importable()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # imported here so that --help and --cfg answer before torch and Lightning load
    from classicnets.run import console
    from classicnets.run.pipeline import train
    from classicnets.run.tune import tune
    from classicnets.sweeps.jobs import run_job

    console.setup()  # what the console shows: classicnets/run/console.py

    # status.json in the run directory; under -m a failed job returns None and the sweep goes on
    with expected_errors_reported():
        metrics = run_job(cfg, tune if cfg.get("tune") else train)
    optimized = cfg.get("optimized_metric")
    return metrics.get(optimized) if metrics and optimized else None


if __name__ == "__main__":
    run(main, Path(__file__).with_name("conf"))
