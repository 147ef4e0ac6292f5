"""`kaggle:<owner>/<dataset>` ingest source (e.g. kaggle:andrewmvd/isic-2019) through the official `kaggle` package.

Credentials: KAGGLE_USERNAME + KAGGLE_KEY in the environment, or kaggle.json in $KAGGLE_CONFIG_DIR or ~/.kaggle
(kaggle.com -> Settings -> API -> Create New Token), which must be readable by its owner only (chmod 600): a key
file readable by group or others is refused, as the kaggle client itself warns. Credentials are only ever handed to
the kaggle client: no message, log line, metric or artifact of dermpipe contains them.

The archive goes to the download cache; the kaggle client skips it when the cached copy is current and resumes a
partial one. It is extracted once per archive version (extracted.json records which).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from dermpipe.data.sources.kind import Fetched, FetchRequest, SourceKind, prefixed

DATASET_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/versions/\d+)?$")


class KaggleSourceError(ValueError):
    """Kaggle credentials or the dataset cannot be used; the message says what to do (never the key)."""


def check_dataset(dataset: str) -> None:
    """`owner/dataset` (optionally `/versions/N`), the form the kaggle client accepts."""
    if not DATASET_PATTERN.match(dataset):
        raise KaggleSourceError(f"kaggle:{dataset}: expected kaggle:<owner>/<dataset>, e.g. kaggle:andrewmvd/isic-2019")


def credentials_source(env: dict[str, str] | None = None, home: Path | None = None) -> str:
    """Where the kaggle client will find credentials; refuses missing or over-readable ones. Never returns secrets."""
    env = dict(os.environ) if env is None else env
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "environment (KAGGLE_USERNAME, KAGGLE_KEY)"
    if env.get("KAGGLE_API_TOKEN"):
        return "environment (KAGGLE_API_TOKEN)"
    folder = Path(env.get("KAGGLE_CONFIG_DIR") or (home or Path.home()) / ".kaggle")
    path = folder / "kaggle.json"
    if not path.is_file():
        raise KaggleSourceError(
            f"no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or save the token from kaggle.com -> "
            f"Settings -> API -> Create New Token as {path} and run `chmod 600 {path}`"
        )
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KaggleSourceError(
            f"{path} is readable by other users (mode {mode:o}) and holds your Kaggle API key; refusing to use it. "
            f"Run `chmod 600 {path}` (and consider rotating the key on kaggle.com), then ingest again"
        )
    try:
        fields = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise KaggleSourceError(f"{path}: not valid JSON ({type(err).__name__}); download a new token") from None
    if not isinstance(fields, dict) or not {"username", "key"} <= set(fields):
        raise KaggleSourceError(f"{path}: expected the keys 'username' and 'key' (a Kaggle API token file)")
    return str(path)


def make_api() -> Any:
    """An authenticated KaggleApi (imported from its module: `import kaggle` would authenticate at import time)."""
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    try:
        api.authenticate()
    except (Exception, SystemExit) as err:
        raise KaggleSourceError(f"Kaggle authentication failed ({type(err).__name__}); check the credentials "
                                "(the key may have been revoked: create a new token on kaggle.com)") from None
    return api


def download_dataset(dataset: str, cache: Path, *, api: Any = None, quiet: bool = True,
                     ) -> tuple[Path, dict[str, object]]:
    """Fetch <owner>/<dataset> as a zip into cache (skipped when current, resumed when partial) and extract it once.

    Returns the extracted folder and download_* counts.
    """
    check_dataset(dataset)
    if api is None:
        credentials_source()
        api = make_api()
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"{dataset.split('/')[1]}.zip"
    before = _identity(archive)
    try:
        api.dataset_download_files(dataset, path=str(cache), force=False, quiet=quiet, unzip=False)
    except (Exception, SystemExit) as err:
        raise KaggleSourceError(
            f"kaggle:{dataset}: download failed ({type(err).__name__}: {_redact(str(err))}); check the dataset name "
            "on kaggle.com, that you accepted its rules, and the network. A partial archive is resumed next time"
        ) from None
    if not archive.is_file():
        raise KaggleSourceError(f"kaggle:{dataset}: the kaggle client reported success but {archive} is missing")
    after = _identity(archive)
    extracted = _extract_once(archive, cache / "extracted", after)
    downloaded = int(after != before)
    return extracted, {"download_files": 1, "download_downloaded": downloaded, "download_skipped": 1 - downloaded,
                       "download_bytes_downloaded": after["size"] if downloaded else 0}


def _identity(path: Path) -> dict[str, int]:
    if not path.is_file():
        return {}
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _extract_once(archive: Path, target: Path, identity: dict[str, int]) -> Path:
    """Extract the archive (zip-slip checked) unless this exact version was already extracted."""
    from dermpipe.data.sources.local import extract_zip

    marker = target.with_name("extracted.json")
    if target.is_dir() and marker.is_file() and json.loads(marker.read_text()) == identity:
        return target
    staging = target.with_name("extracting")
    shutil.rmtree(staging, ignore_errors=True)
    extract_zip(archive, staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)
    marker.write_text(json.dumps(identity))
    return target


def _redact(message: str) -> str:
    """Drop anything that looks like a credential from an error text before it reaches a log."""
    for name in ("KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        secret = os.environ.get(name)
        if secret:
            message = message.replace(secret, "***")
    return re.sub(r"(?i)(key|token|password|authorization)([\"']?\s*[:=]\s*)\S+", r"\1\2***", message)


def check(dataset: str, *, local: bool) -> None:
    """Pre-flight: the dataset name's form, and (`local`) credentials on this machine."""
    check_dataset(dataset)
    if local:
        credentials_source()


def fetch(dataset: str, request: FetchRequest) -> Fetched:
    from dermpipe.data.download import cache_dir_for

    folder, counts = download_dataset(dataset, cache_dir_for(request.source), quiet=request.quiet)
    return Fetched(folder, counts, download_cache=True)


KIND = SourceKind(name="kaggle", form="'kaggle:<owner/dataset>'", claim=prefixed("kaggle:"), fetch=fetch, check=check)
