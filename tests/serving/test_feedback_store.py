"""Feedback validation: every label gets an outcome, each refusal its reason; accepted ones land in one submission."""

import datetime as dt

import pytest
from logged_predictions import write_log

from dermpipe.serving.feedback_store import logged_request_ids, submit_feedback, validate
from dermpipe.serving.labels import label_files, read_labels

TODAY = dt.date(2026, 12, 4)


def logged(root, ids, day="2026-12-01"):
    write_log(root, "derm", ids, day=day)


def item(rid, diagnosis="MEL", source="biopsy", date="2026-12-02", **extra):
    return {"request_id": rid, "diagnosis": diagnosis, "source": source, "date": date, **extra}


@pytest.mark.parametrize(("raw", "reason"), [
    (item("a", diagnosis="melanoma"), "unknown diagnosis 'melanoma'; expected one of MEL, NV"),
    (item("a", diagnosis="UNK"), "unknown diagnosis 'UNK'"),
    (item("a", source="dermatologist"), "unknown source 'dermatologist'; expected one of biopsy, consensus"),
    (item("a", date="02/12/2026"), "date '02/12/2026' is not an ISO date YYYY-MM-DD"),
    (item("a", date="2026-12-05"), "date 2026-12-05 is in the future"),
    ({"request_id": "a", "diagnosis": "MEL"}, "missing source, date"),
    (item("a", lesion="x"), "unknown field(s) lesion"),
    (item("nope"), "unknown request id 'nope'"),
    (item("multi"), "was a request of 2 images, logged per image: label multi-0, multi-1 instead"),
])
def test_each_bad_label_is_refused_with_its_reason(raw, reason):
    outcomes, accepted = validate([raw], {"a", "multi-0", "multi-1"}, read_labels("/nonexistent", "m"), TODAY)
    assert accepted == [] and outcomes[0].status == "refused"
    assert reason in outcomes[0].reason


def test_conflicts_and_duplicates_against_the_store_and_within_a_batch(tmp_path):
    logged(tmp_path, ["r1", "r2", "r3", "r4-0", "r4-1"])
    first = submit_feedback(str(tmp_path), "derm", [item("r1"), item("r2", "NV", "consensus")])
    assert first.counts == {"accepted": 2, "duplicate": 0, "refused": 0} and first.uri
    second = submit_feedback(str(tmp_path), "derm", [
        item("r1"),                                  # same diagnosis as stored: already known
        item("r2", "BCC"),                           # stored NV: conflict
        item("r3", "DF"), item("r3", "VASC"),        # two diagnoses in one batch: both refused
        item("r4-0", "SCC"), item("r4-0", "SCC"),    # repeated in the batch: written once
        item("r4-1", "AK", "follow-up"),
    ])
    status = [(o.request_id, o.status) for o in second.outcomes]
    assert status == [("r1", "duplicate"), ("r2", "refused"), ("r3", "refused"), ("r3", "refused"),
                      ("r4-0", "accepted"), ("r4-0", "duplicate"), ("r4-1", "accepted")]
    assert "already labelled MEL (biopsy, 2026-12-02" in second.outcomes[0].reason
    assert "conflict: 'r2' is already labelled NV (consensus" in second.outcomes[1].reason
    assert "conflicting labels for 'r3' in this submission (items 2, 3)" in second.outcomes[2].reason
    assert second.counts == {"accepted": 2, "duplicate": 2, "refused": 3}
    stored = read_labels(str(tmp_path), "derm")
    assert stored["request_id"].tolist() == ["r1", "r2", "r4-0", "r4-1"]
    assert stored["diagnosis"].tolist() == ["MEL", "NV", "SCC", "AK"]
    assert len(label_files(str(tmp_path), "derm")) == 2  # one file per submission with accepted labels
    assert second.to_dict()["labels"][1]["status"] == "refused"


def test_a_submission_with_nothing_valid_writes_no_file(tmp_path):
    logged(tmp_path, ["r1"])
    result = submit_feedback(str(tmp_path), "derm", [item("zzz"), item("r1", "XYZ")])
    assert result.uri is None and result.counts["refused"] == 2
    assert label_files(str(tmp_path), "derm") == []


def test_logged_request_ids_reads_every_day_and_is_empty_without_a_log(tmp_path):
    logged(tmp_path, ["a", "b"], day="2026-11-30")
    logged(tmp_path, ["c"], day="2026-12-01")
    assert logged_request_ids(str(tmp_path), "derm") == {"a", "b", "c"}
    assert logged_request_ids(str(tmp_path / "none"), "derm") == set()


def test_a_torn_log_line_does_not_hide_the_other_ids(tmp_path):
    logged(tmp_path, ["a", "b"])
    (path,) = (tmp_path / "derm").glob("date=*/*.jsonl")
    with open(path, "a") as handle:
        handle.write('{"timestamp":"2026-12-01T10:00:00Z","request_id":"c","model_na\n{"request_id":"d"}\n')
    assert logged_request_ids(str(tmp_path), "derm") == {"a", "b", "d"}
