"""File access of the monitoring: local paths, gs:// (google-cloud-storage) and other tf.io.gfile schemes."""

from pathlib import Path


def _is_remote(path: str) -> bool:
    return "://" in path


def _gcs_client():
    """The ingest's storage client (emulator-aware, with a clear error when credentials are missing)."""
    from dermpipe.storage import make_client

    return make_client()


def _gcs_split(path: str) -> tuple[str, str]:
    bucket, _, key = path.removeprefix("gs://").partition("/")
    return bucket, key.strip("/")


def remote_list(path: str) -> list[str]:
    """Names of the entries directly inside a remote folder (gs:// through google-cloud-storage, else tf.io.gfile)."""
    if path.startswith("gs://"):
        bucket, key = _gcs_split(path)
        prefix = f"{key}/" if key else ""
        blobs = _gcs_client().list_blobs(bucket, prefix=prefix, delimiter="/")
        names = [b.name[len(prefix):] for b in blobs if b.name != prefix]
        return sorted(names + [p[len(prefix):].rstrip("/") for p in blobs.prefixes])
    import tensorflow as tf

    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(path))


def remote_exists(path: str) -> bool:
    if path.startswith("gs://"):
        bucket, key = _gcs_split(path)
        client = _gcs_client()
        if key and client.bucket(bucket).blob(key).exists():
            return True
        return any(True for _ in client.list_blobs(bucket, prefix=f"{key}/" if key else "", max_results=1))
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def exists(path: str) -> bool:
    if "://" in path:
        return remote_exists(path)
    return Path(path).exists()


def list_names(path: str) -> list[str]:
    """Names of the entries directly inside a local or remote folder, sorted."""
    if "://" in path:
        return remote_list(path)
    return sorted(p.name for p in Path(path).iterdir())


def read_bytes(path: str) -> bytes:
    if path.startswith("gs://"):
        bucket, key = _gcs_split(path)
        return _gcs_client().bucket(bucket).blob(key).download_as_bytes()
    if _is_remote(path):
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "rb") as handle:
            return handle.read()
    return Path(path).read_bytes()


def read_text(path: str) -> str:
    return read_bytes(path).decode()


def write_bytes(path: str, data: bytes) -> None:
    if path.startswith("gs://"):
        bucket, key = _gcs_split(path)
        _gcs_client().bucket(bucket).blob(key).upload_from_string(data)
        return
    if _is_remote(path):
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "wb") as handle:
            handle.write(data)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
