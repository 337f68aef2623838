"""Predict with a checkpoint: `python predict.py ckpt_path=FILE input=PATH [output=FILE.csv]` (see README)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from classicnets.run.cli import expected_errors_reported, run
from classicnets.run.config import register, user_code_importable

register()
user_code_importable()


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from classicnets.predict.writer import predict
    from classicnets.run import console

    console.setup()  # what the console shows: classicnets/run/console.py

    with expected_errors_reported():
        output = predict(
            cfg.ckpt_path,
            cfg.input,
            cfg.output,
            cfg.batch_size,
            device=cfg.device,
            beam_width=cfg.beam_width,
            overwrite=cfg.overwrite,
        )
    print(f"predictions written to {output}")


if __name__ == "__main__":
    run(main, Path(__file__).with_name("conf"))
