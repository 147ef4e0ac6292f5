"""`dermpipe submit/status/runs/schedule --backend vertex` with the Vertex SDK intercepted at its client boundary:
aiplatform.PipelineJob and aiplatform.PipelineJobSchedule are replaced by recorders; nothing reaches Google."""

from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from dermpipe.cli.main import app

VERTEX = ["--backend", "vertex", "--project", "proj-1", "--region", "europe-west4"]
ROOT = ["--pipeline-root", "gs://bucket/dermpipe/artifacts"]


class FakeJob:
    created: list["FakeJob"] = []
    existing: dict[str, SimpleNamespace] = {}

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.template = yaml.safe_load_all(open(kwargs["template_path"]).read())
        self.template = [d for d in self.template if d]
        self.submitted = None
        self.resource_name = f"projects/proj-1/locations/europe-west4/pipelineJobs/{kwargs['job_id']}"
        FakeJob.created.append(self)

    def submit(self, **kwargs):
        self.submitted = kwargs

    @classmethod
    def get(cls, resource_name, project, location):
        assert (project, location) == ("proj-1", "europe-west4")
        return cls.existing[resource_name]

    @classmethod
    def list(cls, filter, order_by, project, location):
        assert filter == 'labels.app="dermpipe"' and order_by == "create_time desc"
        return list(cls.existing.values())


class FakeSchedule:
    instances: list["FakeSchedule"] = []

    def __init__(self, pipeline_job, display_name, project, location, state="ACTIVE", cron=""):
        self.pipeline_job, self.display_name, self.state, self.cron = pipeline_job, display_name, state, cron
        self.resource_name = f"projects/proj-1/locations/europe-west4/schedules/{len(self.instances) + 1}"
        self.create_kwargs = None
        self.actions: list[str] = []
        FakeSchedule.instances.append(self)

    def create(self, **kwargs):
        self.create_kwargs = kwargs
        self.cron = kwargs["cron"]

    @classmethod
    def list(cls, project, location):
        return [s for s in cls.instances if "delete" not in s.actions]

    def pause(self):
        self.actions.append("pause")
        self.state = "PAUSED"

    def resume(self, catch_up):
        assert catch_up is False
        self.actions.append("resume")
        self.state = "ACTIVE"

    def delete(self):
        self.actions.append("delete")


