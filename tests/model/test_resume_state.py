"""Training's per-epoch state (dermpipe.model.training.resume): a resume restores everything, so a deterministic run
interrupted and resumed ends with the weights of one that was not; the local key; atomic, locked writes."""

import json
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import replace

import keras
import numpy as np
import pytest

from dermpipe.data.merge import merge_dataset
from dermpipe.data.split import split_table
from dermpipe.model.training.loop import train_model
from dermpipe.model.training.resume import checkpoint_key, locked, read_state, write_atomic
from dermpipe.model.training.train import TrainParams
from dermpipe.model.training.watchdog import process_identity

TINY = {"backbone": "simple_cnn", "image_size": 32, "batch_size": 16, "deterministic": True, "patience": 4,
        "lr_schedule": "plateau"}


def _killed_after(last_epoch: int):
    """A callback that dies at the end of `last_epoch` (after its state was saved), as a killed run would."""

    def end(epoch, logs=None):
        if epoch + 1 == last_epoch:
            raise RuntimeError("killed")

    return keras.callbacks.LambdaCallback(on_epoch_end=end)


@pytest.fixture(scope="module")
def splits(demo_dataset):
    return split_table(merge_dataset(demo_dataset).table, test_size=0.1, val_size=0.2, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("class_balance", ["weights", "oversample"])
def test_a_resumed_deterministic_run_ends_with_the_weights_of_an_uninterrupted_one(demo_dataset, splits, tmp_path,
                                                                                    class_balance):
    params = TrainParams(**TINY, epochs=4, class_balance=class_balance)
    whole, whole_report = train_model(splits.train, splits.val, demo_dataset, params, quiet=True,
                                      checkpoint_dir=str(tmp_path / "whole"))
    folder = str(tmp_path / "resumed")
    with pytest.raises(RuntimeError, match="killed"):
        train_model(splits.train, splits.val, demo_dataset, params, quiet=True, checkpoint_dir=folder,
                    extra_callbacks=[_killed_after(2)])
    state = read_state(f"{folder}/full")
    assert state["epoch"] == 2 and set(state["callbacks"]) == {"early_stopping", "plateau"}
    seen: list[int] = []
    began = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: seen.append(epoch + 1))
    resumed, report = train_model(splits.train, splits.val, demo_dataset, params, quiet=True, checkpoint_dir=folder,
                                  extra_callbacks=[began])
    assert report["resumed_at"] == {"full": 3} and whole_report["resumed_at"] == {}
    assert whole_report["epochs_run"] == 4 and seen == [3, 4]
    assert report["history"]["full"]["val_loss"] == whole_report["history"]["full"]["val_loss"]
    assert report["validation"] == whole_report["validation"]
    for ours, theirs in zip(resumed.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_the_key_changes_with_inputs_parameters_and_code_but_not_with_quiet():
    inputs, params = {"train": "a" * 64, "val": "b" * 64}, TrainParams(backbone="simple_cnn")
    key = checkpoint_key(inputs, params, "1.0+abc")
    assert key == checkpoint_key(dict(reversed(inputs.items())), params, "1.0+abc")
    assert key == checkpoint_key(inputs, replace(params, quiet=True), "1.0+abc")
    others = {checkpoint_key({**inputs, "val": "c" * 64}, params, "1.0+abc"),
              checkpoint_key(inputs, replace(params, epochs=11), "1.0+abc"),
              checkpoint_key(inputs, replace(params, seed=1), "1.0+abc"),
              checkpoint_key({**inputs, "shards": "d" * 64}, params, "1.0+abc"),
              checkpoint_key(inputs, params, "1.0+abd")}
    assert key not in others and len(others) == 5 and len(key) == 20


def _write_many(path: str, marker: bytes, n: int) -> None:
    for _ in range(n):
        with locked(os.path.dirname(path)):
            write_atomic(path, marker * 200_000)


def test_concurrent_atomic_writes_never_leave_a_torn_or_partial_file(tmp_path):
    path = str(tmp_path / "ckpt" / "state.bin")
    writers = [multiprocessing.get_context("fork").Process(target=_write_many, args=(path, m, 30))
               for m in (b"x", b"y")]
    for writer in writers:
        writer.start()
    seen = set()
    while any(w.is_alive() for w in writers):
        if os.path.exists(path):  # read without the lock: the rename alone keeps files whole
            data = open(path, "rb").read()
            seen.add((len(data), len(set(data))))
    assert all(w.exitcode == 0 for w in writers)
    assert seen <= {(200_000, 1)} and seen  # always one writer's whole file
    assert sorted(os.listdir(tmp_path / "ckpt")) == [".lock", "state.bin"]


def _try_lock(folder: str, stamps) -> None:
    with locked(folder):
        stamps.put(time.monotonic())


def test_the_lock_makes_a_second_writer_wait(tmp_path):
    context = multiprocessing.get_context("fork")
    stamps = context.Queue()
    with locked(str(tmp_path)):
        other = context.Process(target=_try_lock, args=(str(tmp_path), stamps))
        other.start()
        time.sleep(1.0)
        released = time.monotonic()
    other.join(10)
    assert stamps.get(timeout=5) >= released


def test_a_partial_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "state.json")
    write_atomic(path, json.dumps({"epoch": 1}).encode())
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError("killed before the rename")))
    with pytest.raises(OSError, match="killed"):
        write_atomic(path, json.dumps({"epoch": 2}).encode())
    assert json.loads(open(path).read()) == {"epoch": 1}


CHILD = """
import os, sys, time
os.environ["DERMPIPE_RUN_PID"] = sys.argv[1]
from dermpipe.model.training.watchdog import exit_with_parent_run
exit_with_parent_run(poll=0.1)
print("watching", flush=True)
time.sleep(60)
"""


def test_the_trainer_exits_when_the_run_that_started_it_is_killed():
    run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    trainer = subprocess.Popen([sys.executable, "-P", "-c", CHILD, str(run.pid)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert trainer.stdout.readline().strip() == "watching"
    assert process_identity(run.pid) is not None
    run.kill()  # not reaped yet: a zombie counts as gone
    assert trainer.wait(timeout=10) == 143
    assert "is gone; stopping training" in trainer.stderr.read()
    run.wait()
    assert process_identity(run.pid) is None
