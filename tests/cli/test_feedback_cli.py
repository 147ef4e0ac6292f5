"""`dermpipe feedback` through typer's CliRunner against a prediction log written by the real PredictionLog."""

import json

import pytest
from logged_predictions import write_log
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.serving.labels import read_labels

MODEL = "derm"


@pytest.fixture()
def log_root(tmp_path):
    write_log(tmp_path / "predictions", MODEL, ["aa", "bb", "cc"])
    return str(tmp_path / "predictions")


def invoke(*args):
    return CliRunner().invoke(app, ["feedback", "--model-name", MODEL, *args])


def test_csv_file_prints_each_outcome_and_exits_1_when_one_is_refused(log_root, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,diagnosis,source,date\naa,MEL,biopsy,2026-11-30\nbb,NV,consensus,2026-11-30\n"
                      "xx,BCC,biopsy,2026-11-30\n")
    result = invoke("--log-root", log_root, "--file", str(labels))
    assert result.exit_code == 1, result.output
    assert "accepted  #0 aa" in result.output and "accepted  #1 bb" in result.output
    assert "refused   #2 xx: unknown request id 'xx'" in result.output
    assert "2 accepted, 0 already known, 1 refused; stored in " in result.output
    assert read_labels(log_root, MODEL)["request_id"].tolist() == ["aa", "bb"]


def test_labels_stored_from_the_cli_record_the_os_user_and_host(log_root, monkeypatch):
    import socket

    monkeypatch.setenv("LOGNAME", "dr-ward")  # getpass.getuser() reads LOGNAME first
    result = invoke("--log-root", log_root, "--request-id", "aa", "--diagnosis", "MEL", "--source", "biopsy",
                    "--date", "2026-11-30")
    assert result.exit_code == 0 and "as sent by dr-ward" in result.output, result.output
    stored = read_labels(log_root, MODEL).iloc[0]
    assert (stored["submitted_by"], stored["auth"], stored["client"]) == ("dr-ward", "os-user", socket.gethostname())


def test_one_label_from_flags_and_its_repeat_is_already_known(log_root):
    flags = ["--log-root", log_root, "--request-id", "cc", "--diagnosis", "SCC", "--source", "follow-up",
             "--date", "2026-12-01"]
    first, again = invoke(*flags), invoke(*flags)
    assert first.exit_code == 0 and "1 accepted" in first.output, first.output
    assert again.exit_code == 0 and "duplicate #0 cc: already labelled SCC" in again.output
    assert "nothing written" in again.output
    assert len(read_labels(log_root, MODEL)) == 1


def test_jsonl_file_and_conflict(log_root, tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"request_id": "aa", "diagnosis": "MEL", "source": "biopsy", "date": "2026-11-30"})
                      + "\n\n" + json.dumps({"request_id": "aa", "diagnosis": "BKL", "source": "biopsy",
                                             "date": "2026-11-30"}) + "\n")
    result = invoke("--log-root", log_root, "--file", str(labels))
    assert result.exit_code == 1
    assert "conflicting labels for 'aa' in this submission (items 0, 1)" in result.output
    assert read_labels(log_root, MODEL).empty


@pytest.mark.parametrize(("content", "suffix", "message"), [
    ("request_id,diagnosis\naa,MEL\n", ".csv", "expected exactly request_id, diagnosis, source, date"),
    ("{broken\n", ".jsonl", "line 1 is not JSON"),
    ("", ".jsonl", "no labels in it"),
    ("x", ".txt", "expected a .csv or .jsonl file"),
])
def test_unreadable_files_exit_2_with_the_reason(log_root, tmp_path, content, suffix, message):
    labels = tmp_path / f"labels{suffix}"
    labels.write_text(content)
    result = invoke("--log-root", log_root, "--file", str(labels))
    assert result.exit_code == 2 and message in result.output


def test_file_and_flags_together_or_nothing_exit_2(log_root, tmp_path):
    both = invoke("--log-root", log_root, "--file", str(tmp_path / "x.csv"), "--request-id", "aa")
    neither = invoke("--log-root", log_root)
    assert both.exit_code == 2 and "not both" in both.output
    assert neither.exit_code == 2 and "no labels" in neither.output
