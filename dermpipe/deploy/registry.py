"""The versioned model registry in TF Serving's layout, local or gs://, safe under concurrent deploys.

    <root>/<model>/allocated/<N>.json      claim on version number N (create-if-absent: one writer wins)
    <root>/<model>/<N>/saved_model.pb, variables/, model.keras, dermpipe.json, ...
    <root>/<model>/<N>/COMMITTED.json      written last: {"version", "digest", "files", "committed"}
    <root>/<model>/current.json            {"version", "uri", "digest", "previous", "reason", "updated"}
    <root>/<model>/serving/<N>/<N>/...     a one-version copy for KServe's storageUri (TF Serving serves the
                                           highest version under its base path, so each alias holds just one)

Two concepts, on purpose apart:
- an *allocated* version is a number some deploy has claimed; it may be half-written or abandoned (a killed task);
- a *servable* version has its COMMITTED marker (or predates claims: a version folder with saved_model.pb and no
  claim, written by an older dermpipe). Readers (`models list`, `dermpipe serve`, the champion resolver) see only
  servable versions; numbers are never reused, so a killed deploy leaves a gap, not a corrupt version.
current.json moves only by compare-and-swap against what the mover read: a deploy promotes only if the champion is
still the one its gate compared with, and a lost swap is reported, never retried over someone else's promotion.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermpipe import config, storage
from dermpipe.componentkit import param

COMMIT_MARKER = "COMMITTED.json"
ALLOCATED = "allocated"
SERVING = "serving"


def registry_root_field() -> Any:
    """The registry_root parameter field of the stages that read or change the registry (resolve-champion, gate,
    deploy): one pipeline parameter feeds all three, so their fields come from one definition."""
    return param("", "model registry: a folder or gs://bucket/prefix holding the model versions")


def model_name_field() -> Any:
    """The model_name parameter field of the registry's stages (one pipeline parameter, like registry_root)."""
    return param(config.MODEL_NAME, "the model's name in the registry")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (unknown model or version, no current version, ...)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def model_dir(root: str, model_name: str) -> str:
    return storage.join(str(root), model_name)


def version_dir(root: str, model_name: str, version: int) -> str:
    return storage.join(model_dir(root, model_name), version)


def current_file(root: str, model_name: str) -> str:
    return storage.join(model_dir(root, model_name), "current.json")


def _claim_file(root: str, model_name: str, version: int) -> str:
    return storage.join(model_dir(root, model_name), ALLOCATED, f"{version}.json")


def _numbered(names: list[str], suffix: str = "") -> set[int]:
    stems = [n.removesuffix(suffix) for n in names if n.endswith(suffix)]
    return {int(s) for s in stems if s.isdigit()}


def allocated_versions(root: str, model_name: str) -> list[int]:
    """Every version number claimed by a deploy, committed or not, ascending."""
    return sorted(_numbered(storage.list_names(storage.join(model_dir(root, model_name), ALLOCATED)), ".json"))


def is_servable(root: str, model_name: str, version: int) -> bool:
    folder = version_dir(root, model_name, version)
    if storage.exists(storage.join(folder, COMMIT_MARKER)):
        return True
    legacy = not storage.exists(_claim_file(root, model_name, version))
    return legacy and storage.exists(storage.join(folder, "saved_model.pb"))


def versions(root: str, model_name: str) -> list[int]:
    """The servable versions (committed, or written before claims existed), ascending."""
    folders = _numbered(storage.list_names(model_dir(root, model_name)))
    return sorted(v for v in folders if is_servable(root, model_name, v))


def allocate(root: str, model_name: str, owner: dict[str, object] | None = None) -> int:
    """Claim the next free version number; concurrent callers each get their own."""
    taken = set(allocated_versions(root, model_name)) | _numbered(storage.list_names(model_dir(root, model_name)))
    version = max(taken, default=0) + 1
    claim = {"owner": owner or {}, "host": socket.gethostname(), "pid": os.getpid(), "allocated": _now()}
    for _ in range(1000):
        if storage.create_if_absent(_claim_file(root, model_name, version), json.dumps(claim).encode()):
            return version
        version += 1
    raise RegistryError(f"{model_dir(root, model_name)}: could not claim a version number after 1000 tries")


