"""`gs://bucket/prefix` ingest source: the Kaggle layout stored in Cloud Storage, mirrored into the download cache.

Credentials are Google's Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth
application-default login`, or the workload's service account). With STORAGE_EMULATOR_HOST set (tests, local
emulators) the client talks to that emulator anonymously.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from dermpipe.data.download import RemoteFile, SyncStats, sync
from dermpipe.data.sources.kind import Fetched, FetchRequest, SourceKind, prefixed
from dermpipe.storage import StorageError, make_client  # noqa: F401 (make_client: the one client factory)


class GcsSourceError(StorageError):
    """The gs:// source cannot be listed or read; the message says which bucket/prefix and what to do."""


class EmptyPrefixError(GcsSourceError):
    """No objects under the gs:// prefix (a typo in the bucket or prefix, or data not uploaded yet)."""


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/some/prefix` -> ("bucket", "some/prefix/"); the prefix ends with '/' unless empty."""
    if not uri.startswith("gs://") or not uri[5:].split("/", 1)[0]:
        raise GcsSourceError(f"{uri!r}: expected gs://BUCKET or gs://BUCKET/PREFIX")
    bucket, _, prefix = uri[5:].partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def list_remote(uri: str, client) -> list[RemoteFile]:
    """Every object under the prefix (folder placeholders skipped), identified by its md5 (or crc32c) and generation."""
    from google.api_core import exceptions

    bucket, prefix = parse_gs_uri(uri)
    try:
        blobs = list(client.list_blobs(bucket, prefix=prefix))
    except exceptions.NotFound as err:
        raise GcsSourceError(f"{uri}: bucket {bucket!r} does not exist (or is not visible to these credentials)") \
            from err
    except exceptions.Forbidden as err:
        raise GcsSourceError(f"{uri}: listing refused; the credentials need storage.objects.list on bucket "
                             f"{bucket!r} (role roles/storage.objectViewer)") from err
    files = []
    for blob in blobs:
        if blob.name.endswith("/"):
            continue
        checksum = f"md5:{blob.md5_hash}" if blob.md5_hash else f"crc32c:{blob.crc32c}"
        files.append(RemoteFile(path=blob.name[len(prefix):], size=int(blob.size), checksum=checksum,
                                ref=f"gs://{bucket}/{blob.name}#{blob.generation}"))
    if not files:
        raise EmptyPrefixError(f"{uri}: no objects under this prefix; expected the Kaggle ISIC 2019 layout "
                             "(the two CSVs and ISIC_2019_Training_Input/) below it")
    return sorted(files, key=lambda f: f.path)


def fingerprint(uri: str, client=None) -> str:
    """Changes when any object under the prefix changes (name, size, checksum); one listing, no download.

    The gs:// kind's fingerprint: `dermpipe submit`'s source_fingerprint and the local runner's ingest cache key. It
    follows content (md5/crc32c), not generations: ingest's output depends on the bytes only.
    """
    import hashlib

    try:
        remotes = list_remote(uri, client or make_client())
    except EmptyPrefixError as err:  # said before anything runs: the listing command finds the typo
        raise EmptyPrefixError(f"{uri}: no objects found; check the bucket and prefix (gcloud storage ls {uri})") \
            from err
    digest = hashlib.sha256(uri.encode())
    for remote in remotes:
        digest.update(f"{remote.path}|{remote.size}|{remote.checksum}".encode())
    return digest.hexdigest()[:16]


def download(uri: str, dest: Path, *, client=None, quiet: bool = True) -> tuple[SyncStats, dict[str, str]]:
    """Mirror gs://bucket/prefix into dest; returns the transfer counts and each file's source checksum."""
    client = client or make_client()
    remotes = list_remote(uri, client)

    def fetch(remote: RemoteFile, handle: BinaryIO, offset: int) -> None:
        name, _, generation = remote.ref[5:].split("/", 1)[1].rpartition("#")
        bucket, _ = parse_gs_uri(uri)
        # Pin the generation listed: if the object is replaced mid-run the read fails instead of mixing versions.
        blob = client.bucket(bucket).blob(name, generation=int(generation))
        blob.download_to_file(handle, start=offset or None, checksum=None if offset else "auto")

    return sync(remotes, dest, fetch, quiet=quiet), {r.path: r.checksum for r in remotes}


def check(uri: str, *, local: bool) -> None:
    """Pre-flight: gs://BUCKET[/PREFIX], and (`local`) Cloud Storage credentials on this machine."""
    from dermpipe.storage import check_credentials

    parse_gs_uri(uri)
    if local:
        check_credentials()


def fetch(uri: str, request: FetchRequest) -> Fetched:
    from dermpipe.data.download import cache_dir_for

    cache = cache_dir_for(request.source)
    stats, _ = download(uri, cache, quiet=request.quiet)
    return Fetched(cache, stats.as_metrics(), download_cache=True)


KIND = SourceKind(name="gs", form="'gs://bucket/prefix'", claim=prefixed("gs://", keep=True), fetch=fetch, check=check,
                  fingerprint=fingerprint)
