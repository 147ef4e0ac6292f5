"""Infra validation: load an exported SavedModel in a SEPARATE process and send it a real request.

A model that loads in the training process can still fail to serve (a custom object, a missing asset, an op that
only the training process registered). `python -m dermpipe.deploy.infravalidate DIR` starts clean, loads DIR the way a
model server does (tf.saved_model.load, no Keras objects), sends encoded JPEGs through serving_default (what TF
Serving, Vertex and `dermpipe serve` call) and checks the answer against serve_pixels; it prints a JSON report and
exits non-zero when the model cannot serve. Deploy pushes nothing that fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


class InfraValidationError(RuntimeError):
    """The exported model could not serve a request in a fresh process."""


def validate(saved_model_dir: str, n_classes: int) -> dict[str, object]:
    """In this process: check_serving_model (real JPEGs through serving_default) and a batch-size-1 request."""
    import tensorflow as tf

    from dermpipe.model.export import (
        BYTES_SIGNATURE,
        check_serving_model,
        metadata_tensors,
        probe_jpeg,
        signature_takes_metadata,
    )

    report = {"check": check_serving_model(saved_model_dir, n_classes)}
    served = tf.saved_model.load(saved_model_dir).signatures[BYTES_SIGNATURE]
    extra = metadata_tensors([None]) if signature_takes_metadata(served) else {}  # fusion model: metadata unknown
    single = served(image_bytes=tf.constant([probe_jpeg(200)]), **extra)["probabilities"].numpy()
    if single.shape != (1, n_classes):
        raise RuntimeError(f"{saved_model_dir}: a one-image request answered shape {single.shape}; expected "
                           f"(1, {n_classes})")
    report["single_request_sum"] = float(single.sum())
    report["pid"] = os.getpid()
    return report


def validate_in_subprocess(saved_model_dir: Path | str, n_classes: int, timeout_s: float = 600) -> dict[str, object]:
    """Run `validate` in a fresh Python process; InfraValidationError (with its output) when it fails."""
    command = [sys.executable, "-m", "dermpipe.deploy.infravalidate", str(saved_model_dir), "--classes", str(n_classes)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired as err:
        raise InfraValidationError(f"infra validation of {saved_model_dir}: no answer within {timeout_s:.0f}s; the "
                                   f"model is not pushed") from err
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise InfraValidationError(
            f"infra validation of {saved_model_dir} failed in a separate process (exit {done.returncode}); the model "
            f"is not pushed. Last output:\n{tail}")
    return {**json.loads(lines[-1]), "process": "separate"}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model_dir")
    parser.add_argument("--classes", type=int, default=8)
    args = parser.parse_args(argv)
    try:
        report = validate(args.saved_model_dir, args.classes)
    except Exception as err:  # noqa: BLE001 - reported to the parent process
        print(f"infra validation failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