def commit(root: str, model_name: str, version: int, staged: Path, digest: str) -> str:
    """Upload a staged version folder into its allocated number, the commit marker last; returns the version URI."""
    if not storage.exists(_claim_file(root, model_name, version)):
        raise RegistryError(f"{model_dir(root, model_name)}: version {version} was never allocated; "
                            f"call registry.allocate first")
    target = version_dir(root, model_name, version)
    files = storage.upload_tree(staged, target)
    marker = {"version": version, "digest": digest, "files": files, "committed": _now()}
    if not storage.create_if_absent(storage.join(target, COMMIT_MARKER), json.dumps(marker).encode()):
        raise RegistryError(f"{target}: already committed by someone else; version numbers are never shared")
    return target


def marker(root: str, model_name: str, version: int) -> dict:
    """The commit marker of a version ({} for a version written before markers existed)."""
    try:
        return json.loads(storage.read_text(storage.join(version_dir(root, model_name, version), COMMIT_MARKER)))
    except FileNotFoundError:
        return {}


def version_digest(root: str, model_name: str, version: int) -> str:
    """The model digest recorded when the version was committed ('' when unknown)."""
    return str(marker(root, model_name, version).get("digest") or read_record(root, model_name, version).get(
        "model_digest", ""))


def find_by_digest(root: str, model_name: str, digest: str) -> int | None:
    """The newest servable version holding the model with this digest, or None."""
    for version in reversed(versions(root, model_name)):
        if digest and version_digest(root, model_name, version) == digest:
            return version
    return None


def _read_pointer(root: str, model_name: str) -> tuple[dict | None, str]:
    path = current_file(root, model_name)
    data, token = storage.read_with_token(path)
    if data is None:
        return None, token
    try:
        record = json.loads(data)
        int(record["version"])
    except (ValueError, KeyError, TypeError) as err:
        raise RegistryError(f"{path}: not a registry pointer ({err}); expected JSON like "
                            f'{{"version": 3, "uri": ".../3"}}. Fix it with `dermpipe models promote VERSION`') from err
    return record, token


def read_current(root: str, model_name: str) -> dict | None:
    """current.json as a dict, or None when no version has been made current yet."""
    return _read_pointer(root, model_name)[0]


def current_version(root: str, model_name: str) -> int | None:
    record = read_current(root, model_name)
    return None if record is None else int(record["version"])


@dataclass(frozen=True)
class Champion:
    """The served version as a deploy saw it: version 0 and digest '' when nothing is served yet."""

    version: int = 0
    digest: str = ""


def champion(root: str, model_name: str) -> Champion:
    record = read_current(root, model_name)
    if record is None:
        return Champion()
    version = int(record["version"])
    return Champion(version, str(record.get("digest") or version_digest(root, model_name, version)))


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    current: int | None  # the version current.json names after the attempt
    previous: int | None
    record: dict = field(default_factory=dict)


def promote(root: str, model_name: str, version: int, *, expected: int | None, reason: str) -> Promotion:
    """Make `version` current only if the current version is still `expected` (None: nothing current yet)."""
    if not is_servable(root, model_name, version):
        raise RegistryError(f"{model_dir(root, model_name)}: no version {version} ready to serve (committed); "
                            f"versions present: {versions(root, model_name) or 'none'} (list them with "
                            f"`dermpipe models list`)")
    pointer, token = _read_pointer(root, model_name)
    now = None if pointer is None else int(pointer["version"])
    if now != expected:
        return Promotion(False, now, now, pointer or {})
    record = {"version": int(version), "uri": version_dir(root, model_name, version),
              "digest": version_digest(root, model_name, version), "previous": now, "reason": reason,
              "updated": _now()}
    try:
        storage.compare_and_swap(current_file(root, model_name), json.dumps(record).encode(), token)
    except storage.PreconditionFailed:
        return Promotion(False, current_version(root, model_name), now, read_current(root, model_name) or {})
    return Promotion(True, int(version), now, record)


