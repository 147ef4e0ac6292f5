"""`isic:<collection id or search>` ingest source: the ISIC Archive through isic-cli (sources/isic_client.py).

`isic:249` (or `isic:249,251`) takes the images of those collections; anything else is an ISIC search query, e.g.
`isic:diagnosis_3:"Melanoma Invasive"`. The listing is turned into the Kaggle ISIC 2019 layout: the one-hot
ground-truth CSV (each image's ISIC diagnosis mapped onto the eight ISIC 2019 classes; anything else is UNK, which
merge drops and reports), the metadata CSV (with each image's `copyright_license` and `attribution`, the Archive's
own fields, and `isic_diagnosis` / `isic_diagnosis_reason`, the diagnosis its class was read from and why, which
merge's report names for every UNK image), and the images under
ISIC_2019_Training_Input/ISIC_2019_Training_Input/. Credentials: ISIC_TOKEN, else the token `isic user login`
stored, else none (public images); ISIC_API_URL overrides the API root (tests point it at a local server).
"""

from __future__ import annotations

import csv
import os
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

from dermpipe import config
from dermpipe.data.download import RemoteFile, SyncStats, sync
from dermpipe.data.sources import isic_client as client
from dermpipe.data.sources.isic_client import IsicSourceError
from dermpipe.data.sources.kind import Fetched, FetchRequest, SourceKind, prefixed

# The Archive's own field names for an image's licence (CC-0, CC-BY, CC-BY-NC) and its attribution.
LICENCE_FIELDS: tuple[str, ...] = ("copyright_license", "attribution")
# The Archive diagnosis each image's class was read from, and why it is that class: merge names them for UNK images.
DIAGNOSIS_FIELDS: tuple[str, ...] = ("isic_diagnosis", "isic_diagnosis_reason")
PREFLIGHT_MAX_WAIT_S = 30.0  # the pre-flight answers in seconds or says the Archive is unreachable
DOWNLOAD_WORKERS = max(10, os.cpu_count() or 10)  # images fetched at once: isic-cli's `isic image download` pool


def isic2019_class(clinical: dict[str, Any]) -> str:
    """The ISIC 2019 class of an ISIC Archive image from its diagnosis fields, or UNK (isic_diagnosis.csv's table)."""
    from dermpipe.data.sources import isic_diagnosis

    return isic_diagnosis.isic2019_class(clinical)


def table_rows(record: dict[str, Any]) -> tuple[dict[str, object], dict[str, object]]:
    """(ground-truth row, metadata row) in the ISIC 2019 CSV layouts, the metadata with the image's licence and the
    Archive diagnosis its class was read from (isic_diagnosis, isic_diagnosis_reason)."""
    from dermpipe.data.sources import isic_diagnosis

    metadata = record.get("metadata") or {}
    clinical = metadata.get("clinical") or {}
    image = record["isic_id"]
    found = isic_diagnosis.classify(clinical)
    truth = {"image": image, **{c: float(c == found.isic2019_class) for c in config.GROUND_TRUTH_COLUMNS[1:]}}
    lesion = clinical.get("lesion_id") or (metadata.get("patient") or {}).get("lesion_id") or record.get("lesion_id")
    meta = {"image": image, "age_approx": clinical.get("age_approx"),
            "anatom_site_general": clinical.get("anatom_site_general"), "lesion_id": lesion,
            "sex": clinical.get("sex"), **{name: record.get(name) for name in LICENCE_FIELDS},
            "isic_diagnosis": found.diagnosis, "isic_diagnosis_reason": found.why}
    return truth, meta


def metadata_columns() -> tuple[str, ...]:
    """The ISIC 2019 metadata columns plus the licence and diagnosis fields (once, should the schema name them)."""
    return tuple(dict.fromkeys((*config.METADATA_COLUMNS, *LICENCE_FIELDS, *DIAGNOSIS_FIELDS)))


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, object]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    tmp.replace(path)


def _remote(spec: str, record: dict[str, Any]) -> RemoteFile:
    full = (record.get("files") or {}).get("full") or {}
    if not full.get("url"):
        raise IsicSourceError(f"isic:{spec}: image {record.get('isic_id')} has no files.full.url in the listing")
    # An ISIC id names immutable content; the signed URL changes with every listing and is not identity.
    return RemoteFile(path=f"{config.IMAGE_SUBDIR}/{record['isic_id']}.jpg", size=int(full.get("size") or -1),
                      checksum=f"isic:{record['isic_id']}:{full.get('size') or ''}", ref=full["url"])


