"""Resume after a kill, locally: a real `dermpipe run` is SIGKILLed during training; nothing of it survives, and
the same command resumes after the last finished epoch and ends with the weights of an uninterrupted run."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

EPOCHS = 6
COMMAND = [sys.executable, "-P", "-m", "dermpipe.cli.main", "run", "--source", "demo", "--demo-images", "240",
           "--batch-size", "8", "--backbone", "simple_cnn", "--image-size", "32", "--epochs", str(EPOCHS),
           "--patience", str(EPOCHS), "--deterministic", "--no-tta", "--explain-per-class", "1",
           "--min-balanced-accuracy", "0"]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "DERMPIPE_HOME": str(home)}  # PYTHONPATH inherited: tasks import the same dermpipe


def _saved_epoch(home: Path) -> int:
    """The epoch of the newest state under $DERMPIPE_HOME/checkpoints (0 when none)."""
    epochs = [json.loads(p.read_text())["epoch"] for p in home.glob("checkpoints/*/full/state.json")]
    return max(epochs, default=0)


def _processes_of(home: Path) -> list[int]:
    """Pids of live processes whose environment names this DERMPIPE_HOME (the run, its tasks, their shells)."""
    marker = f"DERMPIPE_HOME={home}\0".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes() + b"\0" and "Z" not in environ.with_name("stat").read_text()[-60:]:
                found.append(int(environ.parent.name))
        except OSError:  # ended meanwhile, or not ours to read
            continue
    return found


def _weights(model_folder: Path) -> dict[str, np.ndarray]:
    """Every weight array in the folder's model.keras (a zip holding model.weights.h5), by its HDF5 path."""
    import h5py

    with zipfile.ZipFile(model_folder / "model.keras") as archive:
        data = archive.read("model.weights.h5")
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(io.BytesIO(data)) as weights:
        weights.visititems(lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset)
                           else None)
    return arrays


def _train_outputs(home: Path) -> tuple[dict, str, Path]:
    """(training.json, the train task's log, the model folder) of the newest run in `home`."""
    record = json.loads(max(home.glob("runs/*.json"), key=lambda p: p.stat().st_mtime).read_text())
    train = record["tasks"]["train"]
    assert record["status"] == "succeeded", record["error"]
    folder = Path(train["outputs"]["model"]["uri"])
    return json.loads((folder / "training.json").read_text()), Path(train["log"]).read_text(), folder


def test_a_sigkilled_run_leaves_nothing_running_and_the_same_command_resumes(tmp_path):
    home = tmp_path / "home"
    killed = subprocess.Popen(COMMAND, env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while _saved_epoch(home) < 2:
        assert killed.poll() is None, f"the run ended ({killed.returncode}) before a checkpoint of epoch 2"
        assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 15 minutes"
        time.sleep(0.05)  # an epoch of this tiny run can take a fraction of a second
    os.kill(killed.pid, signal.SIGKILL)  # the run only, as an out-of-memory kill would
    killed.wait()
    time.sleep(5)
    assert _processes_of(home) == []
    saved = _saved_epoch(home)
    assert 2 <= saved < EPOCHS

    again = subprocess.run(COMMAND, env=_env(home), capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"train: resumed at epoch {saved + 1}/{EPOCHS}" in again.stdout  # the progress line
    report, log, model = _train_outputs(home)
    assert report["resumed_at"] == {"full": saved + 1}
    ran = [int(n) for n in re.findall(rf"\[train full\] epoch (\d+)/{EPOCHS}", log)]
    assert ran == list(range(saved + 1, EPOCHS + 1))  # exactly the remaining epochs
    assert len(report["history"]["full"]["val_loss"]) == EPOCHS
    assert not list(home.glob("checkpoints/*/full"))  # removed once the model is saved

    whole_home = tmp_path / "uninterrupted"
    whole = subprocess.run(COMMAND, env=_env(whole_home), capture_output=True, text=True, timeout=1800)
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    whole_report, _, whole_model = _train_outputs(whole_home)
    assert whole_report["resumed_at"] == {}
    assert report["history"]["full"]["val_loss"] == whole_report["history"]["full"]["val_loss"]
    assert report["validation"] == whole_report["validation"]
    ours, theirs = _weights(model), _weights(whole_model)
    assert sorted(ours) == sorted(theirs) and len(ours) >= 4
    for name, values in ours.items():
        np.testing.assert_allclose(values, theirs[name], rtol=0, atol=0, err_msg=name)
