"""Predict with a checkpoint: `python predict.py ckpt_path=FILE input=PATH [output=FILE.csv]` (see README)."""

import hydra
from omegaconf import DictConfig

from classicnets.run.config import register, user_code_importable
from classicnets.run.shutdown import exit_without_teardown

register()
user_code_importable()


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from classicnets.predict.writer import predict
    from classicnets.run import console

    console.setup()  # what the console shows: classicnets/run/console.py

    output = predict(
        cfg.ckpt_path, cfg.input, cfg.output, cfg.batch_size, device=cfg.device, beam_width=cfg.beam_width
    )
    print(f"predictions written to {output}")


if __name__ == "__main__":
    main()
    exit_without_teardown()  # the run's files are complete: skip the interpreter's teardown