@pytest.fixture
def vertex(monkeypatch):
    from google.cloud import aiplatform

    FakeJob.created, FakeJob.existing, FakeSchedule.instances = [], {}, []
    monkeypatch.setattr(aiplatform, "PipelineJob", FakeJob)
    monkeypatch.setattr(aiplatform, "PipelineJobSchedule", FakeSchedule)
    return aiplatform


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_submit_compiles_for_vertex_and_sends_parameters_root_and_service_account(vertex):
    result = invoke("submit", *VERTEX, *ROOT, "--service-account", "dermpipe-pipelines@proj-1.iam.gserviceaccount.com",
                    "-p", "source=gs://bucket/isic-2019", "-p", "epochs=7", "--name", "dermpipe-training-v",
                    "--registry", "europe-docker.pkg.dev/proj-1/dermpipe", "--tag", "1.2.3")
    assert result.exit_code == 0, result.output
    (job,) = FakeJob.created
    assert job.kwargs["display_name"] == job.kwargs["job_id"] == "dermpipe-training-v"
    assert job.kwargs["parameter_values"] == {"source": "gs://bucket/isic-2019", "epochs": 7}
    assert job.kwargs["pipeline_root"] == "gs://bucket/dermpipe/artifacts"
    assert (job.kwargs["project"], job.kwargs["location"]) == ("proj-1", "europe-west4")
    assert job.kwargs["enable_caching"] is None and job.kwargs["labels"] == {"app": "dermpipe"}
    assert job.submitted == {"service_account": "dermpipe-pipelines@proj-1.iam.gserviceaccount.com",
                             "experiment": None}
    # compiled for Vertex: accelerator type, no Kubernetes platform document, images from --registry/--tag
    assert len(job.template) == 1
    executors = job.template[0]["deploymentSpec"]["executors"]
    assert executors["exec-train"]["container"]["resources"]["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"
    assert executors["exec-train"]["container"]["image"] == "europe-docker.pkg.dev/proj-1/dermpipe/trainer-gpu:1.2.3"
    assert executors["exec-merge"]["container"]["image"] == "europe-docker.pkg.dev/proj-1/dermpipe/base:1.2.3"
    assert "pipelineJobs/dermpipe-training-v" in result.output


def test_no_cache_accelerator_and_job_id_reach_the_job(vertex, tmp_path):
    result = invoke("submit", *VERTEX, *ROOT, "--no-cache", "--accelerator", "NVIDIA_L4", "--name", "2026 Retrain_B3")
    assert result.exit_code == 0, result.output
    (job,) = FakeJob.created
    assert job.kwargs["enable_caching"] is False
    assert job.kwargs["display_name"] == "2026 Retrain_B3" and job.kwargs["job_id"] == "run-2026-retrain-b3"
    resources = job.template[0]["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "NVIDIA_L4"


@pytest.mark.parametrize("args, message", [
    (["--backend", "vertex", "--region", "us-central1"], "--project"),
    ([*VERTEX], "--pipeline-root"),
    ([*VERTEX, "--pipeline-root", "/local/folder"], "Cloud Storage"),
])
def test_missing_or_wrong_vertex_settings_are_explained(vertex, training_package, args, message, monkeypatch):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    result = invoke("submit", "--package", training_package, *args)
    assert result.exit_code == 2 and message in result.output
    assert FakeJob.created == []


def test_status_wait_and_runs_read_pipeline_jobs(vertex):
    name = "projects/proj-1/locations/europe-west4/pipelineJobs/dermpipe-training-1"
    task = SimpleNamespace
    FakeJob.existing[name] = SimpleNamespace(
        resource_name=name, name="dermpipe-training-1", display_name="dermpipe-training-1",
        state=SimpleNamespace(name="PIPELINE_STATE_FAILED"), create_time=None,
        gca_resource=SimpleNamespace(error=SimpleNamespace(message="train: OOMKilled"), end_time=None),
        task_details=[task(task_name="dermpipe-training-1", state="RUNNING"),
                      task(task_name="ingest", state=SimpleNamespace(name="SUCCEEDED")),
                      task(task_name="train", state=SimpleNamespace(name="FAILED"))])
    result = invoke("status", name, *VERTEX, "--wait", "--poll", "0")
    assert result.exit_code == 0, result.output
    assert "state    failed" in result.output and "train: OOMKilled" in result.output
    assert " ".join(result.output.split()).count("train failed") == 2  # streamed once, then the final table
    assert "dermpipe-training-1 running" not in " ".join(result.output.split())  # the root task is not a step

    by_id = invoke("status", "dermpipe-training-1", *VERTEX)  # the bare job id works too
    assert by_id.exit_code == 0 and "state    failed" in by_id.output

    listed = invoke("runs", *VERTEX)
    assert listed.exit_code == 0 and "dermpipe-training-1" in listed.output and "failed" in listed.output


def test_schedules_create_list_pause_resume_delete(vertex):
    created = invoke("schedule", "create", *VERTEX, *ROOT, "--cron", "TZ=Europe/Amsterdam 0 6 * * *",
                     "--service-account", "sa@proj-1.iam.gserviceaccount.com", "-p", "source=gs://b/isic",
                     "--name", "weekly-training")
    assert created.exit_code == 0, created.output
    (schedule,) = FakeSchedule.instances
    assert schedule.display_name == "weekly-training"
    assert schedule.create_kwargs == {"cron": "TZ=Europe/Amsterdam 0 6 * * *", "max_concurrent_run_count": 1,
                                      "service_account": "sa@proj-1.iam.gserviceaccount.com"}
    assert schedule.pipeline_job.kwargs["parameter_values"] == {"source": "gs://b/isic"}

    assert "weekly-training" in invoke("schedule", "list", *VERTEX).output
    assert invoke("schedule", "pause", "weekly-training", *VERTEX).exit_code == 0
    assert "paused" in invoke("schedule", "list", *VERTEX).output
    assert invoke("schedule", "resume", schedule.resource_name, *VERTEX).exit_code == 0
    assert invoke("schedule", "delete", "weekly-training", *VERTEX).exit_code == 0
    assert schedule.actions == ["pause", "resume", "delete"]
    assert "no schedules on vertex" in invoke("schedule", "list", *VERTEX).output
