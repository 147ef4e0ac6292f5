"""How a split file travels: a gs:// file read by the split task through dermpipe.storage (a real GCS emulator on
loopback), its sha256 pinned by `submit` (KFP caches split on the name only), a local path made absolute and pinned by
the local runner."""

import hashlib

import pytest

from dermpipe.data.split_file import read_split_file
from dermpipe.orchestration.caching import pin_split_file
from dermpipe.orchestration.errors import SubmitError
from dermpipe.pipelines.local import pin_split_file as pin_local

CSV = b"image,split\nISIC_0024306,train\nISIC_0024307,val\n"


@pytest.fixture(scope="module")
def bucket(emulator):
    from google.cloud import storage

    return storage.Client(project="test-project").create_bucket("splits")


def test_submit_pins_a_gs_split_file_that_the_task_then_reads(bucket, training_package):
    bucket.blob("dermamnist.csv").upload_from_string(CSV)
    params, note = pin_split_file({"split_method": "file", "split_file": "gs://splits/dermamnist.csv"},
                                  training_package)
    digest = hashlib.sha256(CSV).hexdigest()
    assert params["split_file_sha256"] == digest and "pinned" in note
    given = read_split_file("gs://splits/dermamnist.csv", digest)
    assert given.assignment == {"ISIC_0024306": "train", "ISIC_0024307": "val"}
    bucket.blob("dermamnist.csv").upload_from_string(CSV + b"ISIC_0024308,train\n")
    with pytest.raises(ValueError, match="changed since the run was started"):
        read_split_file("gs://splits/dermamnist.csv", digest)


def test_submit_refuses_a_split_file_it_cannot_read(bucket, training_package):
    with pytest.raises(SubmitError, match="split file gs://splits/absent.csv cannot be read from here"):
        pin_split_file({"split_file": "gs://splits/absent.csv"}, training_package)
    assert pin_split_file({"split_method": "hash"}, training_package) == ({"split_method": "hash"}, "")


def test_the_local_runner_passes_an_absolute_path_and_its_digest(tmp_path, monkeypatch):
    (tmp_path / "split.csv").write_bytes(CSV)
    monkeypatch.chdir(tmp_path)
    params = {"split_method": "file", "split_file": "split.csv"}
    pin_local(params)
    assert params == {"split_method": "file", "split_file": str(tmp_path / "split.csv"),
                      "split_file_sha256": hashlib.sha256(CSV).hexdigest()}
