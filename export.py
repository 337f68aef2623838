"""Export a checkpoint's network for serving: `python export.py ckpt_path=FILE output=model.onnx` (see README)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from classicnets.run.cli import expected_errors_reported, run
from classicnets.run.config import register, user_code_importable

register()
user_code_importable()


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from classicnets.predict.export import export
    from classicnets.run import console

    console.setup()  # what the console shows: classicnets/run/console.py

    with expected_errors_reported():
        output, difference = export(cfg.ckpt_path, cfg.output, overwrite=cfg.overwrite)
    print(
        f"exported to {output} (largest difference from the checkpoint's outputs on a check batch: {difference:.2g})"
    )


if __name__ == "__main__":
    run(main, Path(__file__).with_name("conf"))
