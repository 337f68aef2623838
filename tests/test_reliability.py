"""Interrupted runs lose nothing, resumed runs match uninterrupted ones, bad files are refused cleanly (issue 9).

docs/reliability.md lists each guarantee with the test here that proves it.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import BatchSampler

from classicnets.data import CorruptDatasetError, MNISTDataModule
from classicnets.data.batches import TensorBatches, keep_batch
from classicnets.data.idx import read_idx
from classicnets.data.loading import InMemoryLoader
from classicnets.data.sampling import EpochSampler, ResumableDataLoader
from classicnets.run.checkpoints import AtomicCheckpointIO, CheckpointError, load_checkpoint
from classicnets.run.output_dir import OutputDirError, check_output_dir
from classicnets.run.pipeline import evaluate, train
from classicnets.run.resume import newest_checkpoint
from classicnets.run.status import read_status
from tests.conftest import RANDOM_MLP, ROOT, as_in_a_terminal, compose_config

SAMPLE = ROOT / "src" / "classicnets" / "data" / "samples" / "mnist"
TINY = (
    *RANDOM_MLP,
    "data.eval_batch_size=500",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.deterministic=true",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.last_checkpoint.every_n_train_steps=3",
    "callbacks.last_checkpoint.train_time_interval=null",
)


def _signal_at_step(step: int, signum: signal.Signals = signal.SIGKILL) -> tuple[str, ...]:
    """Overrides that make the run send itself `signum` as training step `step` starts (tests/signals_at_step.py)."""
    return (
        "+callbacks.signal._target_=tests.signals_at_step.SignalAtStep",
        f"+callbacks.signal.step={step}",
        f"+callbacks.signal.signum={int(signum)}",
    )


def _start(*args: str, own_group: bool = False) -> subprocess.Popen:
    """`train.py args` as a terminal starts it; `own_group`: in a process group of its own, so that a signal to
    the group reaches the run's DDP ranks and nothing else."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HYDRA_FULL_ERROR": "1"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=own_group,
        preexec_fn=as_in_a_terminal,
    )


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def _last(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


# ---------------------------------------------------------------- 1. exact resume, 2. interval, 3. auto-resume


def test_training_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch() -> None:
    data = TensorBatches(torch.arange(100))

    def epoch(loader: ResumableDataLoader, number: int) -> list[int]:
        loader.sampler.set_epoch(number)
        return [int(i) for (batch,) in loader for i in batch]

    first, again = (
        ResumableDataLoader(data, 10, seed=3, collate_fn=keep_batch),
        ResumableDataLoader(data, 10, seed=3, collate_fn=keep_batch),
    )
    assert epoch(first, 2) == epoch(again, 2) != epoch(first, 1)
    assert sorted(epoch(first, 1)) == list(range(100))

    interrupted = ResumableDataLoader(data, 10, seed=3, collate_fn=keep_batch)
    interrupted.sampler.set_epoch(2)
    seen = [int(i) for (batch,) in islice(interrupted, 4) for i in batch]
    resumed = ResumableDataLoader(data, 10, seed=3, collate_fn=keep_batch)
    resumed.load_state_dict(interrupted.state_dict())
    resumed.sampler.set_epoch(2)  # Lightning calls it again after the restore: the position must survive
    rest = [int(i) for (batch,) in resumed for i in batch]
    assert seen + rest == epoch(again, 2)
    assert epoch(resumed, 3) == epoch(again, 3)  # the next epoch starts from its beginning


def test_ddp_shards_cover_the_epoch_and_each_process_resumes_mid_epoch() -> None:
    data = TensorBatches(torch.arange(101))

    def loader(rank: int, world_size: int = 2) -> InMemoryLoader:
        order = EpochSampler(len(data), seed=3, rank=rank, world_size=world_size)
        return InMemoryLoader(data, BatchSampler(order, 10, drop_last=False), device=None)

    def epoch(shard: InMemoryLoader, number: int) -> list[int]:
        shard.order.set_epoch(number)
        return [int(i) for (batch,) in shard for i in batch]

    shards = [epoch(loader(rank), 2) for rank in (0, 1)]
    assert (
        len(shards[0]) == len(shards[1]) == 51
    )  # padded to a multiple of the processes, as DistributedSampler
    assert set(shards[0]) | set(shards[1]) == set(range(101))
    assert shards[0] != epoch(loader(0), 3)

    # the position is the same on every process (equal shards), so rank 0's checkpoint serves them all
    interrupted = loader(1)
    interrupted.order.set_epoch(2)
    seen = [int(i) for (batch,) in islice(interrupted, 3) for i in batch]
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "batches": 3, "seed": 3, "world_size": 2}
    resumed = loader(1)
    resumed.load_state_dict(state)
    resumed.order.set_epoch(2)  # Lightning calls it again after the restore: the position must survive
    assert seen + [int(i) for (batch,) in resumed for i in batch] == shards[1]
    assert epoch(resumed, 3) == epoch(loader(1), 3)  # the next epoch starts from its beginning
    with pytest.raises(ValueError, match="by a run of 2 process"):
        loader(0, world_size=1).load_state_dict(state)  # other shards: refused, not silently replayed
    loader(0, world_size=1).load_state_dict({**state, "batches": 0})  # at an epoch's end it is fine


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_auto_ends_bitwise_equal_to_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # step checkpoints every 3 steps; SIGKILL when step 7 (epoch 1 of 0..2, 4 steps each) is about to start
    kill = _signal_at_step(7)
    victim = _start(*TINY, *kill, f"hydra.run.dir={killed}")
    train(compose_config(straight, *TINY))  # meanwhile, in this process
    code, output = _finish(victim)
    assert code == -signal.SIGKILL, output[-3000:]
    assert _last(killed)["global_step"] == 6  # the kill lost one step, not the epoch
    assert newest_checkpoint(killed) == killed / "checkpoints" / "last.ckpt"

    train(compose_config(killed, *TINY, "resume=auto"))

    expected, resumed = _last(straight), _last(killed)
    assert resumed["global_step"] == expected["global_step"] == 12
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name
    moments = zip(*(c["optimizer_states"][0]["state"].values() for c in (expected, resumed)), strict=True)
    assert all(torch.equal(a[key], b[key]) for a, b in moments for key in a)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (straight, killed)]
    timings = {key for key in metrics[0] if key.startswith("perf/")}
    assert {k: v for k, v in metrics[0].items() if k not in timings} == {
        k: v for k, v in metrics[1].items() if k not in timings
    }
    # the epoch resumed in its middle is timed from the resume (no `on_train_epoch_start` came for it)
    events = EventAccumulator(str(killed / "tensorboard"))
    events.Reload()
    epoch_seconds = [event.value for event in events.Scalars("perf/epoch_s")]
    assert len(epoch_seconds) == 3 and max(epoch_seconds) < time.monotonic() - started


