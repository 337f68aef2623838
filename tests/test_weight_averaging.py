"""regularization=ema and regularization=swa: the averaged weights are what is validated, checkpointed, tested,
evaluated and predicted with, and the checkpoints load with `torch.load(weights_only=True)`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from classicnets.predict.predictors import predictor_for, restore_net
from classicnets.run.checkpoints import load_checkpoint, network_weights
from classicnets.run.pipeline import evaluate, train

TINY = ("trainer.limit_train_batches=8", "trainer.limit_val_batches=2", "data.source=sample")


def _only(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


def _eval_reproduces(make_config, tmp_path: Path, checkpoint: Path, trained: dict[str, float]) -> None:
    cfg = make_config(f"ckpt_path={checkpoint}", config_name="eval")
    cfg.paths.output_dir = str(tmp_path / "eval")
    evaluated = evaluate(cfg)
    for key in ("test/acc", "test/loss"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6)


def test_ema_validates_checkpoints_and_tests_the_averaged_weights(make_config, tmp_path: Path) -> None:
    cfg = make_config("regularization=ema", "callbacks.ema.decay=0.9", "trainer.max_epochs=2", *TINY)
    assert cfg.callbacks.ema._target_ == "classicnets.run.callbacks.EMAWeightAveraging"
    trained = train(cfg)

    best = _only(tmp_path / "checkpoints", "best-*.ckpt")
    plain = torch.load(best, map_location="cpu", weights_only=True)  # no pickled objects in it
    averaged, raw = plain["state_dict"], plain["current_model_state"]
    assert plain["averaging_state"]["n_averaged"] > 1
    moved = [
        key for key in averaged if averaged[key].is_floating_point() and not averaged[key].equal(raw[key])
    ]
    assert "net.classifier.0.weight" in moved or len(moved) > 4  # the average is not the last step's weights

    # eval.py and predict.py rebuild the network with the averaged weights, and test what the run tested
    checkpoint = load_checkpoint(best)
    net = restore_net(checkpoint, torch.device("cpu"))
    for key, value in net.state_dict().items():
        assert value.equal(averaged[f"net.{key}"])
    assert predictor_for(checkpoint, torch.device("cpu")).net.state_dict().keys() == net.state_dict().keys()
    _eval_reproduces(make_config, tmp_path, best, trained)

    # validation saw the averaged weights: the best checkpoint's val/acc is its recorded score
    callback = checkpoint["callbacks"]
    scores = [v["best_model_score"] for k, v in callback.items() if k.startswith("ModelCheckpoint")]
    assert float(scores[0]) == pytest.approx(trained["val/acc_best"], abs=1e-6)


def test_swa_averages_checkpoints_and_tests_the_average(make_config, tmp_path: Path) -> None:
    # LeNet-5 without BatchNorm: Lightning alone would copy the average in after the last checkpoint
    cfg = make_config("regularization=swa", "trainer.max_epochs=3", *TINY)
    trained = train(cfg)

    # SWA from epoch 2 of 3 (0.75 · 3): two averaged epochs, then one more in which the average is the model
    tested = _only(tmp_path / "checkpoints", "averaged-epoch*.ckpt")
    assert tested.name == "averaged-epoch003.ckpt"
    checkpoint = load_checkpoint(tested)  # weights_only=True
    state = checkpoint["callbacks"]["StochasticWeightAveraging"]
    assert int(state["n_averaged"]) == 2
    average = {
        k.removeprefix("net."): v for k, v in state["average_model_state"].items() if k.startswith("net.")
    }
    weights = network_weights(checkpoint)
    assert weights.keys() == average.keys()
    for key, value in weights.items():
        assert value.equal(average[key]), key
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(last["state_dict"][f"net.{key}"].equal(value) for key, value in average.items())

    net = restore_net(checkpoint, torch.device("cpu"))
    assert all(value.equal(average[key]) for key, value in net.state_dict().items())
    _eval_reproduces(make_config, tmp_path, tested, trained)
