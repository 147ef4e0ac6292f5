"""One file API for a local folder and gs://bucket/prefix (other schemes through tf.io.gfile), with the two writes a
shared registry needs.

- `create_if_absent`: exactly one writer wins (O_EXCL locally; `if_generation_match=0` on Cloud Storage).
- `compare_and_swap`: replace a small file only if it is still what the caller read (an flock'ed re-read locally;
  `if_generation_match=<generation read>` on Cloud Storage). tf.io.gfile offers neither, hence google-cloud-storage.

Local writes go to a temporary file beside the target and are renamed over it, so a reader never sees half a file.
URIs are plain paths or `gs://bucket/key`. Credentials are Google's Application Default Credentials; with
STORAGE_EMULATOR_HOST set (tests, local emulators) the client talks to that emulator anonymously.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

ABSENT = "0"  # the token of a file that does not exist (Cloud Storage's generation-match value for "no object")


class StorageError(ValueError):
    """Cloud Storage cannot be reached or read; the message says what to do."""


def make_client():
    """A Cloud Storage client: anonymous against STORAGE_EMULATOR_HOST, else Application Default Credentials."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "dermpipe-emulator"),
                              credentials=AnonymousCredentials())
    try:
        return storage.Client()
    except Exception as err:  # google.auth.exceptions.DefaultCredentialsError and friends
        raise _no_client(err) from err


def _no_client(err: Exception) -> StorageError:
    return StorageError(f"cannot create a Cloud Storage client ({type(err).__name__}): set "
                        "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run "
                        "`gcloud auth application-default login`")


def check_credentials() -> None:
    """Application Default Credentials can be found (nothing is contacted but the metadata server, if on GCP):
    the check make_client's Client() does first, without importing the storage client (pre-flight stays quick)."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return
    import google.auth

    try:
        google.auth.default()
    except Exception as err:  # DefaultCredentialsError, or an unreadable key file
        raise _no_client(err) from err


class PreconditionFailed(RuntimeError):
    """Another writer got there first (the file exists, or changed since it was read)."""


def is_gcs(uri: str) -> bool:
    return str(uri).startswith("gs://")


def _is_gfile(uri: str) -> bool:
    """Another URI scheme (ram://, hdfs://, s3:// with its plugin ...): plain reads and writes through tf.io.gfile."""
    return "://" in str(uri) and not is_gcs(uri)


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def join(base: str, *parts: object) -> str:
    return "/".join([str(base).rstrip("/"), *(str(p).strip("/") for p in parts)])


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = str(uri)[5:].partition("/")
    return bucket, key


@functools.cache
def _cached_client(emulator: str):  # keyed by STORAGE_EMULATOR_HOST: tests start emulators on different ports
    return make_client()


def _client():
    """One client per process (per emulator), not one per call."""
    return _cached_client(os.environ.get("STORAGE_EMULATOR_HOST", ""))


def _blob(uri: str, generation: int | None = None):
    bucket, key = _split(uri)
    return _client().bucket(bucket).blob(key, generation=generation)


def read_bytes(uri: str) -> bytes:
    """The file's bytes; FileNotFoundError naming the URI when it is missing."""
    if is_gcs(uri):
        from google.api_core import exceptions

        try:
            return _blob(uri).download_as_bytes()
        except exceptions.NotFound as err:
            raise FileNotFoundError(f"{uri}: no such object") from err
    if _is_gfile(uri):
        if not _gfile().exists(uri):
            raise FileNotFoundError(f"{uri}: no such file")
        with _gfile().GFile(uri, "rb") as handle:
            return handle.read()
    return Path(uri).read_bytes()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    """Write (replace) a file; locally through a temporary file and a rename."""
    if is_gcs(uri):
        _blob(uri).upload_from_string(data)
        return
    if _is_gfile(uri):
        _gfile().makedirs(uri.rsplit("/", 1)[0])
        with _gfile().GFile(uri, "wb") as handle:
            handle.write(data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, path)


def exists(uri: str) -> bool:
    """A file, or a folder (a prefix with at least one object under it on Cloud Storage)."""
    if is_gcs(uri):
        bucket, key = _split(uri)
        client = _client()
        if key and client.bucket(bucket).blob(key).exists():
            return True
        prefix = f"{key.rstrip('/')}/" if key else ""
        return any(True for _ in client.list_blobs(bucket, prefix=prefix, max_results=1))
    if _is_gfile(uri):
        return _gfile().exists(uri)
    return Path(uri).exists()


def list_names(uri: str) -> list[str]:
    """Names directly under a folder (files and sub-folders), sorted; [] when the folder does not exist."""
    if is_gcs(uri):
        bucket, key = _split(uri)
        prefix = f"{key.strip('/')}/" if key.strip("/") else ""
        blobs = _client().list_blobs(bucket, prefix=prefix, delimiter="/")
        names = [b.name[len(prefix):] for b in blobs if b.name != prefix]
        return sorted(names + [p[len(prefix):].rstrip("/") for p in blobs.prefixes])
    if _is_gfile(uri):
        return sorted(n.rstrip("/") for n in _gfile().listdir(uri)) if _gfile().isdir(uri) else []
    path = Path(uri)
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def create_if_absent(uri: str, data: bytes) -> bool:
    """Create the file only if nothing is there; True when this call created it, False when it already existed."""
    if is_gcs(uri):
        from google.api_core import exceptions

        try:
            _blob(uri).upload_from_string(data, if_generation_match=0)
        except exceptions.PreconditionFailed:
            return False
        return True
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True


def read_with_token(uri: str) -> tuple[bytes | None, str]:
    """(bytes or None when absent, token) where the token identifies this state of the file for compare_and_swap."""
    if is_gcs(uri):
        from google.api_core import exceptions

        bucket, key = _split(uri)
        blob = _client().bucket(bucket).get_blob(key)
        if blob is None:
            return None, ABSENT
        try:  # read the generation just listed, so bytes and token describe the same object
            return _blob(uri, generation=blob.generation).download_as_bytes(), str(blob.generation)
        except exceptions.NotFound:
            return read_with_token(uri)  # replaced in between: read the new one
    path = Path(uri)
    if not path.exists():
        return None, ABSENT
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def compare_and_swap(uri: str, data: bytes, token: str) -> None:
    """Replace the file with `data` if it is still in the state `token` names; PreconditionFailed otherwise."""
    if is_gcs(uri):
        from google.api_core import exceptions

        try:
            _blob(uri).upload_from_string(data, if_generation_match=int(token))
        except exceptions.PreconditionFailed as err:
            raise PreconditionFailed(f"{uri} changed since it was read (generation {token})") from err
        return
    path = Path(uri)
    with _locked(path):
        if read_with_token(uri)[1] != token:
            raise PreconditionFailed(f"{uri} changed since it was read")
        write_bytes(uri, data)


def upload_tree(local_dir: Path, uri: str, *, last: tuple[str, ...] = ()) -> list[str]:
    """Copy every file under local_dir to uri/<relative path>; the files named in `last` go last. Returns the
    relative paths in the order written."""
    files = sorted(p.relative_to(local_dir).as_posix() for p in Path(local_dir).rglob("*") if p.is_file())
    ordered = [f for f in files if f not in last] + [f for f in last if f in files]
    for name in ordered:
        target = join(uri, name)
        if is_gcs(uri):
            _blob(target).upload_from_filename(str(Path(local_dir) / name))
        else:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(local_dir) / name, target)
    return ordered


