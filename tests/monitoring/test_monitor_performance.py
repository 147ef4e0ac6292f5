"""`dermpipe monitor` with fed-back labels: a per-version performance table (value, interval, n, test figure,
verdict), performance_report.html and JSON, and --retrain firing on the performance trigger with drift absent."""

import datetime as dt
import json

import pandas as pd
import pytest
from synthetic_traffic import labelled_traffic, write_prediction_log, write_version_figures
from typer.testing import CliRunner

from dermpipe import config
from dermpipe.cli.main import app
from dermpipe.model.profile.features import feature_columns
from dermpipe.model.profile.reference import PROFILE_FILE
from dermpipe.serving.labels import Label, append_labels

PROMOTION = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Version 1 served 200 predictions as well as on test; version 2, after a promotion, 200 whose melanoma
    sensitivity fell to about 0.5. Labels came back for 150 of each."""
    root = tmp_path_factory.mktemp("perf")
    steady, _ = labelled_traffic(400, seed=20)
    for version in (1, 2):
        folder = root / "registry" / config.MODEL_NAME / str(version)
        write_version_figures(folder)
        pd.DataFrame(steady)[feature_columns(5)].assign(split="val").to_parquet(folder / PROFILE_FILE, index=False)
    first, first_labels = labelled_traffic(200, seed=21, sensitivity=0.97, model_version=1)
    second, second_labels = labelled_traffic(200, seed=22, sensitivity=0.5, model_version=2, start=PROMOTION)
    write_prediction_log(first + second, root / "log")
    append_labels(str(root / "log"), config.MODEL_NAME, [Label(**x) for x in first_labels[:150] + second_labels[:150]])
    return root


def _monitor(served, out, *args):
    return CliRunner().invoke(app, ["monitor", "--current", str(served / "log"), "--registry-root",
                                    str(served / "registry"), "--out", str(out), "--n-bootstrap", "300", *args])


def test_monitor_reports_each_version_and_retrains_on_the_performance_trigger(served, tmp_path):
    result = _monitor(served, tmp_path, "--retrain", "--backend", "none", "--fail-on-drift", "--fail-on-drop")
    assert result.exit_code == 4, result.output  # no drift (3 would win), performance dropped
    assert "performance: DROP (version 1 no drop, version 2 drop)" in result.output
    assert "version 2: 200 predictions, 150 labelled, 25.0% still without a label" in result.output
    table = [line.split() for line in result.output.splitlines() if line.startswith(("1 ", "2 "))]
    sens = {row[0]: row for row in table if row[1] == "melanoma_sensitivity"}
    assert sens["2"][-1] == "drop" and sens["1"][-2:] == ["no", "drop"]
    assert "trigger    performance dropped below the version's test figures" in result.output
    summary = json.loads((tmp_path / "drift.json").read_text())
    assert summary["drift_detected"] is False and summary["triggers"]["fired"] == ["performance"]
    assert summary["retraining"]["backend"] == "none" and "performance" in summary["retraining"]["reason"]
    versions = {v["version"]: v for v in json.loads((tmp_path / "performance.json").read_text())["versions"]}
    bma = next(e for e in versions[2]["estimates"] if e["metric"] == "bma")
    assert bma["n"] == 150 and bma["lower"] < bma["point"] < bma["upper"]
    assert versions[2]["coverage"]["unlabelled_share"] == 0.25 and versions[2]["delays"]["result_days_median"] >= 3
    page = (tmp_path / "performance_report.html").read_text()
    assert "confusion matrix" in page and page.count("Evidently ClassificationPreset") == 2
    assert page.count("<iframe srcdoc=") == 2  # Evidently's classification views of each version's labelled lines


def test_a_window_before_the_promotion_sees_no_drop(served, tmp_path):
    result = _monitor(served, tmp_path, "--until", PROMOTION.isoformat(), "--period", "D", "--fail-on-drop")
    assert result.exit_code == 0, result.output
    assert "performance: no drop (version 1 no drop)" in result.output
    assert "trigger    none fired" in result.output
    periods = json.loads((tmp_path / "performance.json").read_text())["versions"][0]["periods"]
    assert sum(p["predictions"] for p in periods) == 200 and len(periods) >= 2


def test_a_registry_version_as_reference_is_where_the_test_figures_come_from(served, tmp_path, dermpipe_home):
    """No --registry-root: version 2's folder as --reference names the registry; the default registry (empty here)
    would have left every version not judged."""
    version = served / "registry" / config.MODEL_NAME / "2"
    result = CliRunner().invoke(app, ["monitor", "--current", str(served / "log"), "--reference", str(version),
                                      "--out", str(tmp_path), "--n-bootstrap", "300"])
    assert result.exit_code == 0, result.output
    assert "performance: DROP (version 1 no drop, version 2 drop)" in result.output
    assert json.loads((tmp_path / "performance.json").read_text())["registry_root"] == str(served / "registry")


def test_library_warnings_go_to_the_log_counted_not_to_the_terminal(served, tmp_path, monkeypatch):
    import sys
    import warnings

    from sklearn.metrics import precision_score

    from dermpipe.monitoring.performance import analysis

    analyse = analysis.analyse

    def noisy(*args, **kwargs):
        precision_score([0, 1], [0, 0])  # no positive prediction: scikit-learn's UndefinedMetricWarning
        return analyse(*args, **kwargs)

    monkeypatch.setattr(analysis, "analyse", noisy)
    # print warnings as a terminal run would (pytest otherwise collects them itself, so none could reach the output)
    monkeypatch.setattr(warnings, "showwarning", lambda message, category, filename, lineno, file=None, line=None:
                        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line)))
    result = _monitor(served, tmp_path)
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if "Warning" in line] == []
    counted = json.loads((tmp_path / "drift.json").read_text())["library_warnings"]
    # ours and whatever else the libraries raise on the way (pandas', Evidently's deprecations): all counted
    assert counted["by_category"]["UndefinedMetricWarning"] == 1 and counted["log"] == str(tmp_path / "warnings.log")
    assert counted["count"] == sum(counted["by_category"].values())
    assert f"warnings   {counted['count']} from libraries, in {tmp_path / 'warnings.log'}" in result.output
    logged = (tmp_path / "warnings.log").read_text().splitlines()
    assert len(logged) == counted["count"]
    assert [line for line in logged if line.startswith("UndefinedMetricWarning ")][0].endswith(
        "Precision is ill-defined and being set to 0.0 due to no predicted samples. Use `zero_division` parameter "
        "to control this behavior.")
