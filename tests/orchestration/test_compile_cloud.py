"""Golden checks of the compiled IR for the cloud: placement per backend, retries, caching, images per task, and
`--pipeline monitoring`."""

import sys
import types

import pytest
import yaml
from kfp import dsl
from typer.testing import CliRunner

from dermpipe.cli.main import app

STEPS = ("ingest", "merge", "split", "evaluate", "explain")


def compile_docs(tmp_path, *args, env=None):
    out = tmp_path / "p.yaml"
    result = CliRunner().invoke(app, ["compile", "--out", str(out), *args], env=env)
    assert result.exit_code == 0, result.output
    return [d for d in yaml.safe_load_all(out.read_text()) if d]


@pytest.fixture(scope="module")
def kfp_docs(tmp_path_factory):
    return compile_docs(tmp_path_factory.mktemp("kfp"), "--gke-accelerator", "nvidia-l4", "--spot",
                        "--accelerator-count", "2", "--retries", "4",
                        env={"DERMPIPE_IMAGE_REGISTRY": "europe-docker.pkg.dev/p/dermpipe",
                             "DERMPIPE_IMAGE_TAG": "9.9"})


def test_kfp_train_is_placed_on_the_gpu_pool(kfp_docs):
    resources = kfp_docs[0]["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "2"
    platform = kfp_docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(platform) == {"exec-train"}  # only the trainer carries Kubernetes placement
    train = platform["exec-train"]
    assert train["nodeSelector"] == {"labels": {"cloud.google.com/gke-accelerator": "nvidia-l4"}}
    assert {(t["key"], t["effect"]) for t in train["tolerations"]} == {
        ("nvidia.com/gpu", "NoSchedule"), ("cloud.google.com/gke-spot", "NoSchedule")}


def test_train_is_retried_with_exponential_back_off(kfp_docs):
    policy = kfp_docs[0]["root"]["dag"]["tasks"]["train"]["retryPolicy"]
    assert policy == {"backoffDuration": "120s", "backoffFactor": 2.0, "backoffMaxDuration": "3600s",
                      "maxRetryCount": 4}
    assert all("retryPolicy" not in kfp_docs[0]["root"]["dag"]["tasks"][s] for s in STEPS)


def test_ingest_is_never_served_from_cache_other_steps_are(kfp_docs):
    tasks = kfp_docs[0]["root"]["dag"]["tasks"]
    assert tasks["ingest"].get("cachingOptions", {}).get("enableCache", False) is False
    for name in ("merge", "split", "train", "evaluate", "explain"):
        assert tasks[name]["cachingOptions"] == {"enableCache": True}, name


def test_images_come_from_the_registry_and_tag_in_the_environment(kfp_docs):
    executors = kfp_docs[0]["deploymentSpec"]["executors"]
    assert executors["exec-train"]["container"]["image"] == "europe-docker.pkg.dev/p/dermpipe/trainer-gpu:9.9"
    for name, executor in executors.items():
        if name != "exec-train":
            assert executor["container"]["image"] == "europe-docker.pkg.dev/p/dermpipe/base:9.9", name


def test_flags_override_the_environment_and_cache_ingest_is_opt_in(tmp_path):
    docs = compile_docs(tmp_path, "--registry", "r.example/x", "--tag", "t1", "--cache-ingest", "--retries", "0",
                        env={"DERMPIPE_IMAGE_REGISTRY": "ignored.example/y"})
    executors = docs[0]["deploymentSpec"]["executors"]
    assert executors["exec-ingest"]["container"]["image"] == "r.example/x/base:t1"
    tasks = docs[0]["root"]["dag"]["tasks"]
    assert tasks["ingest"]["cachingOptions"] == {"enableCache": True}
    assert "retryPolicy" not in tasks["train"]


def test_vertex_placement_has_an_accelerator_type_and_no_kubernetes_settings(tmp_path):
    docs = compile_docs(tmp_path, "--backend", "vertex", "--accelerator", "NVIDIA_L4", "--gke-accelerator", "x")
    assert len(docs) == 1  # no platform (Kubernetes) document
    resources = docs[0]["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "NVIDIA_L4" and resources["cpuLimit"] == 8.0
    assert docs[0]["root"]["dag"]["tasks"]["train"]["retryPolicy"]["maxRetryCount"] == 3


def test_default_tag_is_the_package_version(monkeypatch):
    from dermpipe import __version__, config
    monkeypatch.delenv(config.REGISTRY_ENV, raising=False)
    monkeypatch.delenv(config.TAG_ENV, raising=False)
    assert config.image("serving") == f"{config.DEFAULT_IMAGE_REGISTRY}/serving:{__version__}"
    assert config.image("base", "r/", "x") == "r/base:x"
    with pytest.raises(ValueError, match="unknown image 'gpu'"):
        config.image("gpu")


def test_monitoring_without_its_module_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dermpipe.pipelines.monitoring", None)  # import fails as if absent
    result = CliRunner().invoke(app, ["compile", "--pipeline", "monitoring", "--out", str(tmp_path / "m.yaml")])
    assert result.exit_code == 2
    assert "pipelines/monitoring.py" in result.output and "--pipeline training" in result.output


def test_monitoring_compiles_from_the_module_factory_with_dermpipe_images(tmp_path, monkeypatch):
    @dsl.component(base_image="python:3.11")
    def collect(days: int) -> str:
        return str(days)

    def build_monitoring_pipeline():
        @dsl.pipeline(name="dermpipe-monitoring")
        def monitoring_pipeline(days: int = 1):
            collect(days=days)

        return monitoring_pipeline

    module = types.ModuleType("dermpipe.pipelines.monitoring")
    module.build_monitoring_pipeline = build_monitoring_pipeline
    monkeypatch.setitem(sys.modules, "dermpipe.pipelines.monitoring", module)
    docs = compile_docs(tmp_path, "--pipeline", "monitoring", "--registry", "r.example/x", "--tag", "t")
    assert docs[0]["pipelineInfo"]["name"] == "dermpipe-monitoring"
    assert docs[0]["deploymentSpec"]["executors"]["exec-collect"]["container"]["image"] == "r.example/x/base:t"
