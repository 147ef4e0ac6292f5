"""`isic:<collection id or search>` ingest source through the ISIC Archive API v2 (the API isic-cli uses).

`isic:249` (or `isic:249,251`) takes the images of those collections; anything else is an ISIC search query, e.g.
`isic:diagnosis_3:"Melanoma Invasive"`. The listing is turned into the Kaggle ISIC 2019 layout: the one-hot
ground-truth CSV (each image's ISIC diagnosis mapped onto the eight ISIC 2019 classes; anything else is UNK, which
merge drops and reports), the metadata CSV, and the images under ISIC_2019_Training_Input/ISIC_2019_Training_Input/.
Public images need no credentials; set ISIC_TOKEN to send `Authorization: Bearer ...` for private collections.
ISIC_API_URL overrides the API root (tests point it at a local server).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from dermpipe import config
from dermpipe.data.download import RemoteFile, SyncStats, sync
from dermpipe.data.sources.kind import Fetched, FetchRequest, SourceKind, prefixed

DEFAULT_API = "https://api.isic-archive.com/api/v2/"
PAGE_SIZE = 100


class IsicSourceError(ValueError):
    """The ISIC API could not be listed or an image could not be fetched; the message names the request."""


def api_root() -> str:
    return (os.environ.get("ISIC_API_URL") or DEFAULT_API).rstrip("/") + "/"


def search_params(spec: str) -> dict[str, str]:
    """`249` / `249,251` -> collections filter; anything else -> search query."""
    spec = spec.strip()
    if not spec:
        raise IsicSourceError("isic: needs a collection id or a search query, e.g. isic:249 or "
                              "isic:diagnosis_3:\"Melanoma Invasive\"")
    if all(part.strip().isdigit() for part in spec.split(",")):
        return {"collections": ",".join(part.strip() for part in spec.split(",")), "limit": str(PAGE_SIZE)}
    return {"query": spec, "limit": str(PAGE_SIZE)}


def _session():
    import requests

    session = requests.Session()
    token = os.environ.get("ISIC_TOKEN")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def list_images(spec: str, session=None) -> Iterator[dict[str, Any]]:
    """Every image record of the search, following the API's `next` cursor."""
    import requests

    session = session or _session()
    url, params = f"{api_root()}images/search/", search_params(spec)
    while url:
        try:
            response = session.get(url, params=params, timeout=60)
            response.raise_for_status()
            page = response.json()
        except (requests.RequestException, ValueError) as err:
            raise IsicSourceError(f"isic:{spec}: listing {url} failed ({type(err).__name__}: {err}); check the "
                                  "collection id or query, and the network") from None
        yield from page.get("results", [])
        url, params = page.get("next"), None  # `next` carries the cursor and the filters


def isic2019_class(clinical: dict[str, Any]) -> str:
    """The ISIC 2019 class of an ISIC Archive image from its diagnosis fields, or UNK (isic_diagnosis.csv's table)."""
    from dermpipe.data.sources import isic_diagnosis

    return isic_diagnosis.isic2019_class(clinical)


def table_rows(record: dict[str, Any]) -> tuple[dict[str, object], dict[str, object]]:
    """(ground-truth row, metadata row) in the ISIC 2019 CSV layouts."""
    metadata = record.get("metadata") or {}
    clinical = metadata.get("clinical") or {}
    image = record["isic_id"]
    label = isic2019_class(clinical)
    truth = {"image": image, **{c: float(c == label) for c in config.GROUND_TRUTH_COLUMNS[1:]}}
    lesion = clinical.get("lesion_id") or (metadata.get("patient") or {}).get("lesion_id") or record.get("lesion_id")
    meta = {"image": image, "age_approx": clinical.get("age_approx"),
            "anatom_site_general": clinical.get("anatom_site_general"), "lesion_id": lesion,
            "sex": clinical.get("sex")}
    return truth, meta


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, object]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    tmp.replace(path)


def download_collection(spec: str, cache: Path, *, session=None, quiet: bool = True) -> SyncStats:
    """List the images, write both CSVs, and sync the image files into cache (skip current, resume partial)."""
    import requests

    session = session or _session()
    remotes, truths, metas = [], [], []
    for record in list_images(spec, session):
        full = (record.get("files") or {}).get("full") or {}
        if not full.get("url"):
            raise IsicSourceError(f"isic:{spec}: image {record.get('isic_id')} has no files.full.url in the listing")
        truth, meta = table_rows(record)
        truths.append(truth)
        metas.append(meta)
        # An ISIC id names immutable content; the signed URL changes with every listing and is not identity.
        remotes.append(RemoteFile(path=f"{config.IMAGE_SUBDIR}/{record['isic_id']}.jpg",
                                  size=int(full.get("size") or -1),
                                  checksum=f"isic:{record['isic_id']}:{full.get('size') or ''}", ref=full["url"]))
    if not remotes:
        raise IsicSourceError(f"isic:{spec}: the search returned no images")
    cache.mkdir(parents=True, exist_ok=True)
    _write_csv(cache / config.GROUND_TRUTH_CSV, config.GROUND_TRUTH_COLUMNS, truths)
    _write_csv(cache / config.METADATA_CSV, config.METADATA_COLUMNS, metas)

    def fetch(remote: RemoteFile, handle: BinaryIO, offset: int) -> None:
        # Signed image URLs already carry their authorisation: the API token is not sent to the file host.
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with requests.get(remote.ref, headers=headers, stream=True, timeout=60) as response:
                response.raise_for_status()
                if offset and response.status_code != 206:  # the server ignored the range: start over
                    handle.seek(0)
                    handle.truncate()
                for block in response.iter_content(1 << 20):
                    handle.write(block)
        except requests.RequestException as err:
            raise IsicSourceError(f"isic:{spec}: downloading {remote.path} failed ({type(err).__name__}); "
                                  "run the ingest again to resume") from None

    return sync(remotes, cache, fetch, quiet=quiet)


def check(spec: str, *, local: bool) -> None:
    """Pre-flight: a collection id or a search query (public images need no credentials)."""
    search_params(spec)


def fetch(spec: str, request: FetchRequest) -> Fetched:
    from dermpipe.data.download import cache_dir_for

    cache = cache_dir_for(request.source)
    return Fetched(cache, download_collection(spec, cache, quiet=request.quiet).as_metrics(), download_cache=True)


KIND = SourceKind(name="isic", form="'isic:<collection>'", claim=prefixed("isic:"), fetch=fetch, check=check)
