"""The monitoring DAG: compiled IR (drift, performance -> trigger -> dsl.If -> retrain) and kfp.local runs with and
without drift, and with a performance drop on fed-back labels while drift is absent."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from synthetic_traffic import log_records, synthetic_features, write_prediction_log
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.model.profile.reference import PROFILE_FILE
from dermpipe.pipelines.monitoring import run_monitoring_local


@pytest.fixture(autouse=True)
def _home(dermpipe_home):
    """Monitoring runs are recorded like training runs: keep their records in the test's own home."""
    return dermpipe_home


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring")
    profile = root / "profile"
    profile.mkdir()
    synthetic_features(400, seed=1).assign(split="val").to_parquet(profile / PROFILE_FILE, index=False)
    write_prediction_log(log_records(synthetic_features(120, seed=2)), root / "same")
    write_prediction_log(log_records(synthetic_features(120, seed=3, shift=1.5)), root / "shifted")
    return root


def test_compiled_pipeline_retrains_only_under_the_drift_condition(tmp_path):
    out = tmp_path / "monitoring.yaml"
    result = CliRunner().invoke(app, ["compile", "--pipeline", "monitoring", "--out", str(out),
                                      "--image", "reg.example/dp/base:t"])
    assert result.exit_code == 0, result.output
    spec = [d for d in yaml.safe_load_all(out.read_text()) if d][0]
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"drift", "performance", "trigger", "condition-1"}
    assert set(tasks["trigger"]["dependentTasks"]) == {"drift", "performance"}
    condition = tasks["condition-1"]["triggerPolicy"]["condition"]
    assert "trigger-Output" in condition and "== true" in condition
    assert "retrain" in spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {
        "reg.example/dp/base:t"}
    assert spec["root"]["inputDefinitions"]["parameters"]["retrain_backend"]["defaultValue"] == "local"


def _run(setup, current, tmp_path):
    return run_monitoring_local({"reference": str(setup / "profile"), "current": str(setup / current),
                                 "retrain_backend": "none", "training_params": '{"epochs": 2}'},
                                pipeline_root=tmp_path / "artifacts")


@pytest.mark.slow
def test_drifted_traffic_triggers_retraining(setup, tmp_path):
    run = _run(setup, "shifted", tmp_path)
    metrics = json.loads((run / "drift/metrics").read_text())
    assert metrics["drift_detected"] == 1.0 and metrics["current_rows"] == 120 and metrics["drifted_brightness"] == 1
    assert "<!DOCTYPE html>" in (run / "drift/report").read_text()[:200]
    results = json.loads((run / "drift/results").read_text())
    assert results["decision"] == "drift" and "brightness" in results["drifted_columns"]
    request = (run / "retrain/request").read_text()
    assert "# Retraining triggered" in request and '"epochs": 2' in request


@pytest.mark.slow
def test_steady_traffic_does_not_retrain(setup, tmp_path):
    run = _run(setup, "same", tmp_path)
    assert json.loads((run / "drift/metrics").read_text())["drift_detected"] == 0.0
    assert json.loads((run / "trigger/metrics").read_text())["retrain"] == 0.0
    assert "no labels fed back" in json.loads((run / "performance/results").read_text())["message"]
    assert not (run / "retrain").exists()


@pytest.mark.slow
def test_a_monitoring_run_is_recorded_by_the_same_runner_as_training(setup, tmp_path):
    from dermpipe.lineage import store
    from dermpipe.pipelines.local import list_records

    run = _run(setup, "shifted", tmp_path)
    record = list_records()[0]
    assert (record.run_id, record.pipeline, record.status) == (run.name, "dermpipe-monitoring", "succeeded")
    assert sorted(t.name for t in record.tasks.values()) == ["drift", "performance", "retrain", "trigger"]
    assert "<!DOCTYPE html>" in Path(record.reports["drift-report"]).read_text()[:200]
    assert "# Retraining triggered" in Path(record.reports["retrain-request"]).read_text()
    assert "**Fired**: drift detected (drift)" in Path(record.reports["retrain-trigger"]).read_text()
    assert "no labels fed back" in Path(record.reports["performance-report"]).read_text()
    lineage = store.Store()
    assert lineage.run(run.name).pipeline == "dermpipe-monitoring"
    assert sorted(t.name for t in lineage.tasks(run.name)) == ["drift", "performance", "retrain", "trigger"]


