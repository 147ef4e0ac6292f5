"""The compiled KFP IR YAML: every stage, the data edges, the GPU train step, dermpipe's images, the deploy gate."""

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dermpipe.cli.main import app

STAGES = {"ingest", "merge", "split", "prepare", "train", "profile", "evaluate", "explain"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compile") / "training.yaml"
    result = CliRunner().invoke(app, ["compile", "--out", str(out), "--image", "reg.example/dp/base:t",
                                      "--gpu-image", "reg.example/dp/gpu:t"])
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    return docs


def test_dag_has_every_stage_and_the_data_edges(compiled):
    spec = compiled[0]
    tasks = spec["root"]["dag"]["tasks"]
    assert STAGES <= set(tasks)
    assert "condition-1" in tasks
    deps = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert deps["merge"] == {"ingest"}
    assert deps["split"] == {"merge", "resolve-champion"}  # the pinned benchmark set comes in as a parameter
    assert deps["prepare"] == {"ingest", "split"}
    assert deps["train"] == {"ingest", "split", "prepare"}  # reads the shards
    assert deps["evaluate"] == {"ingest", "split", "train", "profile"}  # profile: the operating points it reports
    assert deps["profile"] == {"ingest", "split", "train"}
    assert deps["explain"] == {"ingest", "train", "evaluate"}
    assert tasks["train"]["inputs"]["artifacts"]["train_split"]["taskOutputArtifact"] == {
        "outputArtifactKey": "train", "producerTask": "split"}


def test_deploy_runs_only_when_blessed(compiled):
    spec = compiled[0]
    condition = spec["root"]["dag"]["tasks"]["condition-1"]["triggerPolicy"]["condition"]
    assert "gate-Output" in condition and "== true" in condition
    assert "deploy" in spec["components"]["comp-condition-1"]["dag"]["tasks"]


def test_train_asks_for_a_gpu_and_resources(compiled):
    executors = compiled[0]["deploymentSpec"]["executors"]
    resources = executors["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert int(resources["accelerator"]["resourceCount"]) == 1
    assert resources["cpuLimit"] == 8.0 and resources["memoryLimit"] == 32.0
    assert "accelerator" not in executors["exec-evaluate"]["container"].get("resources", {})
    platform = compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert platform["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert compiled[0]["root"]["dag"]["tasks"]["train"]["retryPolicy"]["maxRetryCount"] == 3


def test_every_task_runs_dermpipe_image_without_runtime_pip(compiled):
    executors = compiled[0]["deploymentSpec"]["executors"]
    assert set(executors) == {f"exec-{stage}" for stage in STAGES | {"resolve-champion", "gate", "deploy"}}
    for name, executor in executors.items():
        image = executor["container"]["image"]
        assert image == ("reg.example/dp/gpu:t" if name == "exec-train" else "reg.example/dp/base:t")
        assert "pip install" not in " ".join(executor["container"]["command"])
        env = {e["name"]: e["value"] for e in executor["container"]["env"]}
        assert env["DERMPIPE_CODE_VERSION"].startswith("0.1.0+")
        assert env["DERMPIPE_IMAGE"] == image  # artifacts name the image that made them
        if (Path(__file__).resolve().parents[2] / ".git").exists():
            assert re.fullmatch(r"[0-9a-f]{40}", env["DERMPIPE_GIT_COMMIT"])


def test_pipeline_parameters_default_to_the_seed_settings(compiled):
    params = compiled[0]["root"]["inputDefinitions"]["parameters"]
    assert params["test_size"]["defaultValue"] == 0.1 and params["val_size"]["defaultValue"] == 0.1
    assert params["split_seed"]["defaultValue"] == 42
    assert params["invalid_images"]["defaultValue"] == "drop" and params["folds"]["defaultValue"] == 0
    assert params["shard_size_mb"]["defaultValue"] == 150.0
    assert params["backbone"]["defaultValue"] == "efficientnet_b0"