@pytest.mark.slow
def test_ddp_killed_mid_epoch_resumes_each_process_where_it_stopped(tmp_path: Path) -> None:
    # under DDP the loader used to save no position: a mid-epoch last.ckpt replayed the epoch's start
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    ddp = (*TINY, "trainer=ddp_cpu")
    kill_all = (
        "+callbacks.signal._target_=tests.signals_at_step.SignalGroupAtStep",
        "+callbacks.signal.step=7",
        f"+callbacks.signal.signum={int(signal.SIGKILL)}",
    )

    def run(*args: str) -> tuple[int, str]:
        return _finish(_start(*ddp, *args, own_group=True))  # the kill reaches its ranks only

    code, output = run(*kill_all, f"hydra.run.dir={killed}")
    assert code == -signal.SIGKILL, output[-3000:]
    assert _last(killed)["global_step"] == 6  # mid-epoch: epoch 1 of 4 steps a process
    for directory, args in ((straight, ()), (killed, ("resume=auto",))):
        code, output = run(*args, f"hydra.run.dir={directory}")
        assert code == 0, output[-3000:]
    expected, resumed = _last(straight), _last(killed)
    assert resumed["global_step"] == expected["global_step"] == 12
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name


@pytest.mark.slow
def test_under_ddp_the_checkpoint_clock_is_read_every_50_steps(tmp_path: Path) -> None:
    # reading rank 0's clock is a broadcast, which waits for every rank's step: once in 50 steps, not every step.
    # With a 1-microsecond interval every reading says "due", so the saves show when the clock was read.
    process = _start(
        "trainer=ddp_cpu",
        "model=mlp",
        "model.hidden_sizes=[16]",
        "data.source=sample",
        "data.batch_size=32",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=60",
        "trainer.limit_val_batches=1",
        "test=false",
        "trainer.enable_progress_bar=false",
        "callbacks.last_checkpoint.train_time_interval.minutes=0",
        "+callbacks.last_checkpoint.train_time_interval.microseconds=1",
        "callbacks.model_checkpoint=null",
        "trainer.enable_checkpointing=false",  # no best-checkpoint saves: only LastCheckpoint's
        "+callbacks.saves._target_=tests.signals_at_step.RecordSaves",
        f"hydra.run.dir={tmp_path}",
    )
    code, output = _finish(process)
    assert code == 0, output[-3000:]
    assert json.loads((tmp_path / "saves.json").read_text()) == [
        50,
        60,
    ]  # the clock at step 50; the epoch's end


