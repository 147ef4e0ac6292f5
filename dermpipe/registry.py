"""The versioned model registry in TF Serving's layout, local or gs:// (tf.io.gfile handles both).

    <root>/<model name>/<version>/saved_model.pb, variables/, model.keras, dermpipe.json
    <root>/<model name>/current.json        {"version": N, "uri": ..., "previous": M, "updated": ISO time}

Deploy pushes new versions; `dermpipe models list|promote|rollback` and `dermpipe serve` read and move current.json.
current.json is replaced atomically (written beside, then renamed), so a polling server never reads half a file.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (unknown model or version, no current version, ...)."""


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def model_dir(root: str, model_name: str) -> str:
    return f"{str(root).rstrip('/')}/{model_name}"


def version_dir(root: str, model_name: str, version: int) -> str:
    return f"{model_dir(root, model_name)}/{version}"


def current_file(root: str, model_name: str) -> str:
    return f"{model_dir(root, model_name)}/current.json"


def versions(root: str, model_name: str) -> list[int]:
    """The version numbers present (folders named by an integer that hold a saved_model.pb), ascending."""
    gfile = _gfile()
    folder = model_dir(root, model_name)
    if not gfile.exists(folder):
        return []
    found = [int(name.strip("/")) for name in gfile.listdir(folder) if name.strip("/").isdigit()]
    return sorted(v for v in found if gfile.exists(f"{folder}/{v}/saved_model.pb"))


def read_current(root: str, model_name: str) -> dict | None:
    """current.json as a dict, or None when no version has been made current yet."""
    gfile = _gfile()
    path = current_file(root, model_name)
    if not gfile.exists(path):
        return None
    with gfile.GFile(path, "r") as handle:
        text = handle.read()
    try:
        record = json.loads(text)
        int(record["version"])
    except (ValueError, KeyError, TypeError) as err:
        raise RegistryError(f"{path}: not a registry pointer ({err}); expected JSON like "
                            f'{{"version": 3, "uri": ".../3"}}. Fix it with `dermpipe models promote VERSION`') from err
    return record


def current_version(root: str, model_name: str) -> int | None:
    record = read_current(root, model_name)
    return None if record is None else int(record["version"])


def set_current(root: str, model_name: str, version: int, reason: str = "promote") -> dict:
    """Make `version` the served one (atomic replace of current.json); returns the new pointer."""
    gfile = _gfile()
    present = versions(root, model_name)
    if version not in present:
        raise RegistryError(f"{model_dir(root, model_name)}: no version {version} with a saved_model.pb; "
                            f"versions present: {present or 'none'} (list them with `dermpipe models list`)")
    previous = current_version(root, model_name)
    record = {"version": int(version), "uri": version_dir(root, model_name, version), "previous": previous,
              "reason": reason, "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    path = current_file(root, model_name)
    staging = f"{path}.tmp"
    with gfile.GFile(staging, "w") as handle:
        handle.write(json.dumps(record))
    gfile.rename(staging, path, overwrite=True)
    return record


def rollback(root: str, model_name: str) -> dict:
    """Serve the previous version: the highest version below the current one."""
    current = current_version(root, model_name)
    if current is None:
        raise RegistryError(f"{model_dir(root, model_name)}: no current version to roll back from "
                            f"(no current.json); promote one with `dermpipe models promote VERSION`")
    older = [v for v in versions(root, model_name) if v < current]
    if not older:
        raise RegistryError(f"{model_dir(root, model_name)}: version {current} is the oldest one present; "
                            f"there is nothing to roll back to")
    return set_current(root, model_name, older[-1], reason=f"rollback from {current}")


@dataclass
class VersionInfo:
    version: int
    uri: str
    current: bool
    created: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    source: str = ""


HEADLINE_METRICS = ("balanced_accuracy", "accuracy", "macro_f1", "mel_sensitivity_at_spec90", "ece")


def read_record(root: str, model_name: str, version: int) -> dict:
    """dermpipe.json of a version ({} when missing or unreadable: old versions may lack it)."""
    gfile = _gfile()
    path = f"{version_dir(root, model_name, version)}/dermpipe.json"
    if not gfile.exists(path):
        return {}
    try:
        with gfile.GFile(path, "r") as handle:
            return json.loads(handle.read())
    except ValueError:
        return {}


def headline(record: dict) -> dict[str, float]:
    """The evaluation metrics worth a column (test_* or plain names) from a version's dermpipe.json."""
    evaluation = record.get("evaluation") or {}
    out: dict[str, float] = {}
    for name in HEADLINE_METRICS:
        for key in (name, f"test_{name}"):
            value = evaluation.get(key)
            if isinstance(value, int | float):
                out[name] = float(value)
                break
    return out


def list_versions(root: str, model_name: str) -> list[VersionInfo]:
    current = current_version(root, model_name)
    rows = []
    for version in versions(root, model_name):
        record = read_record(root, model_name, version)
        rows.append(VersionInfo(version=version, uri=version_dir(root, model_name, version), current=version == current,
                                created=str(record.get("created", "")), metrics=headline(record),
                                source=str(record.get("source_model_uri", ""))))
    return rows


def model_names(root: str) -> list[str]:
    """Models in the registry: sub-folders holding at least one version."""
    gfile = _gfile()
    if not gfile.exists(str(root)):
        return []
    names = [name.strip("/") for name in gfile.listdir(str(root))]
    return sorted(n for n in names if gfile.isdir(f"{str(root).rstrip('/')}/{n}") and versions(root, n))
