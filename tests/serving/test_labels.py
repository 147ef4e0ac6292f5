"""The label store: one new file per submission, atomic, append-only; local and gs:// (gcp-storage-emulator)."""

import json
import time
from pathlib import Path

import pytest

from dermpipe import storage
from dermpipe.serving import labels as store
from dermpipe.serving.labels import Label, append_labels, label_files, labels_root, read_labels

FIRST = [Label("r1", "MEL", "biopsy", "2026-11-30"), Label("r2-0", "NV", "consensus", "2026-12-01")]
SECOND = [Label("r3", "BCC", "follow-up", "2026-12-02")]


def test_labels_root_is_beside_the_day_partitions():
    assert labels_root("gs://b/logs/", "derm") == "gs://b/logs/derm/labels"
    assert labels_root("/x/logs", "derm") == "/x/logs/derm/labels"


def test_empty_store_reads_as_empty_frame_with_columns(tmp_path):
    frame = read_labels(str(tmp_path), "derm")
    assert frame.empty
    assert list(frame.columns) == ["request_id", "diagnosis", "source", "date", "received_at", "submission_id",
                                   "submitted_by", "auth", "client"]


def test_each_label_carries_who_sent_it_and_files_from_before_read_as_unrecorded(tmp_path):
    who = {"submitted_by": "clinic-a", "auth": "bearer", "client": "10.0.0.7"}
    uri = append_labels(str(tmp_path), "derm", FIRST, audit=who)
    assert all({**json.loads(line)} | who == json.loads(line) for line in Path(uri).read_text().splitlines())
    older = Path(labels_root(str(tmp_path), "derm")) / "20261101T000000Z-old.jsonl"  # written before the audit
    older.write_text(json.dumps({"request_id": "r9", "diagnosis": "DF", "source": "biopsy", "date": "2026-11-01",
                                 "received_at": "2026-11-01T00:00:00Z", "submission_id": "old"}) + "\n")
    frame = read_labels(str(tmp_path), "derm").set_index("request_id")
    assert frame.loc["r1", ["submitted_by", "auth", "client"]].tolist() == ["clinic-a", "bearer", "10.0.0.7"]
    assert frame.loc["r9", ["submitted_by", "auth", "client"]].tolist() == ["", "", ""]


def test_an_unknown_audit_field_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match="unknown audit field.*token"):
        append_labels(str(tmp_path), "derm", FIRST, audit={"token": "never stored"})
    assert read_labels(str(tmp_path), "derm").empty


def test_each_submission_is_one_new_file_and_earlier_files_never_change(tmp_path):
    first = append_labels(str(tmp_path), "derm", FIRST, received_at="2026-12-03T10:00:00Z")
    before = Path(first).read_bytes()
    second = append_labels(str(tmp_path), "derm", SECOND, received_at="2026-12-03T11:00:00Z")
    assert first != second and Path(first).read_bytes() == before
    assert label_files(str(tmp_path), "derm") == [first, second]
    lines = [json.loads(line) for line in before.decode().splitlines()]
    assert lines[0]["request_id"] == "r1" and lines[0]["received_at"] == "2026-12-03T10:00:00Z"
    assert lines[0]["submission_id"] == lines[1]["submission_id"]
    frame = read_labels(str(tmp_path), "derm")
    assert frame["request_id"].tolist() == ["r1", "r2-0", "r3"]
    assert frame["diagnosis"].tolist() == ["MEL", "NV", "BCC"]
    assert frame["source"].tolist() == ["biopsy", "consensus", "follow-up"]
    assert frame["submission_id"].nunique() == 2


def test_a_failed_write_leaves_no_file_at_all(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        append_labels(str(tmp_path), "derm", FIRST)
    folder = Path(labels_root(str(tmp_path), "derm"))
    assert list(folder.iterdir()) == []  # neither a partial label file nor the temporary file
    assert read_labels(str(tmp_path), "derm").empty


def test_an_empty_submission_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="no labels"):
        append_labels(str(tmp_path), "derm", [])
    assert not Path(labels_root(str(tmp_path), "derm")).exists()


def test_a_hand_edited_file_is_named_on_read(tmp_path):
    uri = append_labels(str(tmp_path), "derm", FIRST)
    Path(uri).write_text(Path(uri).read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"line 3 is not JSON"):
        read_labels(str(tmp_path), "derm")


def test_gcs_store_creates_objects_and_reads_them_back(emulator):
    from dermpipe.storage import make_client

    bucket = make_client().create_bucket(f"labels{time.time_ns()}")
    root = f"gs://{bucket.name}/logs"
    first = append_labels(root, "derm", FIRST, received_at="2026-12-03T10:00:00Z")
    second = append_labels(root, "derm", SECOND, received_at="2026-12-03T11:00:00Z")
    assert first.startswith(f"gs://{bucket.name}/logs/derm/labels/") and first != second
    frame = read_labels(root, "derm")
    assert frame["request_id"].tolist() == ["r1", "r2-0", "r3"]
    assert frame["received_at"].tolist() == ["2026-12-03T10:00:00Z"] * 2 + ["2026-12-03T11:00:00Z"]
    assert bucket.blob(first.removeprefix(f"gs://{bucket.name}/")).download_as_bytes().count(b"\n") == 2
    assert storage.create_if_absent(first, b"x") is False  # an existing submission is never replaced
    assert read_labels(root, "derm")["request_id"].tolist() == ["r1", "r2-0", "r3"]
