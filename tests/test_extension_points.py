"""The README's "Add a text dataset", "Add a metric" and "Add a callback" sections, followed literally."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from classicnets.sweeps.report import Report
from tests.conftest import FAST, run_script

ONE_BATCH = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
)


def test_a_metric_and_a_callback_added_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "mycallbacks.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from lightning.pytorch import Callback

            class MyCallback(Callback):
                def on_train_end(self, trainer, pl_module):
                    Path("trained.txt").write_text(str(trainer.global_step))
            """
        )
    )
    run_dir = tmp_path / "run"
    done = run_script(
        "train.py",
        "+task.metrics.precision={_target_:torchmetrics.classification.MulticlassPrecision,_partial_:true,average:macro}",
        "+callbacks.my_callback._target_=mycallbacks.MyCallback",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run_dir}",
        *FAST,
        *ONE_BATCH,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "trained.txt").read_text() == "2"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/precision", "test/precision", "test/acc", "test/f1"} <= set(metrics)
    assert "test/precision" in Report(run_dir).shown


def test_a_text_dataset_of_ones_own(tmp_path: Path) -> None:
    texts = tmp_path / "texts"
    texts.mkdir()
    for split, count in (("train", 40), ("test", 10)):
        rows = [
            f"{'good great fine' if n % 2 else 'bad awful poor'} {n}\t{'pos' if n % 2 else 'neg'}"
            for n in range(count)
        ]
        (texts / f"{split}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("## Add a text dataset", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "reviews.py").write_text(textwrap.dedent(code))
    (tmp_path / "myconf" / "data").mkdir(parents=True)
    (tmp_path / "myconf" / "data" / "reviews.yaml").write_text(
        f"_target_: reviews.Reviews\npath: {texts}\nbatch_size: 8\nseed: ${{seed}}\nvocab_dir: ${{paths.output_dir}}\n"
    )
    run_dir = tmp_path / "run"
    done = run_script(
        "train.py",
        f"hydra.searchpath=[file://{tmp_path / 'myconf'}]",
        "data=reviews",
        "model=lstm",
        "model.hidden_size=8",
        "model.embedding_dim=8",
        f"hydra.run.dir={run_dir}",
        *FAST[:3],
        *ONE_BATCH,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "vocab_size: ${sizes.vocab_size}" in config
    assert json.loads((run_dir / "vocab.json").read_text())[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert "test/acc" in json.loads((run_dir / "metrics.json").read_text())
