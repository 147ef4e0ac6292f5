"""The retraining trigger at its boundaries: the Backend it submits through (kfp), aiplatform.PipelineJob (vertex),
and the child processes it starts (`dermpipe compile`, `dermpipe run --config FILE --profile cluster`)."""

import sys
import types
from pathlib import Path

import pytest
import yaml

from dermpipe.orchestration import retrain as trigger_module
from dermpipe.orchestration.backend import BackendSettings, RunStatus
from dermpipe.orchestration.errors import SubmitError
from dermpipe.orchestration.retrain import parse_params, parse_summary, render, trigger


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    from dermpipe.pipelines.compile import compile_training

    return compile_training(tmp_path_factory.mktemp("retrain") / "training.yaml")


class FakeBackend:
    """Records what the trigger submits through the Backend interface."""

    calls: list = []

    def submit(self, package, params, *, name, experiment, cache=True):
        FakeBackend.calls.append({"file": str(package), "text": Path(package).read_text(), "params": params,
                                  "name": name, "experiment": experiment, "cache": cache})
        return RunStatus("run-123", name, "pending", url="http://kfp/#/runs/details/run-123")


def test_kfp_backend_submits_the_compiled_training_pipeline(monkeypatch, compiled):
    connected = []
    monkeypatch.setattr(trigger_module, "connect", lambda kind, settings: connected.append((kind, settings))
                        or FakeBackend())
    FakeBackend.calls.clear()
    settings = BackendSettings(host="https://kfp.example")
    started = trigger("kfp", {"source": "/data/isic", "epochs": 5}, settings)
    assert started["run_id"] == "run-123" and started["backend"] == "kfp" and started["status"] == "pending"
    assert connected == [("kfp", settings)]
    call = FakeBackend.calls[0]
    assert call["params"] == {"source": "/data/isic", "epochs": 5}
    assert call["name"].startswith("dermpipe-retrain-")
    # compiled now (`dermpipe compile` in a child process), since no template was given: the real training DAG
    assert "dermpipe-training" in call["text"] and "exec-train" in call["text"]
    trigger("kfp", {}, settings, template_path=str(compiled))
    assert FakeBackend.calls[1]["file"] == str(compiled)


def test_compiling_runs_the_cli_for_the_backend(monkeypatch, tmp_path):
    ran = {}

    def fake_run(cmd, env, **kwargs):
        ran["cmd"], ran["env"] = cmd, env
        return types.SimpleNamespace(returncode=2, stdout="", stderr="error: no such image")

    monkeypatch.setenv("_KFP_RUNTIME", "true")
    monkeypatch.setattr(trigger_module.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="no such image.*template_path"):
        trigger_module.training_package("vertex", "", tmp_path)
    assert ran["cmd"][1:] == ["-m", "dermpipe.cli.main", "compile", "--pipeline", "training", "--backend", "vertex",
                              "--out", str(tmp_path / "training.yaml")]
    assert "_KFP_RUNTIME" not in ran["env"]


class FakePipelineJob:
    made: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.submitted = None
        self.resource_name = "projects/p/locations/europe-west4/pipelineJobs/job-1"
        FakePipelineJob.made.append(self)

    def submit(self, **kwargs):
        self.submitted = kwargs


def test_vertex_backend_submits_a_pipeline_job(monkeypatch, compiled):
    fake = types.ModuleType("google.cloud.aiplatform")
    fake.PipelineJob = FakePipelineJob
    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform", fake)
    import google.cloud

    monkeypatch.setattr(google.cloud, "aiplatform", fake, raising=False)
    started = trigger("vertex", {"source": "/gcs/b/isic"}, BackendSettings(
        project="p", region="europe-west4", pipeline_root="gs://b/root"), template_path=str(compiled))
    job = FakePipelineJob.made[-1]
    assert job.submitted is not None and started["run_id"].endswith("job-1")
    assert job.kwargs["template_path"] == str(compiled) and job.kwargs["pipeline_root"] == "gs://b/root"
    assert job.kwargs["parameter_values"] == {"source": "/gcs/b/isic"} and job.kwargs["project"] == "p"
    with pytest.raises(SubmitError, match="pipeline-root"):
        trigger("vertex", {}, BackendSettings(project="p", region="europe-west4"), template_path=str(compiled))
    with pytest.raises(SubmitError, match="--project"):
        trigger("vertex", {}, template_path=str(compiled))


SUMMARY = """
run        dermpipe-training-20261125-210501
status     succeeded
artifacts  /home/u/.dermpipe/artifacts/dermpipe-training-20261125-210501
test balanced_accuracy  0.6123
"""


def test_local_backend_runs_dermpipe_run_on_a_parameter_file_with_the_pipeline_profile(monkeypatch):
    monkeypatch.setenv("_KFP_RUNTIME", "true")  # as inside a kfp.local task
    ran = {}

    def fake_subprocess_run(cmd, env, **kwargs):
        ran["cmd"], ran["env"] = cmd, env
        ran["params"] = yaml.safe_load(Path(cmd[cmd.index("--config") + 1]).read_text())
        return types.SimpleNamespace(returncode=0, stdout="noise\nrunning a stage\n" + SUMMARY, stderr=None)

    monkeypatch.setattr(trigger_module.subprocess, "run", fake_subprocess_run)
    started = trigger("local", {"source": "demo", "epochs": 2})
    assert ran["cmd"][:3] == [sys.executable, "-m", "dermpipe.cli.main"]
    assert ran["cmd"][3:] == ["run", "--config", ran["cmd"][5], "--profile", "cluster"]
    assert ran["params"] == {"source": "demo", "epochs": 2}
    assert "_KFP_RUNTIME" not in ran["env"]
    assert started["run_id"] == "dermpipe-training-20261125-210501" and started["status"] == "succeeded"


def test_a_failed_local_run_is_an_error_that_names_the_run(monkeypatch):
    failed = SUMMARY.replace("status     succeeded", "status     failed\nerror      train: out of memory")
    monkeypatch.setattr(trigger_module.subprocess, "run",
                        lambda cmd, env, **kw: types.SimpleNamespace(returncode=1, stdout=failed, stderr=None))
    with pytest.raises(RuntimeError, match="dermpipe-training-20261125-210501 ended failed.*train: out of memory"):
        trigger("local", {})
    monkeypatch.setattr(trigger_module.subprocess, "run",
                        lambda cmd, env, **kw: types.SimpleNamespace(returncode=2, stdout="Usage: ...", stderr=None))
    with pytest.raises(RuntimeError, match="no run summary"):
        trigger("local", {})


def test_parse_summary_reads_the_label_value_lines():
    assert parse_summary(SUMMARY) == {"run_id": "dermpipe-training-20261125-210501", "status": "succeeded"}
    assert parse_summary("run the tests\nstatus: fine\n") == {}


def test_none_backend_and_bad_input():
    started = trigger("none", {"epochs": 1})
    assert started["run_id"] == "" and "not submitted" in started["status"]
    assert "| backend | none |" in render(started, "drift detected") and '"epochs": 1' in render(started, "x")
    with pytest.raises(ValueError, match="not one of"):
        trigger("airflow", {})
    with pytest.raises(ValueError, match="not JSON"):
        parse_params("{epochs: 1}")
    with pytest.raises(ValueError, match="JSON object"):
        parse_params("[1]")
    assert parse_params("") == {}