def download_collection(spec: str, cache: Path, *, creds: client.Credentials | None = None, quiet: bool = True,
                        ) -> tuple[SyncStats, dict[str, int]]:
    """Count, list, write both CSVs and sync the image files into cache (skip current, resume partial).

    Returns the sync's counts and the Archive's figures: images and bytes it announced, images without a licence.
    """
    creds = creds or client.credentials()
    session = client.api_session(creds)
    announced, size = client.count_and_size(spec, session)
    if not quiet:  # the task log says what was asked for, and as whom, before the progress bar
        print(_what(spec, announced, size, creds), file=sys.stderr, flush=True)
    remotes, truths, metas = [], [], []
    for record in client.list_images(spec, session):
        truth, meta = table_rows(record)
        truths.append(truth)
        metas.append(meta)
        remotes.append(_remote(spec, record))
    if not remotes:
        raise IsicSourceError(f"isic:{spec}: the search returned no images; check the collection id or query (a "
                              "private collection needs `isic user login` or ISIC_TOKEN)")
    cache.mkdir(parents=True, exist_ok=True)
    _write_csv(cache / config.GROUND_TRUTH_CSV, config.GROUND_TRUTH_COLUMNS, truths)
    _write_csv(cache / config.METADATA_CSV, metadata_columns(), metas)
    label = f"isic:{spec}: {announced:,} images, {client.human_bytes(size)}"
    stats = sync(remotes, cache, _file_fetcher(spec), quiet=quiet, desc=label, workers=DOWNLOAD_WORKERS)
    unlicensed = sum(1 for meta in metas if not meta.get("copyright_license"))
    return stats, {"download_archive_images": announced, "download_archive_bytes": size,
                   "download_without_licence": unlicensed}


def _file_fetcher(spec: str):
    """The download cache's fetcher: isic-cli's session without the token (signed URLs), resuming from offset; one
    session per download thread, as isic-cli opens one per image (a requests Session is not made for threads)."""
    import requests

    local = threading.local()

    def fetch(remote: RemoteFile, handle: BinaryIO, offset: int) -> None:
        if not hasattr(local, "session"):
            local.session = client.file_session()
        try:
            client.download_file(local.session, remote.ref, handle, offset)
        except requests.RequestException as err:
            raise IsicSourceError(f"isic:{spec}: downloading {Path(remote.path).name}: {client.describe(err)}; the "
                                  "bytes already received are kept: run the ingest again to resume") from None

    return fetch


def check(spec: str, *, local: bool) -> None:
    """Pre-flight: the form; with `local`, the credentials this machine will send, each collection id (it exists and
    they may see it), the Archive's count and size, said on stderr (a search that finds nothing is refused)."""
    client.search_arguments(spec)
    if not local:  # a cluster's ingest brings its own credentials (ISIC_TOKEN) and network
        return
    budget = min(PREFLIGHT_MAX_WAIT_S, client.max_wait_from_env())  # a bad DERMPIPE_ISIC_MAX_WAIT_S is refused here
    creds = client.credentials()
    session = client.api_session(creds, max_wait=budget)
    client.check_collections(spec, session, creds)
    count, size = client.count_and_size(spec, session)
    if not count:
        raise IsicSourceError(f"isic:{spec}: the ISIC Archive finds no images for it (credentials: {creds.source})"
                              "; check the collection id or query (a private collection needs `isic user login` "
                              "or ISIC_TOKEN)")
    print(_what(spec, count, size, creds), file=sys.stderr)


def _what(spec: str, count: int, size: int, creds: client.Credentials) -> str:
    """One line for a person: what the Archive holds for the source, where, and with which credentials."""
    return (f"isic:{spec}: {count:,} images, {client.human_bytes(size)} on the ISIC Archive ({client.api_root()}); "
            f"credentials: {creds.source}")


def fetch(spec: str, request: FetchRequest) -> Fetched:
    from dermpipe.data.download import cache_dir_for

    cache = cache_dir_for(request.source)
    stats, archive = download_collection(spec, cache, quiet=request.quiet)
    return Fetched(cache, {**stats.as_metrics(), **archive}, download_cache=True)


KIND = SourceKind(name="isic", form="'isic:<collection>'", claim=prefixed("isic:"), fetch=fetch, check=check)
