"""Per-task caching in a compiled package, and source fingerprints (gs://) that let ingest use the cache safely.

KFP caches on parameter values, not on what a gs:// prefix holds, so ingest is compiled uncached; passing the
source kind's fingerprint of the prefix as a parameter makes an unchanged data set a cache hit and any change to it a
miss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dermpipe.orchestration.errors import SubmitError
from dermpipe.orchestration.parameters import package_parameters


def set_caching(package: Path, out: Path, tasks: dict[str, bool] | None = None, *, everything: bool | None = None
                ) -> Path:
    """A copy of the package with caching switched per task (`tasks`) or on every task (`everything`)."""
    documents = [d for d in yaml.safe_load_all(Path(package).read_text()) if d]
    spec = documents[0]
    dags = [spec["root"].get("dag", {})] + [c.get("dag", {}) for c in spec.get("components", {}).values()]
    for dag in dags:
        for name, task in dag.get("tasks", {}).items():
            enabled = everything if everything is not None else (tasks or {}).get(name)
            if enabled is not None:
                task["cachingOptions"] = {"enableCache": True} if enabled else {}  # absent = false in the IR
    out.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return out


def without_cache(package: Path, out: Path) -> Path:
    """A copy of the package with caching off on every task (what `--no-cache` uploads to KFP: a run created from a
    pipeline version keeps the version's per-task caching settings, so the override must be in the version)."""
    return set_caching(package, out, everything=False)


def remote_fingerprint(source: str) -> str | None:
    """The source kind's fingerprint of what a cluster run will read (a gs:// prefix's names, sizes and checksums);
    None when its kind has none or names a path on the cluster's own disks; SubmitError when it cannot be taken."""
    from dermpipe.data.sources.registry import claim
    from dermpipe.storage import StorageError

    found = claim(source, on_this_machine=False)
    if found is None or found[0].fingerprint is None:
        return None
    kind, location = found
    try:
        return kind.fingerprint(location)
    except (ValueError, StorageError) as err:  # an empty prefix, no such bucket, no credentials: the message says
        raise SubmitError(str(err)) from err


def pin_split_file(params: dict[str, Any], package: Path) -> tuple[dict[str, Any], str]:
    """A gs:// split file's sha256 as `split_file_sha256`: KFP caches split on the file's name, so a changed file
    must change a parameter, and the split task refuses a file changed after the run was submitted."""
    from dermpipe.data.split_file import file_sha256
    from dermpipe.orchestration.errors import remote_errors
    from dermpipe.storage import StorageError

    uri = str(params.get("split_file", "")).strip()
    if not uri or "split_file_sha256" in params or "split_file_sha256" not in package_parameters(package):
        return params, ""
    try:
        digest = file_sha256(uri)
    except (OSError, StorageError, *remote_errors()) as err:
        raise SubmitError(f"split file {uri} cannot be read from here ({err}); the split task would fail the same "
                          f"way: check the URI and your credentials (gcloud auth application-default login)") from err
    return {**params, "split_file_sha256": digest}, f"split file {uri} sha256 {digest[:12]}…: pinned for this run"


def fingerprint_source(params: dict[str, Any], package: Path, out: Path) -> tuple[dict[str, Any], Path, str]:
    """For a source whose kind has a fingerprint (gs://): pass it as `source_fingerprint` and let ingest use the
    cache, so an unchanged data set is not copied again while any change to it is. Returns (params, package, what
    was done)."""
    from dermpipe.orchestration.errors import remote_errors

    declared = package_parameters(package)
    source = str(params.get("source", declared.get("source", {}).get("defaultValue", "")))
    if "source_fingerprint" in params or "source_fingerprint" not in declared:
        return params, package, ""
    try:
        fingerprint = remote_fingerprint(source)
    except remote_errors() as err:
        return params, package, f"could not fingerprint {source} ({err}); ingest runs without cache"
    if fingerprint is None:
        return params, package, ""
    cached = set_caching(package, out, {"ingest": True})
    return ({**params, "source_fingerprint": fingerprint}, cached,
            f"source {source} fingerprint {fingerprint}: ingest reuses its cache while the data is unchanged")
