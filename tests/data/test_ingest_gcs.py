"""gs:// ingest through the real google-cloud-storage client against gcp-storage-emulator on loopback."""

import json
import shutil
import time
from pathlib import Path

import pytest

from dermpipe.data.ingest import IngestError, ingest_source
from dermpipe.lineage.artifacts import sha256_file

N_IMAGES = 12


@pytest.fixture()
def bucket(emulator, isic_sample, tmp_path, monkeypatch):
    """A fresh bucket holding N_IMAGES real sample images + both CSVs in the Kaggle layout under isic-2019/."""
    from dermpipe.data.sources.gcs import make_client

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    monkeypatch.setenv("DERMPIPE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    client = make_client()
    name = f"b{time.time_ns()}"
    bucket = client.create_bucket(name)
    images = sorted((isic_sample / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input").glob("*.jpg"))[:N_IMAGES]
    for path in images:
        bucket.blob(f"isic-2019/ISIC_2019_Training_Input/ISIC_2019_Training_Input/{path.name}").upload_from_filename(
            str(path))
    for csv in isic_sample.glob("*.csv"):
        bucket.blob(f"isic-2019/{csv.name}").upload_from_filename(str(csv))
    bucket.blob("isic-2019-old/decoy.txt").upload_from_string(b"must not be listed under isic-2019/")
    return bucket


def test_gs_ingest_downloads_once_then_nothing(bucket, tmp_path):
    uri = f"gs://{bucket.name}/isic-2019"
    first = ingest_source(uri, tmp_path / "run1")
    assert first["source_kind"] == "gs" and first["n_images"] == N_IMAGES
    assert first["download_files"] == N_IMAGES + 2 and first["download_downloaded"] == N_IMAGES + 2
    assert first["download_skipped"] == 0 and first["download_bytes_downloaded"] > 0
    manifest = json.loads((tmp_path / "run1" / "manifest.json").read_text())
    image = next(e for e in manifest if e["path"].endswith(".jpg"))
    blob = bucket.get_blob(f"isic-2019/{image['path']}")
    assert image["source_checksum"] == f"md5:{blob.md5_hash}"
    assert image["sha256"] == sha256_file(tmp_path / "run1" / image["path"])

    second = ingest_source(uri, tmp_path / "run2")
    assert second["download_downloaded"] == 0 and second["download_skipped"] == N_IMAGES + 2
    assert second["download_bytes_downloaded"] == 0
    assert second["manifest_sha256"] == first["manifest_sha256"]

    changed = f"isic-2019/ISIC_2019_Training_Input/ISIC_2019_Training_Input/{Path(image['path']).name}"
    bucket.blob(changed).upload_from_string(b"new content")
    third = ingest_source(uri, tmp_path / "run3")
    assert third["download_downloaded"] == 1 and third["download_bytes_downloaded"] == len(b"new content")
    assert third["manifest_sha256"] != first["manifest_sha256"]


def test_gs_partial_download_resumes(bucket, tmp_path):
    from dermpipe.data.download import cache_dir_for
    from dermpipe.data.sources.gcs import download, make_client

    uri = f"gs://{bucket.name}/isic-2019"
    cache = cache_dir_for(uri)
    download(uri, cache)
    csv = cache / "ISIC_2019_Training_GroundTruth.csv"
    full = csv.read_bytes()
    # Simulate an interrupted transfer: the finished file becomes a half-written .part of the same remote version.
    state = json.loads((cache / ".sync-state.json").read_text())
    entry = state.pop(csv.name)
    (cache / ".sync-state.json").write_text(json.dumps(state))
    csv.unlink()
    (cache / (csv.name + ".part")).write_bytes(full[: len(full) // 2])
    (cache / (csv.name + ".part.json")).write_text(json.dumps({"checksum": entry["checksum"], "size": len(full)}))
    stats, _ = download(uri, cache, client=make_client())
    assert stats.resumed == 1 and stats.downloaded == 1
    assert stats.bytes_downloaded == len(full) - len(full) // 2  # only the missing half travelled
    assert csv.read_bytes() == full and not (cache / (csv.name + ".part")).exists()


def test_gs_corrupt_partial_is_discarded_and_reported(bucket, tmp_path):
    """A .part whose bytes are wrong fails the md5 check: the error names the object, the bad file is removed."""
    from dermpipe.data.download import DownloadError, cache_dir_for
    from dermpipe.data.sources.gcs import download

    uri = f"gs://{bucket.name}/isic-2019"
    cache = cache_dir_for(uri)
    download(uri, cache)
    csv = cache / "ISIC_2019_Training_Metadata.csv"
    full = csv.read_bytes()
    state = json.loads((cache / ".sync-state.json").read_text())
    checksum = state.pop(csv.name)["checksum"]
    (cache / ".sync-state.json").write_text(json.dumps(state))
    csv.unlink()
    (cache / (csv.name + ".part")).write_bytes(b"X" * 10)
    (cache / (csv.name + ".part.json")).write_text(json.dumps({"checksum": checksum, "size": len(full)}))
    with pytest.raises(DownloadError, match=r"isic-2019/ISIC_2019_Training_Metadata.csv.*md5"):
        download(uri, cache)
    assert not (cache / (csv.name + ".part")).exists()
    download(uri, cache)  # the next run starts that file afresh
    assert csv.read_bytes() == full


def test_gs_errors_name_the_bucket(emulator, tmp_path, monkeypatch):
    from dermpipe.data.sources.gcs import make_client

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    monkeypatch.setenv("DERMPIPE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    with pytest.raises(IngestError, match="no objects under this prefix"):
        ingest_source(f"gs://{make_client().create_bucket('emptyb').name}/nothing", tmp_path / "raw")
    with pytest.raises(IngestError, match="missing-bucket"):
        ingest_source("gs://missing-bucket/isic", tmp_path / "raw2")


def test_gs_fingerprint_changes_with_content(bucket):
    from dermpipe.data.sources.gcs import fingerprint, parse_gs_uri

    assert parse_gs_uri("gs://b/x/y/") == ("b", "x/y/") and parse_gs_uri("gs://b") == ("b", "")
    uri = f"gs://{bucket.name}/isic-2019"
    from dermpipe.pipelines.local import source_fingerprint

    before, run_key = fingerprint(uri), source_fingerprint(uri, 400)
    assert fingerprint(uri) == before and source_fingerprint(uri, 400) == run_key
    bucket.blob("isic-2019/extra.txt").upload_from_string(b"x")
    assert fingerprint(uri) != before
    assert source_fingerprint(uri, 400) != run_key  # the local runner's ingest cache key follows the bucket


def test_cache_is_outside_the_artifact(bucket, tmp_path):
    ingest_source(f"gs://{bucket.name}/isic-2019", tmp_path / "raw")
    assert not list((tmp_path / "raw").rglob("*.part")) and not (tmp_path / "raw" / ".sync-state.json").exists()
    shutil.rmtree(tmp_path / "raw")  # removing an artifact leaves the cache intact (hard links)
    assert list((tmp_path / "cache").rglob("*.jpg"))