@pytest.mark.slow
def test_sigkill_after_epochs_that_did_not_improve_loses_no_epoch(tmp_path: Path) -> None:
    # a learning rate of 1e-12 (0 is refused): validation never beats epoch 0, so no best checkpoint follows it
    frozen = (
        "model=mlp",
        "optimizer.lr=1e-12",
        "data.source=sample",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "test=false",
        f"hydra.run.dir={tmp_path}",
    )
    kill = _signal_at_step(6)
    code, output = _finish(_start(*frozen, *kill))
    assert code == -signal.SIGKILL, output[-3000:]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    assert _last(tmp_path)["global_step"] == 6  # both finished epochs, not only the best one

    code, output = _finish(_start(*frozen, "resume=auto"))
    assert code == 0, output[-3000:]
    assert _last(tmp_path)["global_step"] == 9  # the third epoch, and nothing repeated


# ---------------------------------------------------------------- 4. graceful stop


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_nonzero_and_the_printed_command_resumes(tmp_path: Path) -> None:
    term = _signal_at_step(5, signal.SIGTERM)
    code, output = _finish(_start(*TINY, *term, f"hydra.run.dir={tmp_path}"))
    assert code == 128 + signal.SIGTERM, output[-3000:]
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert f"SIGTERM: training stopped, state saved in {last}" in output
    assert _last(tmp_path)["global_step"] == 6  # step 5 finished, then the stop: nothing lost
    status = read_status(tmp_path)
    assert status["status"] == "interrupted" and status["checkpoint"] == str(last)

    command = shlex.split(output.split("To resume, run:\n")[1].splitlines()[0])
    assert command[:2] == ["python", "train.py"]
    assert command[-2:] == [f"hydra.run.dir={tmp_path}", "resume=auto"]
    train(compose_config(tmp_path, *command[2:]))  # the signal callback is inert now: step 5 is behind
    assert _last(tmp_path)["global_step"] == 12 and (tmp_path / "metrics.json").is_file()


def test_ctrl_c_stops_at_the_step_boundary_with_a_checkpoint(make_config, tmp_path: Path) -> None:
    interrupt = _signal_at_step(2, signal.SIGINT)
    # as in a terminal, also where pytest runs as a background job (which starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit) as stopped:
            train(make_config(*TINY, *interrupt))
        # Lightning put the handlers back
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped.value.code == 128 + signal.SIGINT
    assert _last(tmp_path)["global_step"] == 3


@pytest.mark.slow
def test_ctrl_c_under_ddp_saves_and_every_rank_stops(tmp_path: Path) -> None:
    # a terminal's Ctrl-C reaches every rank, and rank 0 forwards it to the rank it started: that rank took the
    # copy for a second Ctrl-C and quit, while rank 0 waited for it in the checkpoint's barrier
    interrupt = (
        "+callbacks.signal._target_=tests.signals_at_step.SignalGroupAtStep",
        "+callbacks.signal.step=3",
        f"+callbacks.signal.signum={int(signal.SIGINT)}",
    )
    ddp = (*TINY, "trainer=ddp_cpu", "trainer.deterministic=false", f"hydra.run.dir={tmp_path}")
    code, output = _finish(_start(*ddp, *interrupt, own_group=True))  # the signal reaches its ranks only
    assert code == 128 + signal.SIGINT, output[-3000:]
    assert _last(tmp_path)["global_step"] == 4
    assert read_status(tmp_path)["status"] == "interrupted"