def set_current(root: str, model_name: str, version: int, reason: str = "promote") -> dict:
    """Make `version` the served one whatever is current now (an operator's explicit choice); returns the pointer."""
    for _ in range(20):  # a concurrent move between our read and our swap: read again and re-apply the choice
        result = promote(root, model_name, version, expected=current_version(root, model_name), reason=reason)
        if result.promoted:
            return result.record
    raise RegistryError(f"{current_file(root, model_name)} keeps changing under us; try again")


def rollback(root: str, model_name: str) -> dict:
    """Serve the previous version: the highest servable version below the current one."""
    current = current_version(root, model_name)
    if current is None:
        raise RegistryError(f"{model_dir(root, model_name)}: no current version to roll back from "
                            f"(no current.json); promote one with `dermpipe models promote VERSION`")
    older = [v for v in versions(root, model_name) if v < current]
    if not older:
        raise RegistryError(f"{model_dir(root, model_name)}: version {current} is the oldest one present; "
                            f"there is nothing to roll back to")
    return set_current(root, model_name, older[-1], reason=f"rollback from {current}")


def serving_alias(root: str, model_name: str, version: int) -> str:
    """A folder holding only `<version>/` (TF Serving's layout), for a server that serves the highest version
    under its base path (KServe's TF Serving); made once per version, marker last."""
    if not is_servable(root, model_name, version):
        raise RegistryError(f"{model_dir(root, model_name)}: no version {version} ready to serve (committed)")
    alias = storage.join(model_dir(root, model_name), SERVING, version)
    copy = storage.join(alias, version)
    if not storage.exists(storage.join(copy, COMMIT_MARKER)):
        storage.copy_tree(version_dir(root, model_name, version), copy, last=(COMMIT_MARKER,))
        if not storage.exists(storage.join(copy, COMMIT_MARKER)):  # a legacy version: mark the complete copy
            storage.write_bytes(storage.join(copy, COMMIT_MARKER), json.dumps({"version": version}).encode())
    return alias


@dataclass
class VersionInfo:
    version: int
    uri: str
    current: bool
    created: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    source: str = ""
    licence: str = "unknown"  # what the training images' licences allow: non-commercial | unknown | commercial


HEADLINE_METRICS = ("balanced_accuracy", "accuracy", "macro_f1", "mel_sensitivity_at_spec90", "ece",
                    "melanoma_threshold", "ood_threshold")


def read_record(root: str, model_name: str, version: int) -> dict:
    """dermpipe.json of a version ({} when missing or unreadable: old versions may lack it)."""
    try:
        return json.loads(storage.read_text(storage.join(version_dir(root, model_name, version), "dermpipe.json")))
    except (FileNotFoundError, ValueError):
        return {}


def headline(record: dict) -> dict[str, float]:
    """The evaluation metrics worth a column (test_* or plain names) from a version's dermpipe.json, and the default
    melanoma operating point's threshold and the OOD threshold when the version was deployed with clinical.json."""
    clinical = record.get("clinical") or {}
    points = clinical.get("operating_points") or [{}]
    evaluation = {**(record.get("evaluation") or {}), "melanoma_threshold": points[0].get("threshold"),
                  "ood_threshold": clinical.get("ood_threshold")}
    out: dict[str, float] = {}
    for name in HEADLINE_METRICS:
        for key in (name, f"test_{name}"):
            value = evaluation.get(key)
            if isinstance(value, int | float):
                out[name] = float(value)
                break
    return out


def list_versions(root: str, model_name: str) -> list[VersionInfo]:
    from dermpipe.data.licences import short_verdict

    current = current_version(root, model_name)
    rows = []
    for version in versions(root, model_name):
        record = read_record(root, model_name, version)
        rows.append(VersionInfo(version=version, uri=version_dir(root, model_name, version), current=version == current,
                                created=str(record.get("created", "")), metrics=headline(record),
                                source=str(record.get("source_model_uri", "")),
                                licence=short_verdict(record.get("licences"))))
    return rows


def model_names(root: str) -> list[str]:
    """Models in the registry: sub-folders holding at least one servable version."""
    return [n for n in storage.list_names(str(root)) if versions(root, n)]
