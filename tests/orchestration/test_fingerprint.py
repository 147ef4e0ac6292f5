"""gs:// source fingerprints against a real GCS emulator on loopback (gcp-storage-emulator): what changes them, and
what `dermpipe submit` sends with them (the fingerprint parameter and an ingest task allowed to use the cache)."""

import socket

import pytest
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.orchestration.caching import remote_fingerprint
from dermpipe.orchestration.errors import SubmitError


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    from gcp_storage_emulator.server import create_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    patch = pytest.MonkeyPatch()
    patch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    patch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    from google.cloud import storage

    client = storage.Client()
    bucket = client.create_bucket("isic")
    yield server, client, bucket
    patch.undo()
    server.stop()


@pytest.fixture
def data(gcs):
    server, client, bucket = gcs
    server.wipe(keep_buckets=True)
    for name in ("isic-2019/ISIC_2019_Training_GroundTruth.csv", "isic-2019/images/ISIC_0000000.jpg",
                 "isic-2019/images/ISIC_0000001.jpg", "other/notes.txt"):
        bucket.blob(name).upload_from_string(f"content of {name}")
    return client, bucket


def test_fingerprint_follows_the_objects_under_the_prefix_only(data):
    _, bucket = data
    first = remote_fingerprint("gs://isic/isic-2019")
    assert first == remote_fingerprint("gs://isic/isic-2019") and len(first) == 16
    bucket.blob("other/notes.txt").upload_from_string("changed outside the prefix")
    assert remote_fingerprint("gs://isic/isic-2019") == first

    bucket.blob("isic-2019/images/ISIC_0000001.jpg").upload_from_string("same size, new generation!!!!!!")
    rewritten = remote_fingerprint("gs://isic/isic-2019")
    assert rewritten != first
    bucket.blob("isic-2019/images/ISIC_0000002.jpg").upload_from_string("new image")
    added = remote_fingerprint("gs://isic/isic-2019")
    assert added not in (first, rewritten)
    bucket.blob("isic-2019/images/ISIC_0000002.jpg").delete()
    assert remote_fingerprint("gs://isic/isic-2019") == rewritten


def test_empty_prefix_is_an_error_that_names_it(data):
    with pytest.raises(SubmitError, match="gs://isic/nothing-here: no objects found"):
        remote_fingerprint("gs://isic/nothing-here")


def submitted(kfp_stub, package, *extra):
    result = CliRunner().invoke(app, ["submit", "--backend", "kfp", "--host", kfp_stub.host, "--package",
                                      str(package), "-p", "source=gs://isic/isic-2019", *extra])
    assert result.exit_code == 0, result.output
    (create,) = kfp_stub.calls("POST", "/runs")
    version = kfp_stub.versions[create.body["pipeline_version_reference"]["pipeline_version_id"]]
    return result, create.body["runtime_config"]["parameters"], version["pipeline_spec"]["root"]["dag"]["tasks"]


def test_submit_sends_the_fingerprint_and_lets_ingest_use_the_cache(data, kfp_stub, training_package):
    result, params, tasks = submitted(kfp_stub, training_package)
    assert params["source_fingerprint"] == remote_fingerprint("gs://isic/isic-2019")
    assert tasks["ingest"]["cachingOptions"] == {"enableCache": True}
    assert f"fingerprint {params['source_fingerprint']}" in result.output


def test_without_fingerprint_ingest_stays_uncached(data, kfp_stub, training_package):
    _, params, tasks = submitted(kfp_stub, training_package, "--no-fingerprint-source")
    assert "source_fingerprint" not in params
    assert tasks["ingest"].get("cachingOptions", {}).get("enableCache", False) is False
    assert tasks["train"]["cachingOptions"] == {"enableCache": True}
