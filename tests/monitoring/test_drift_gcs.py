"""gs:// reference and prediction log through the real google-cloud-storage client against gcp-storage-emulator."""

import datetime as dt
import json
import time

import pytest
from synthetic_traffic import log_records, synthetic_features
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.model.profile.reference import PCA_FILE, PROFILE_FILE, fit_embedding_pca


@pytest.fixture(scope="module")
def bucket(emulator, tmp_path_factory):
    """A bucket with a registry version (profile files + current.json) and three days of prediction log."""
    from dermpipe.storage import make_client as _gcs_client

    tmp = tmp_path_factory.mktemp("gcs")
    bucket = _gcs_client().create_bucket(f"b{time.time_ns()}")
    profile = synthetic_features(300, seed=1, n_components=3)
    profile.to_parquet(tmp / PROFILE_FILE, index=False)
    fit_embedding_pca(profile[["emb_0", "emb_1", "emb_2"]].to_numpy(), 3).save(tmp / PCA_FILE)
    for name in (PROFILE_FILE, PCA_FILE):
        bucket.blob(f"registry/m/2/{name}").upload_from_filename(str(tmp / name))
    bucket.blob("registry/m/2/dermpipe.json").upload_from_string(json.dumps({"model_name": "m"}))
    bucket.blob("registry/m/current.json").upload_from_string(
        json.dumps({"version": 2, "uri": f"gs://{bucket.name}/registry/m/2"}))
    start = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    for day in range(3):  # 23rd and 25th like the reference, the 24th shifted
        rows = synthetic_features(60, seed=10 + day, shift=1.5 if day == 1 else 0.0, n_components=3)
        records = log_records(rows, model_name="m", start=start + dt.timedelta(days=day), seconds_apart=60)
        bucket.blob(f"logs/m/date=2026-11-{23 + day}/part-00000.jsonl").upload_from_string(
            "".join(json.dumps(r) + "\n" for r in records))
    return bucket


def test_monitor_reads_registry_and_log_window_from_gcs(bucket, tmp_path):
    result = CliRunner().invoke(app, ["monitor", "--reference", f"gs://{bucket.name}/registry/m", "--current",
                                      f"gs://{bucket.name}/logs", "--since", "2026-11-24", "--until", "2026-11-25",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "drift.json").read_text())
    assert summary["reference"] == f"gs://{bucket.name}/registry/m/2"
    assert summary["counts"] == {"log_files": 1, "log_lines": 60, "malformed_lines": 0, "outside_window": 0}
    assert summary["decision"] == "drift" and "emb_0" in summary["drifted_columns"]
    quiet = CliRunner().invoke(app, ["monitor", "--reference", f"gs://{bucket.name}/registry/m/2", "--current",
                                     f"gs://{bucket.name}/logs/m", "--since", "2026-11-25", "--out", str(tmp_path)])
    assert quiet.exit_code == 0, quiet.output
    assert json.loads((tmp_path / "drift.json").read_text())["decision"] == "no drift"


def test_missing_gcs_objects_are_named(bucket):
    result = CliRunner().invoke(app, ["monitor", "--reference", f"gs://{bucket.name}/registry/nope", "--current",
                                      f"gs://{bucket.name}/logs"])
    assert result.exit_code == 2 and f"gs://{bucket.name}/registry/nope: no reference_profile.parquet" in result.output
    missing_log = CliRunner().invoke(app, ["monitor", "--reference", f"gs://{bucket.name}/registry/m", "--current",
                                           f"gs://{bucket.name}/elsewhere"])
    assert missing_log.exit_code == 2 and "no prediction log for model 'm'" in missing_log.output
