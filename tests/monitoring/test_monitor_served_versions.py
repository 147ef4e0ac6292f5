"""`dermpipe monitor` without --reference: each version that served the log window is compared with its own profile
in the registry, so a window that spans a promotion is not judged against one model's profile."""

import datetime as dt
import json

import pytest
from synthetic_traffic import log_records, synthetic_features, write_prediction_log
from typer.testing import CliRunner

from dermpipe import config
from dermpipe.cli.main import app
from dermpipe.model.profile.reference import PROFILE_FILE

PROMOTION = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Version 1's profile is unshifted, version 2's shifted; each served 120 requests like its own profile."""
    root = tmp_path_factory.mktemp("served")
    registry = root / "registry"
    for version, shift in ((1, 0.0), (2, 1.5)):
        folder = registry / config.MODEL_NAME / str(version)
        folder.mkdir(parents=True)
        synthetic_features(400, seed=10 + version, shift=shift).assign(split="val").to_parquet(
            folder / PROFILE_FILE, index=False)
    before = log_records(synthetic_features(120, seed=2), model_version=1)
    after = log_records(synthetic_features(120, seed=3, shift=1.5), model_version=2, start=PROMOTION)
    write_prediction_log(before + after, root / "log")
    return root


def _monitor(served, tmp_path, *args):
    return CliRunner().invoke(app, ["monitor", "--current", str(served / "log"), "--out", str(tmp_path),
                                    "--fail-on-drift", *args])


def test_each_served_version_is_compared_with_its_own_profile(served, tmp_path):
    result = _monitor(served, tmp_path, "--registry-root", str(served / "registry"))
    assert result.exit_code == 0, result.output
    assert "reference  version 1 (120 lines), version 2 (120 lines)" in result.output
    summary = json.loads((tmp_path / "drift.json").read_text())
    assert summary["drift_detected"] is False
    assert [(v["counts"]["model_version"], v["current_rows"], v["drift_detected"]) for v in summary["versions"]] == [
        (1, 120, False), (2, 120, False)]
    assert summary["versions"][1]["reference"].endswith(f"{config.MODEL_NAME}/2")
    assert (tmp_path / "drift_report_v1.html").exists() and (tmp_path / "drift_report_v2.html").exists()


def test_one_reference_for_a_window_that_spans_a_promotion_sees_drift(served, tmp_path):
    """The premise of the default: against version 1's profile alone, version 2's traffic looks like drift."""
    result = _monitor(served, tmp_path, "--reference", str(served / "registry" / config.MODEL_NAME / "1"))
    assert result.exit_code == 3, result.output


def test_the_window_selects_the_versions(served, tmp_path):
    result = _monitor(served, tmp_path, "--registry-root", str(served / "registry"), "--since",
                      PROMOTION.isoformat())
    assert result.exit_code == 0, result.output
    assert "reference  version 2 (120 lines)" in result.output
    assert json.loads((tmp_path / "drift.json").read_text())["counts"]["model_version"] == 2


def test_without_a_reference_a_folder_of_images_or_a_missing_version_is_a_clear_error(served, tmp_path):
    images = CliRunner().invoke(app, ["monitor", "--current", str(tmp_path)])
    assert images.exit_code == 2 and "pass --reference" in images.output
    missing = _monitor(served, tmp_path, "--registry-root", str(tmp_path / "empty-registry"))
    assert missing.exit_code == 2 and "no reference_profile.parquet" in missing.output