def test_an_ignored_sigint_stays_ignored(make_config, tmp_path: Path) -> None:
    interrupt = _signal_at_step(2, signal.SIGINT)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # how a shell starts a background job
    try:
        train(make_config(*TINY, *interrupt))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert _last(tmp_path)["global_step"] == 12  # all three epochs: the Ctrl-C did not reach it


# ---------------------------------------------------------------- 5. atomic checkpoints, truncated ones


def test_a_process_killed_while_writing_a_checkpoint_leaves_the_previous_one_intact(tmp_path: Path) -> None:
    path, io = tmp_path / "last.ckpt", AtomicCheckpointIO()
    io.save_checkpoint({"version": torch.tensor(1)}, path)
    newer = {"version": torch.tensor(2), "weights": torch.zeros(1_000_000)}
    child = os.fork()
    if child == 0:  # dies with the new bytes written, before the rename
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
        io.save_checkpoint(newer, path)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert torch.load(path, weights_only=True) == {"version": torch.tensor(1)}
    (partial,) = tmp_path.glob(".last.ckpt.*.tmp")  # the unfinished write, under a name nothing loads
    assert partial.stat().st_size > 4_000_000


def _checkpoint(path: Path) -> Path:
    torch.save({"classicnets": {"config": {}}, "state_dict": {"w": torch.randn(1000)}}, path)
    return path


def test_truncated_checkpoint_is_refused_with_its_name(make_config, tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "run.ckpt")
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=rf"{path} is not a readable checkpoint \(truncated or corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=str(path)):
        train(make_config(f"ckpt_path={path}"))
    with pytest.raises(CheckpointError, match=str(path)):
        evaluate(make_config(f"ckpt_path={path}", config_name="eval"))


def test_resume_auto_takes_the_checkpoint_furthest_into_training_whatever_the_file_times(
    tmp_path: Path,
) -> None:
    # a copied run directory (cp -r) gives its files the times of the copy, in any order
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    best = tmp_path / "checkpoints" / "best-epoch026.ckpt"
    run = {"classicnets": {"config": {}}, "state_dict": {}}
    torch.save({**run, "global_step": 10_500}, last)
    torch.save({**run, "global_step": 9_499}, best)
    os.utime(last, (1, 1))
    assert newest_checkpoint(tmp_path) == last
    torch.save({**run, "global_step": 10_500}, best)  # saved at the same step: the later write
    assert newest_checkpoint(tmp_path) == best


def test_resume_auto_skips_a_corrupt_newest_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    older = _checkpoint(tmp_path / "checkpoints" / "best-epoch000.ckpt")
    newest = tmp_path / "checkpoints" / "last.ckpt"
    newest.write_bytes(b"PK\x03\x04 half a zip")
    os.utime(older, (1, 1))
    assert newest_checkpoint(tmp_path) == older


# ---------------------------------------------------------------- 6. untrusted checkpoints


