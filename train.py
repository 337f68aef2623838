"""Train a model: `python train.py model=alexnet data=cifar10` (see README for sweeps)."""

import hydra
from omegaconf import DictConfig

from classicnets.run.config import register, user_code_importable
from classicnets.run.shutdown import exit_without_teardown

register()
user_code_importable()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # imported here so that --help and --cfg answer before torch and Lightning load
    from classicnets.run import console
    from classicnets.run.pipeline import train
    from classicnets.sweeps.jobs import run_job

    console.setup()  # what the console shows: classicnets/run/console.py

    # status.json in the run directory; under -m a failed job returns None and the sweep goes on
    metrics = run_job(cfg, train)
    optimized = cfg.get("optimized_metric")
    return metrics.get(optimized) if metrics and optimized else None


if __name__ == "__main__":
    main()
    exit_without_teardown()  # the run's files are complete: skip the interpreter's teardown