def list_files(uri: str) -> list[str]:
    """Relative paths of every file under a folder, sorted."""
    if is_gcs(uri):
        bucket, key = _split(uri)
        prefix = f"{key.strip('/')}/"
        blobs = _client().list_blobs(bucket, prefix=prefix)
        return sorted(b.name[len(prefix):] for b in blobs if not b.name.endswith("/"))
    root = Path(uri)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def copy_tree(src: str, dst: str, *, last: tuple[str, ...] = ()) -> list[str]:
    """Copy every file of folder src to dst (server-side on Cloud Storage); the files named in `last` go last."""
    files = list_files(src)
    ordered = [f for f in files if f not in last] + [f for f in last if f in files]
    for name in ordered:
        source, target = join(src, name), join(dst, name)
        if is_gcs(src) and is_gcs(dst):
            blob = _blob(source)
            bucket, key = _split(target)
            blob.bucket.copy_blob(blob, blob.bucket.client.bucket(bucket), key)
        else:
            write_bytes(target, read_bytes(source))
    return ordered


def download(uri: str, local_path: Path) -> Path:
    """Copy one file to a local path."""
    local_path.parent.mkdir(parents=True, exist_ok=True)
    if is_gcs(uri):
        from google.api_core import exceptions

        try:
            _blob(uri).download_to_filename(str(local_path))
        except exceptions.NotFound as err:
            raise FileNotFoundError(f"{uri}: no such object") from err
    else:
        shutil.copyfile(uri, local_path)
    return local_path


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a local file (a model's digest: the registry's identity for 'the same model')."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
