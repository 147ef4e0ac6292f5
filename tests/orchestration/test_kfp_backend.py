"""`dermpipe submit/status/runs/schedule --backend kfp` through the real kfp.Client against the loopback KFP stub."""

import socket

import pytest
from typer.testing import CliRunner

from dermpipe.cli.main import app


def invoke(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def submit(stub, package, *extra):
    return invoke("submit", "--backend", "kfp", "--host", stub.host, "--package", package, *extra)


def test_submit_uploads_the_pipeline_creates_the_experiment_and_starts_a_run(kfp_stub, training_package, tmp_path):
    config = tmp_path / "params.yaml"
    config.write_text("parameters:\n  source: gs://bucket/isic-2019\n  epochs: 5\n  registry_root: gs://b/reg\n")
    result = submit(kfp_stub, training_package, "--config", config, "--param", "epochs=20", "-p", "tta=false",
                    "--experiment", "nightly", "--name", "dermpipe-training-test", "--pipeline-root", "gs://b/art")
    assert result.exit_code == 0, result.output
    assert "submitted dermpipe-training-test to kfp: run run-" in result.output

    (upload,) = kfp_stub.calls("POST", "/pipelines/upload")
    assert upload.query["name"] == "dermpipe-training"
    assert "exec-train" in upload.upload and "reg.example/dp/trainer-gpu:t" in upload.upload
    (version,) = kfp_stub.calls("POST", "/pipelines/upload_version")
    assert version.query["name"] == "dermpipe-training-test"
    (experiment,) = kfp_stub.calls("POST", "/experiments")
    assert experiment.body["display_name"] == "nightly"

    (create,) = kfp_stub.calls("POST", "/runs")
    run = create.body
    assert run["display_name"] == "dermpipe-training-test"
    assert run["experiment_id"] == kfp_stub.experiments.popitem()[0]
    reference = run["pipeline_version_reference"]
    assert kfp_stub.versions[reference["pipeline_version_id"]]["pipeline_id"] == reference["pipeline_id"]
    assert kfp_stub.versions[reference["pipeline_version_id"]]["display_name"] == "dermpipe-training-test"
    # YAML file first, then --param on top, typed (int, bool) as the pipeline declares them
    assert run["runtime_config"]["parameters"] == {"source": "gs://bucket/isic-2019", "epochs": 20,
                                                   "registry_root": "gs://b/reg", "tta": False}
    assert run["runtime_config"]["pipeline_root"] == "gs://b/art"
    assert "pipeline_spec" not in run  # run by version reference, not an inline spec


def test_second_submit_adds_a_version_to_the_existing_pipeline_and_reuses_the_experiment(kfp_stub, training_package):
    assert submit(kfp_stub, training_package, "--name", "first").exit_code == 0
    result = submit(kfp_stub, training_package, "--name", "second")
    assert result.exit_code == 0, result.output
    assert submit(kfp_stub, training_package, "--name", "second").exit_code == 0  # version names stay unique
    assert len(kfp_stub.calls("POST", "/pipelines/upload")) == 1
    assert [r.query["name"] for r in kfp_stub.calls("POST", "/pipelines/upload_version")] == [
        "first", "second", "second-2"]
    assert len(kfp_stub.calls("POST", "/experiments")) == 1
    assert len(kfp_stub.pipelines) == 1 and len(kfp_stub.runs) == 3


def test_no_cache_turns_caching_off_for_the_run(kfp_stub, training_package):
    assert submit(kfp_stub, training_package, "--no-cache").exit_code == 0
    assert submit(kfp_stub, training_package).exit_code == 0
    # kfp.Client sends the override only with an inline spec; by version reference the server keeps the compiled
    # per-task settings. --no-cache must therefore travel inside the uploaded version.
    first, second = (kfp_stub.versions[r.body["pipeline_version_reference"]["pipeline_version_id"]]["pipeline_spec"]
                     for r in kfp_stub.calls("POST", "/runs"))
    assert {t.get("cachingOptions", {}).get("enableCache", False)
            for t in first["root"]["dag"]["tasks"].values()} == {False}
    assert second["root"]["dag"]["tasks"]["train"]["cachingOptions"] == {"enableCache": True}
    assert "enableCache" not in second["root"]["dag"]["tasks"]["ingest"].get("cachingOptions", {})


def test_unknown_parameter_is_refused_before_anything_is_sent(kfp_stub, training_package):
    result = submit(kfp_stub, training_package, "--param", "epoch=3")
    assert result.exit_code == 2
    assert "unknown pipeline parameter(s) epoch" in result.output and "epochs" in result.output
    assert kfp_stub.requests == []


def test_wait_streams_task_states_until_the_run_ends(kfp_stub, training_package):
    kfp_stub.run_script = [
        ("RUNNING", {"ingest": "RUNNING"}),
        ("RUNNING", {"ingest": "SUCCEEDED", "merge": "RUNNING"}),
        ("SUCCEEDED", {"ingest": "SUCCEEDED", "merge": "SUCCEEDED", "train": "SUCCEEDED"}),
    ]
    result = submit(kfp_stub, training_package, "--wait", "--poll", "0")
    assert result.exit_code == 0, result.output
    lines = [line.split(None, 1)[1] for line in result.output.splitlines() if line[:2].isdigit()]
    assert [" ".join(line.split()) for line in lines] == [
        "run running", "ingest running", "ingest succeeded", "merge running", "run succeeded", "merge succeeded",
        "train succeeded"]
    assert "state    succeeded" in result.output


def test_wait_exits_1_when_the_run_fails(kfp_stub, training_package):
    kfp_stub.run_script = [("FAILED", {"train": "FAILED"})]
    result = submit(kfp_stub, training_package, "--wait", "--poll", "0")
    assert result.exit_code == 1
    assert "train" in result.output and "failed" in result.output


def test_status_and_runs_read_the_remote_runs(kfp_stub, training_package):
    submit(kfp_stub, training_package, "--name", "one")
    submit(kfp_stub, training_package, "--name", "two")
    kfp_stub.run_script = [("RUNNING", {"ingest": "SUCCEEDED", "train": "RUNNING"})]
    run_id = next(k for k, v in kfp_stub.runs.items() if v["display_name"] == "two")
    result = invoke("status", run_id, "--backend", "kfp", "--host", kfp_stub.host)
    assert result.exit_code == 0, result.output
    assert "state    running" in result.output
    assert "train" in result.output and f"{kfp_stub.host}/#/runs/details/{run_id}" in result.output
    assert "two" in result.output

    listed = invoke("runs", "--backend", "kfp", "--host", kfp_stub.host, "--limit", "5")
    assert listed.exit_code == 0, listed.output
    assert "one" in listed.output and "two" in listed.output
    (query,) = kfp_stub.calls("GET", "/runs")
    assert query.query["page_size"] == "5" and query.query["sort_by"] == "created_at desc"


def test_missing_host_is_a_clear_error():
    result = invoke("runs", "--backend", "kfp")
    assert result.exit_code == 2 and "--host" in result.output


def test_unreachable_host_is_a_clear_error():
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = invoke("runs", "--backend", "kfp", "--host", host)
    assert result.exit_code == 2
    assert f"cannot reach Kubeflow Pipelines at {host}" in result.output and "port-forward" in result.output


@pytest.mark.parametrize("cron, sent", [("0 6 * * *", "0 0 6 * * *"), ("30 0 3 * * 1", "30 0 3 * * 1")])
def test_schedule_create_makes_a_recurring_run_with_a_six_field_cron(kfp_stub, training_package, cron, sent):
    result = invoke("schedule", "create", "--backend", "kfp", "--host", kfp_stub.host, "--package", training_package,
                    "--cron", cron, "-p", "source=gs://b/isic", "--name", "weekly-training")
    assert result.exit_code == 0, result.output
    (create,) = kfp_stub.calls("POST", "/recurringruns")
    body = create.body
    assert body["display_name"] == "weekly-training"
    assert body["trigger"]["cron_schedule"]["cron"] == sent
    assert body["mode"] == "ENABLE" and int(body["max_concurrency"]) == 1 and body["no_catchup"] is True
    assert body["runtime_config"]["parameters"] == {"source": "gs://b/isic"}
    assert kfp_stub.versions[body["pipeline_version_reference"]["pipeline_version_id"]]["display_name"] == \
        "weekly-training"
    assert "created weekly-training  id=rec-" in result.output


def test_schedule_list_pause_resume_delete_by_name(kfp_stub, training_package):
    for name, cron in (("daily-monitoring", "0 6 * * *"), ("weekly-training", "0 3 * * 1")):
        assert invoke("schedule", "create", "--backend", "kfp", "--host", kfp_stub.host, "--package",
                      training_package, "--cron", cron, "--name", name).exit_code == 0
    base = ["--backend", "kfp", "--host", kfp_stub.host]
    listed = invoke("schedule", "list", *base)
    assert "daily-monitoring" in listed.output and "0 0 6 * * *" in listed.output and "enabled" in listed.output

    daily = next(k for k, v in kfp_stub.recurring.items() if v["display_name"] == "daily-monitoring")
    assert invoke("schedule", "pause", "daily-monitoring", *base).exit_code == 0
    assert kfp_stub.calls("POST", f"/recurringruns/{daily}:disable")
    assert kfp_stub.recurring[daily]["status"] == "DISABLED"
    assert "paused" in invoke("schedule", "list", *base).output

    assert invoke("schedule", "resume", daily, *base).exit_code == 0
    assert kfp_stub.recurring[daily]["status"] == "ENABLED"

    deleted = invoke("schedule", "delete", "weekly-training", *base)
    assert deleted.exit_code == 0 and "deleted weekly-training" in deleted.output
    assert [v["display_name"] for v in kfp_stub.recurring.values()] == ["daily-monitoring"]

    missing = invoke("schedule", "pause", "nope", *base)
    assert missing.exit_code == 2 and "no schedule 'nope'" in missing.output and "daily-monitoring" in missing.output


def test_server_errors_are_reported_without_a_traceback(kfp_stub):
    result = invoke("status", "run-404", "--backend", "kfp", "--host", kfp_stub.host)
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "run run-404 not found" in result.output
    assert "Traceback" not in result.output


def test_retraining_submits_through_the_same_backend_as_submit(kfp_stub, training_package):
    from dermpipe.orchestration.backend import BackendSettings
    from dermpipe.orchestration.retrain import trigger

    started = trigger("kfp", {"source": "/data/isic", "epochs": 5}, BackendSettings(host=kfp_stub.host),
                      template_path=str(training_package))
    (create,) = kfp_stub.calls("POST", "/runs")
    assert started["run_id"] in kfp_stub.runs and started["backend"] == "kfp"
    assert create.body["display_name"].startswith("dermpipe-retrain-") and started["status"] == "pending"
    assert create.body["runtime_config"]["parameters"] == {"source": "/data/isic", "epochs": 5}
    (upload,) = kfp_stub.calls("POST", "/pipelines/upload")
    assert upload.query["name"] == "dermpipe-training"
    assert started["url"] == f"{kfp_stub.host}/#/runs/details/{started['run_id']}"
