"""The retraining trigger at its boundaries: the Backend it submits through (kfp), aiplatform.PipelineJob (vertex),
the training compiler dermpipe.pipelines registers, and the `local` Backend's child process (the local runner, whose
result comes back as JSON)."""

import json
import sys
import types
from pathlib import Path

import pytest

from dermpipe.orchestration import retrain as trigger_module
from dermpipe.orchestration.backend import BackendSettings, RunStatus
from dermpipe.orchestration.errors import SubmitError
from dermpipe.orchestration.retrain import parse_params, render, trigger
from dermpipe.pipelines import local_backend


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
    # compiled now (the registered `training` compiler), since no template was given: the real training DAG
    assert "dermpipe-training" in call["text"] and "exec-train" in call["text"]
    trigger("kfp", {}, settings, template_path=str(compiled))
    assert FakeBackend.calls[1]["file"] == str(compiled)


def test_compiling_uses_the_training_compiler_dermpipe_pipelines_registers(monkeypatch, tmp_path):
    from dermpipe.pipelines.compile import CompileError

    asked = []

    def failing(kind, out):
        asked.append((kind, out))
        raise CompileError("error: no such image")

    monkeypatch.setattr(trigger_module, "plugin", lambda group, name: asked.append((group, name)) or failing)
    with pytest.raises(RuntimeError, match="no such image.*template_path"):
        trigger_module.training_package("vertex", "", tmp_path)
    assert asked == [("dermpipe.compilers", "training"), ("vertex", tmp_path / "training.yaml")]
    assert trigger_module.training_package("kfp", "/x/training.yaml", tmp_path) == Path("/x/training.yaml")


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


RESULT = {"run_id": "dermpipe-training-20261125-210501", "name": "dermpipe-training", "state": "succeeded",
          "outputs": {"deployed_version": 3, "registry_uri": "/r/dermpipe-isic2019/3",
                      "test": {"balanced_accuracy": 0.6123}}}


def fake_child(ran: dict, result: dict, code: int = 0):
    """subprocess.run as the local Backend calls it: the child reads the parameter file and writes its result."""

    def run(cmd, env, **kwargs):
        ran["cmd"], ran["env"] = cmd, env
        ran["given"] = json.loads(Path(cmd[-2]).read_text())
        if result:
            Path(cmd[-1]).write_text(json.dumps(result))
        return types.SimpleNamespace(returncode=code)

    return run


def test_local_backend_runs_the_local_runner_in_a_child_and_returns_its_result(monkeypatch):
    monkeypatch.setenv("_KFP_RUNTIME", "true")  # as inside a kfp.local task
    ran = {}
    monkeypatch.setattr(local_backend.subprocess, "run", fake_child(ran, RESULT))
    started = trigger("local", {"source": "demo", "epochs": 2})
    assert ran["cmd"][:3] == [sys.executable, "-m", "dermpipe.pipelines.local_backend"]
    assert ran["given"] == {"params": {"source": "demo", "epochs": 2}, "cache": True}
    assert "_KFP_RUNTIME" not in ran["env"]
    assert started["run_id"] == "dermpipe-training-20261125-210501" and started["status"] == "succeeded"
    assert started["outputs"]["deployed_version"] == 3 and started["outputs"]["registry_uri"].endswith("/3")


def test_a_failed_local_run_is_an_error_that_names_the_run(monkeypatch):
    failed = {**RESULT, "state": "failed", "error": "task train: out of memory", "outputs": {}}
    monkeypatch.setattr(local_backend.subprocess, "run", fake_child({}, failed, code=1))
    with pytest.raises(RuntimeError, match="dermpipe-training-20261125-210501 ended failed.*train: out of memory"):
        trigger("local", {})
    monkeypatch.setattr(local_backend.subprocess, "run", fake_child({}, {}, code=2))
    with pytest.raises(SubmitError, match="exited 2 without a result"):
        trigger("local", {})


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
