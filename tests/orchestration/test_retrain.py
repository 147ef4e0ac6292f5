"""The retraining trigger at its client boundaries: kfp.Client and aiplatform.PipelineJob fakes, local runner."""

import json
import sys
import types

import pytest

from dermpipe.components import retrain as trigger_module
from dermpipe.components.retrain import parse_params, render, trigger


class FakeKfpClient:
    calls: list = []

    def __init__(self, host=None):
        self.host = host

    def create_run_from_pipeline_package(self, pipeline_file, arguments, run_name):
        FakeKfpClient.calls.append({"host": self.host, "file": pipeline_file, "arguments": arguments,
                                    "run_name": run_name})
        return types.SimpleNamespace(run_id="run-123")


class FakePipelineJob:
    made: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.submitted = False
        self.resource_name = "projects/p/locations/europe-west4/pipelineJobs/job-1"
        FakePipelineJob.made.append(self)

    def submit(self):
        self.submitted = True


def test_kfp_backend_submits_the_compiled_training_pipeline(monkeypatch, tmp_path):
    import kfp

    monkeypatch.setattr(kfp, "Client", FakeKfpClient)
    FakeKfpClient.calls.clear()
    started = trigger("kfp", {"source": "/data/isic", "epochs": 5}, host="https://kfp.example")
    assert started["run_id"] == "run-123" and started["backend"] == "kfp"
    call = FakeKfpClient.calls[0]
    assert call["host"] == "https://kfp.example" and call["arguments"] == {"source": "/data/isic", "epochs": 5}
    assert call["run_name"].startswith("dermpipe-retrain-")
    compiled = open(call["file"]).read()  # compiled now, since no template was given: the real training DAG
    assert "dermpipe-training" in compiled and "exec-train" in compiled
    template = tmp_path / "training.yaml"
    template.write_text("x")
    trigger("kfp", {}, host="h", template_path=str(template))
    assert FakeKfpClient.calls[1]["file"] == str(template)


def test_vertex_backend_submits_a_pipeline_job(monkeypatch, tmp_path):
    fake = types.ModuleType("google.cloud.aiplatform")
    fake.PipelineJob = FakePipelineJob
    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform", fake)
    import google.cloud

    monkeypatch.setattr(google.cloud, "aiplatform", fake, raising=False)
    template = tmp_path / "training.yaml"
    template.write_text("x")
    started = trigger("vertex", {"source": "/gcs/b/isic"}, template_path=str(template), project="p",
                      location="europe-west4", pipeline_root="gs://b/root")
    job = FakePipelineJob.made[-1]
    assert job.submitted and started["run_id"].endswith("job-1")
    assert job.kwargs["template_path"] == str(template) and job.kwargs["pipeline_root"] == "gs://b/root"
    assert job.kwargs["parameter_values"] == {"source": "/gcs/b/isic"} and job.kwargs["project"] == "p"
    with pytest.raises(ValueError, match="pipeline_root"):
        trigger("vertex", {}, template_path=str(template))


def test_local_backend_runs_the_training_pipeline(monkeypatch):
    seen = {}

    def fake_run_local(params):
        seen.update(params)
        return types.SimpleNamespace(run_id="dermpipe-training-x", status="succeeded", error="")

    import dermpipe.pipelines.local

    monkeypatch.setattr(dermpipe.pipelines.local, "run_local", fake_run_local)
    monkeypatch.delenv("_KFP_RUNTIME", raising=False)
    started = trigger("local", {"source": "demo", "epochs": 2})
    assert seen == {"source": "demo", "epochs": 2}
    assert started["run_id"] == "dermpipe-training-x" and started["status"] == "succeeded"


def test_local_backend_inside_a_task_uses_a_child_process(monkeypatch):
    monkeypatch.setenv("_KFP_RUNTIME", "true")
    ran = {}

    def fake_subprocess_run(cmd, env, **kwargs):
        ran["cmd"], ran["env"] = cmd, env
        return types.SimpleNamespace(returncode=0, stdout='noise\n{"run_id": "r9", "status": "succeeded"}\n',
                                     stderr="")

    monkeypatch.setattr(trigger_module.subprocess, "run", fake_subprocess_run)
    started = trigger("local", {"epochs": 1})
    assert ran["cmd"][1:3] == ["-m", "dermpipe.components.retrain"] and json.loads(ran["cmd"][3]) == {"epochs": 1}
    assert "_KFP_RUNTIME" not in ran["env"]
    assert started["run_id"] == "r9"


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
