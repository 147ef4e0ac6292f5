"""Checkpoint and resume of a training phase: where the per-epoch state lives, how it is keyed, written and restored.

On a cluster (a remote model URI, e.g. gs://) a retried task reuses its output URI, so the state sits beside it
(callbacks.checkpoint_location). Locally every `dermpipe run` gets a fresh output folder, so a killed run's state
would never be seen again: train keys it by content instead, `$DERMPIPE_HOME/checkpoints/<key>/`, the key made from
the inputs' content hashes, the parameters and the code version (checkpoint_key). The same command on the same data
and code resumes; any change trains from the start. Nothing reaches the task through its environment or parameters,
so kfp.local's cache key is unchanged.

Every file is written to a temporary name and renamed over the old one (atomic), and `state.json`, written last,
names the files of the epoch it describes, so a kill at any point leaves the previous epoch's state whole. Locally
reads and writes hold an flock on `<checkpoints>/.lock`, so two runs with the same key never see each other's
half-written state.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dermpipe import config
from dermpipe.model.training.runtime import TrainSettings

STATE_FILE = "state.json"
# Parameters that do not change what is trained (only what is printed); a run differing only in them resumes.
NOT_TRAINING = ("quiet",)
# Keras 3's epoch iterator makes two tf.data iterators per epoch (one as the epoch starts, one after its last batch,
# discarded), and every iterator of a reshuffled dataset draws the next shuffle order: a resume after `n` epochs
# makes 2n first, so the resumed epoch sees the order an uninterrupted run would (the deterministic resume test).
ITERATORS_PER_EPOCH = 2


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


# ---------------------------------------------------------------- the key

def artifact_digest(path: str, metadata: Mapping[str, Any]) -> str:
    """The content hash of an input artifact (the one its metadata declares, else of its bytes, see
    lineage.store.content_hash); a folder too large to hash is fingerprinted by its files' names, sizes and mtimes."""
    from dermpipe.lineage.store import content_hash

    digest = content_hash(path, metadata)
    if digest or not Path(path).exists():
        return digest
    import hashlib

    listing = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        stat = file.stat()
        listing.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return "listing:" + listing.hexdigest()


def checkpoint_key(inputs: Mapping[str, str], params: TrainSettings, code_version: str) -> str:
    """sha256 (20 hex digits) of the inputs' digests ({input name: artifact_digest}), the parameters that affect
    training and the code version: equal exactly when a run would train the same model the same way."""
    from dermpipe.lineage.artifacts import sha256_json

    trained = {k: v for k, v in asdict(params).items() if k not in NOT_TRAINING}
    return sha256_json({"inputs": dict(inputs), "params": trained, "code": code_version})[:20]


def local_checkpoints(key: str) -> Path:
    """Where a local run keeps the state of the training keyed `key`."""
    return config.home() / "checkpoints" / key


# ---------------------------------------------------------------- atomic, locked files

@contextlib.contextmanager
def locked(folder: str) -> Iterator[None]:
    """An exclusive flock on `<folder>/.lock` while the block runs (local folders; remote ones are written by one
    retried task at a time and have no flock)."""
    if is_remote(folder):
        yield
        return
    import fcntl

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_atomic(path: str, data: bytes) -> None:
    """Replace `path` whole: written to a temporary name beside it, flushed, then renamed over it."""
    import tensorflow as tf

    partial = f"{path}.{os.getpid()}.partial"
    if is_remote(path):
        with tf.io.gfile.GFile(partial, "wb") as handle:
            handle.write(data)
        tf.io.gfile.rename(partial, path, overwrite=True)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def _read(path: str) -> bytes:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as handle:
        return handle.read()