class _Payload:
    """Unpickling this creates a file: stands for any code a crafted checkpoint could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_never_runs(
    make_config, tmp_path: Path
) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "evil.ckpt"
    torch.save({"classicnets": {"config": {}}, "state_dict": {}, "payload": _Payload(marker)}, path)
    torch.load(path, weights_only=False)  # the payload is live: a plain load runs it
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CheckpointError, match=rf"refusing to load {path}.*could\s+run code"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refusing"):
        evaluate(make_config(f"ckpt_path={path}", config_name="eval"))
    with pytest.raises(CheckpointError, match="refusing"):
        train(make_config(f"ckpt_path={path}"))
    assert not marker.exists()


def test_a_checkpoint_whose_config_would_call_foreign_code_is_refused(make_config, tmp_path: Path) -> None:
    # plain containers only, so `weights_only` lets it through: rebuilding its run would call os.system
    marker, path = tmp_path / "pwned", tmp_path / "evil.ckpt"
    model = {"_target_": "os.system", "command": f"touch {marker}"}
    torch.save({"classicnets": {"config": {"model": model}}, "state_dict": {}}, path)
    with pytest.raises(
        CheckpointError, match=r"refusing to use .*evil.ckpt: its saved config names os.system"
    ):
        evaluate(make_config(f"ckpt_path={path}", config_name="eval"))
    assert not marker.exists()


# ---------------------------------------------------------------- 7. NaN/inf


def test_a_nan_loss_stops_the_run_names_the_step_and_records_diverged(make_config, tmp_path: Path) -> None:
    poison = ("+callbacks.poison._target_=tests.signals_at_step.NaNInputAtStep", "+callbacks.poison.step=5")
    assert train(make_config(*TINY, *poison)) == {}
    status = read_status(tmp_path)
    assert status["status"] == "diverged"
    assert "became nan at step 5 (epoch 1)" in status["reason"]
    assert "the last finite loss was" in status["reason"] and "at step 4" in status["reason"]
    assert all(torch.isfinite(t).all() for t in _last(tmp_path)["state_dict"].values())


def test_nan_policy_skip_drops_the_update_and_trains_on(make_config, tmp_path: Path) -> None:
    poison = ("+callbacks.poison._target_=tests.signals_at_step.NaNInputAtStep", "+callbacks.poison.step=5")
    metrics = train(make_config(*TINY, *poison, "nan_policy=skip", "trainer.max_epochs=2"))
    assert metrics["test/acc"] > 0.1
    assert math.isfinite(metrics["train/loss"])  # the skipped step is left out of the epoch mean
    weights = _last(tmp_path)["state_dict"]
    assert _last(tmp_path)["global_step"] == 8 and all(torch.isfinite(t).all() for t in weights.values())


@pytest.mark.slow
def test_a_sweep_goes_on_past_a_diverged_job(tmp_path: Path) -> None:
    poison = "+callbacks.poison._target_=tests.signals_at_step.NaNInputAtStep"
    sweep = _start(
        "-m",
        *TINY,
        "trainer.max_epochs=1",
        poison,
        "+callbacks.poison.step=1,99",
        f"hydra.sweep.dir={tmp_path}",
    )
    code, output = _finish(sweep)
    assert code == 0, output[-3000:]
    assert read_status(tmp_path / "0")["status"] == "diverged"
    assert (
        read_status(tmp_path / "1")["status"] == "completed" and (tmp_path / "1" / "metrics.json").is_file()
    )


# ---------------------------------------------------------------- 8. bad data


def _mnist_copy(tmp_path: Path) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for file in SAMPLE.iterdir():
        (raw / file.name).write_bytes(file.read_bytes())
    return raw


def test_truncated_or_foreign_idx_files_are_named_with_what_to_do(tmp_path: Path) -> None:
    raw = _mnist_copy(tmp_path)
    images = raw / "train-images-idx3-ubyte.gz"
    # a download cut off half-way: a gzip stream without its end
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    with pytest.raises(
        CorruptDatasetError, match=rf"{images} cannot be read .*delete it and download it again"
    ):
        MNISTDataModule(tmp_path, source="full").setup()

    short = tmp_path / "short-idx1-ubyte"
    short.write_bytes(gzip.decompress((raw / "train-labels-idx1-ubyte.gz").read_bytes())[:-10])
    with pytest.raises(CorruptDatasetError, match=rf"{short} is truncated or padded"):
        read_idx(short)
    foreign = tmp_path / "foreign-idx1-ubyte"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CorruptDatasetError, match=rf"{foreign} is not an IDX file"):
        read_idx(foreign)


# ---------------------------------------------------------------- 9. output directories


@pytest.mark.slow
def test_runs_started_at_the_same_moment_get_their_own_directories(tmp_path: Path) -> None:
    # both stop right after Hydra made their directories, when they look for the data
    missing = (
        "data=image_folder",
        f"data.train_dir={tmp_path / 'none'}",
        f"data.test_dir={tmp_path / 'none'}",
    )
    runs = [_start(f"paths.log_dir={tmp_path}", f"seed={seed}", *missing) for seed in (1, 2)]
    for run in runs:
        code, output = _finish(run)
        assert code != 0 and "none is not a folder" in output
    directories = sorted((tmp_path / "runs").iterdir())
    assert len(directories) == 2
    seeds = {(d / ".hydra" / "config.yaml").read_text().split("seed: ")[1].split()[0] for d in directories}
    assert seeds == {"1", "2"}


def test_an_unwritable_or_full_output_location_fails_before_training(make_config, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputDirError, match=rf"cannot write to the run directory {blocker}/run"):
        check_output_dir(blocker / "run", parameter_bytes=1000)
    with pytest.raises(OutputDirError, match=r"MiB free .* need about"):
        check_output_dir(tmp_path, parameter_bytes=2**60)

    cfg = make_config(*TINY)
    cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(OutputDirError):
        train(cfg)