@pytest.mark.slow
def test_a_sensitivity_fall_on_fed_back_labels_triggers_retraining_without_drift(tmp_path):
    """The deployed version's test sensitivity was 0.95 [0.90, 0.99]; on 240 labels of its traffic it is about 0.5:
    the performance trigger fires and retraining starts, while the traffic itself did not drift."""
    import pandas as pd
    from synthetic_traffic import labelled_traffic, write_version_figures

    from dermpipe import config
    from dermpipe.model.profile.features import feature_columns
    from dermpipe.serving.labels import Label, append_labels

    version = tmp_path / "registry" / config.MODEL_NAME / "1"
    write_version_figures(version)
    steady, _ = labelled_traffic(400, seed=8)
    pd.DataFrame(steady)[feature_columns(5)].assign(split="val").to_parquet(version / PROFILE_FILE, index=False)
    records, labels = labelled_traffic(300, seed=9, sensitivity=0.5)
    write_prediction_log(records, tmp_path / "log")
    append_labels(str(tmp_path / "log"), config.MODEL_NAME, [Label(**x) for x in labels[:240]])
    # No registry_root: the performance task judges against the registry the drift reference (a version) lies in.
    run = run_monitoring_local({"reference": str(version), "current": str(tmp_path / "log"),
                                "model_name": config.MODEL_NAME, "retrain_backend": "none"},
                               pipeline_root=tmp_path / "artifacts")
    assert json.loads((run / "drift/metrics").read_text())["drift_detected"] == 0.0
    performance = json.loads((run / "performance/metrics").read_text())
    assert performance["performance_dropped"] == 1.0 and performance["v1_labelled"] == 240
    assert performance["v1_melanoma_sensitivity_melanoma_sens95_upper"] < 0.9
    assert json.loads((run / "trigger/metrics").read_text()) == {"retrain": 1.0, "drift_trigger": 0.0,
                                                                 "performance_trigger": 1.0}
    assert "**Fired**: performance dropped" in (run / "trigger/report").read_text()
    assert "DROP" in (run / "performance/report").read_text()
    assert "# Retraining triggered" in (run / "retrain/request").read_text()


def test_monitor_cli_on_a_log(setup, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["monitor", "--reference", str(setup / "profile"), "--current",
                                      str(setup / "shifted"), "--out", str(out), "--fail-on-drift",
                                      "--retrain", "--backend", "none"])
    assert result.exit_code == 3, result.output
    assert "decision   drift:" in result.output and "brightness" in result.output
    assert "retrain    none" in result.output
    summary = json.loads((out / "drift.json").read_text())
    assert summary["retraining"]["backend"] == "none" and summary["counts"]["log_lines"] == 120
    assert (out / "drift_report.html").stat().st_size > 10_000
    few = CliRunner().invoke(app, ["monitor", "--reference", str(setup / "profile"), "--current",
                                   str(setup / "same"), "--until", "2026-11-24T00:00:10", "--out", str(out)])
    assert few.exit_code == 0 and "insufficient data: 10 current rows" in few.output
    missing = CliRunner().invoke(app, ["monitor", "--reference", str(tmp_path), "--current", str(setup / "same")])
    assert missing.exit_code == 2 and "no reference_profile.parquet" in missing.output
    np.testing.assert_equal(summary["drift_detected"], True)


def test_the_monitoring_dag_takes_the_same_placement_as_training(tmp_path):
    from dermpipe.pipelines.compile import compile_pipeline
    from dermpipe.pipelines.placement import Placement

    out = compile_pipeline("monitoring", tmp_path / "m.yaml", placement=Placement(drift_cpu="6", step_memory="3G"))
    spec = [d for d in yaml.safe_load_all(out.read_text()) if d][0]
    executors = spec["deploymentSpec"]["executors"]
    drift, retrain = executors["exec-drift"]["container"], executors["exec-retrain"]["container"]
    assert (drift["resources"]["cpuLimit"], drift["resources"]["memoryLimit"]) == (6.0, 16.0)
    assert (retrain["resources"]["cpuLimit"], retrain["resources"]["memoryLimit"]) == (2.0, 3.0)
    assert {e["name"] for e in drift["env"]} >= {"DERMPIPE_CODE_VERSION"}


@pytest.mark.slow
def test_drift_retrains_locally_through_the_local_backend(setup, tmp_path):
    """retrain_backend local: the retrain task submits through the `local` Backend, which runs the local runner in
    a child process (the pipeline's defaults under the parameters the monitoring run passed) and returns its result:
    run id, status and outputs, read from the run's record, not from printed text."""
    from dermpipe.pipelines.local import list_records

    tiny = {"demo_images": 80, "epochs": 1, "image_size": 32, "backbone": "simple_cnn", "tta": False,
            "explain_per_class": 1}
    run = run_monitoring_local({"reference": str(setup / "profile"), "current": str(setup / "shifted"),
                                "retrain_backend": "local", "training_params": json.dumps(tiny)},
                               pipeline_root=tmp_path / "artifacts")
    request = (run / "retrain/request").read_text()
    training = next(r for r in list_records() if r.pipeline == "dermpipe-training")
    assert f"| run_id | {training.run_id} |" in request and "| status | succeeded |" in request
    assert f"| outputs | {{'test': {training.headline()}" in request  # the test figures, the deployed version...
    assert training.status == "succeeded" and training.params["epochs"] == 1
    # the cluster profile: what the monitoring run did not set is the pipeline's own default, not the laptop's
    assert training.params["patience"] == 3 and training.params["image_size"] == 32