def _arrays_bytes(arrays: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    return buffer.getvalue()


def _arrays(data: bytes) -> list[np.ndarray]:
    with np.load(io.BytesIO(data)) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


# ---------------------------------------------------------------- the state of one phase

def model_state(model) -> list:
    """Every variable a resumed epoch depends on, in a fixed order: the weights, the random-seed states of the
    layers (augmentation, dropout) and Keras' global seed, and the optimizer's (step count, learning rate, moments)."""
    seeds = [v for v in model.variables if v.path.endswith("seed_generator_state")]
    with contextlib.suppress(Exception):  # private in Keras; without it ops seeded globally are not restored
        from keras.src.random.seed_generator import global_seed_generator

        seeds.append(global_seed_generator().state)
    return [*model.weights, *seeds, *model.optimizer.variables]


def save_state(folder: str, epoch: int, model, callbacks: Mapping[str, Any], stopped: bool) -> None:
    """Write the phase's state after `epoch` finished epochs: variables, early stopping's best weights, the
    callbacks' counters, then state.json naming them (the commit point); the previous epoch's files go last."""
    import tensorflow as tf

    files = {"variables": f"variables-{epoch:04d}.npz"}
    early = callbacks.get("early_stopping")
    if early is not None and early.best_weights is not None:
        files["best_weights"] = f"best-{epoch:04d}.npz"
    with locked(folder):
        previous = read_state(folder, lock=False)
        write_atomic(f"{folder}/{files['variables']}", _arrays_bytes([np.asarray(v) for v in model_state(model)]))
        if "best_weights" in files:
            write_atomic(f"{folder}/{files['best_weights']}", _arrays_bytes(list(early.best_weights)))
        state = {"epoch": epoch, "stopped": stopped, "files": files,
                 "callbacks": {name: _counters(cb) for name, cb in callbacks.items()}}
        write_atomic(f"{folder}/{STATE_FILE}", json.dumps(state).encode())
        for name in (previous or {}).get("files", {}).values():
            if name not in files.values() and tf.io.gfile.exists(f"{folder}/{name}"):
                tf.io.gfile.remove(f"{folder}/{name}")


COUNTERS = ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")


def _counters(callback) -> dict[str, Any]:
    values = {k: getattr(callback, k) for k in COUNTERS if hasattr(callback, k)}
    return {k: (float(v) if isinstance(v, np.floating | float) else v) for k, v in values.items()}


def read_state(folder: str, *, lock: bool = True) -> dict[str, Any] | None:
    """The phase's last committed state (state.json), or None when it has none."""
    import tensorflow as tf

    path = f"{folder}/{STATE_FILE}"
    with locked(folder) if lock and tf.io.gfile.exists(folder) else contextlib.nullcontext():
        if not tf.io.gfile.exists(path):
            return None
        return json.loads(_read(path))


def restore_state(folder: str, state: Mapping[str, Any], model, callbacks: Mapping[str, Any]) -> None:
    """Put a saved state back: variables (the optimizer built first), best weights and counters."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    with locked(folder):
        saved = _arrays(_read(f"{folder}/{state['files']['variables']}"))
        best = state["files"].get("best_weights")
        best_weights = _arrays(_read(f"{folder}/{best}")) if best else None
    variables = model_state(model)
    if len(saved) != len(variables) or any(a.shape != tuple(v.shape) for a, v in zip(saved, variables, strict=False)):
        raise ValueError(f"{folder}/{state['files']['variables']}: holds {len(saved)} variables, expected "
                         f"{len(variables)} of the same shapes; the checkpoint belongs to another model (delete "
                         "the folder to start fresh)")
    for variable, value in zip(variables, saved, strict=True):
        variable.assign(value)
    for name, callback in callbacks.items():
        for key, value in state["callbacks"].get(name, {}).items():
            setattr(callback, key, value)
    early = callbacks.get("early_stopping")
    if early is not None:
        early.best_weights = best_weights


def remove_state(folder: str) -> None:
    """Delete a phase's state once the phase is done (its final weights saved)."""
    import tensorflow as tf

    if not tf.io.gfile.exists(folder):
        return
    with locked(folder):
        for name in tf.io.gfile.listdir(folder):
            if name != ".lock":
                tf.io.gfile.remove(f"{folder}/{name}")
    tf.io.gfile.rmtree(folder)


# ---------------------------------------------------------------- the callback

def resume_callback(folder: str, phase: str, epochs: int, tracked: Mapping[str, Any], dataset, quiet: bool):
    """The per-epoch backup of one phase (replaces keras.callbacks.BackupAndRestore, which keeps only the weights,
    the optimizer and the epoch). `tracked`: {"early_stopping": ..., "plateau": ...}, the callbacks whose counters
    are saved; it must come after them in the callback list, so that it restores them after their on_train_begin
    reset. `dataset`: the one fit iterates, fast-forwarded on a resume."""
    import keras

    from dermpipe.componentkit import report_progress

    class TrainingState(keras.callbacks.Callback):
        resumed_at: int | None = None

        def on_train_begin(self, logs=None):
            state = read_state(folder)
            if state is None:
                return
            restore_state(folder, state, self.model, tracked)
            done = int(state["epoch"])
            self.model._initial_epoch = epochs if state["stopped"] else done  # what BackupAndRestore sets
            for _ in range(done * ITERATORS_PER_EPOCH):  # tf.data draws a shuffle order per iterator
                iter(dataset)
            self.resumed_at = done + 1
            report_progress(step=f"train {phase}", resumed_at=done + 1, epochs=epochs)
            if not quiet:
                print(f"[train {phase}] resumed at epoch {done + 1}/{epochs} from {folder}", flush=True)

        def on_epoch_end(self, epoch, logs=None):
            save_state(folder, epoch + 1, self.model, tracked, stopped=bool(self.model.stop_training))

        def on_train_end(self, logs=None):
            self.model._initial_epoch = None  # Keras keeps it: the next phase's fit would start there

    return TrainingState()
