"""Deploy: separate-process infra validation, the drift profile, vertex and kserve targets at the client boundary."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from kfp.dsl import Metrics, Model
from kubernetes.client.rest import ApiException

from dermpipe.deploy import cloud_targets, registry
from dermpipe.deploy import deploy as deploy_stage
from dermpipe.deploy.infravalidate import InfraValidationError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from dermpipe.model.zoo import build_classifier

    model, _ = build_classifier("simple_cnn", 32, 8, seed=0)
    folder = tmp_path_factory.mktemp("model")
    model.save(folder / "model.keras")
    return folder


def _profile(folder: Path, dim: int = 128, k: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez(folder / "embedding_pca.npz", mean=rng.normal(size=dim), components=rng.normal(size=(k, dim)))
    (folder / "reference_profile.parquet").write_bytes(b"PAR1 stand-in")
    return folder


def _clinical_json(folder: Path) -> Path:
    """A clinical.json as the profile stage writes it: two operating points and an OOD detector."""
    from dermpipe.model.evaluation.operating_points import OperatingPoint
    from dermpipe.model.profile.clinical import Clinical
    from dermpipe.model.profile.ood import OODDetector
    from dermpipe.model.profile.ood_scores import Scorer

    points = (OperatingPoint("melanoma_sens95", 0.12, 0.95, test={"sensitivity": 0.93, "specificity": 0.41}),
              OperatingPoint("melanoma_sens90", 0.2, 0.90, invalid="specificity 0.100 is under the floor 0.20"))
    ood = OODDetector(Scorer("pca_residual", {"center": np.zeros(3), "precision": np.eye(3), "residual_scale": 1.0}),
                      4.5, 0.95)
    (folder / "clinical.json").write_text(json.dumps(Clinical(points, ood, {}).as_dict()))
    return folder


def test_push_validates_in_a_separate_process_and_copies_the_profile(model_dir, tmp_path):
    root = str(tmp_path / "registry")
    profile = _clinical_json(_profile(tmp_path / "profile"))
    version, target = deploy_stage.push(model_dir, root, "m", {"run": "r1"}, profile)
    assert version == 1 and registry.versions(root, "m") == [1] and registry.current_version(root, "m") is None
    record = json.loads((Path(target) / "dermpipe.json").read_text())
    assert record["model_digest"] == registry.version_digest(root, "m", 1) and len(record["model_digest"]) == 64
    check = record["serving_check"]
    assert check["process"] == "separate" and check["pid"] != os.getpid()
    assert check["check"]["probe_output_sum"] == pytest.approx(1.0, abs=1e-3)
    assert record["profile"]["copied"] == ["embedding_pca.npz", "reference_profile.parquet", "clinical.json"]
    assert (Path(target) / "clinical.json").read_text() == (profile / "clinical.json").read_text()
    clinical = record["clinical"]
    assert clinical["default_operating_point"] == "melanoma_sens95" and clinical["ood_threshold"] == 4.5
    assert clinical["ood_score"] == "pca_residual"
    assert clinical["operating_points"][0] == {"name": "melanoma_sens95", "target_sensitivity": 0.95,
                                               "threshold": 0.12, "chosen_on": "val", "invalid": "",
                                               "test_sensitivity": 0.93, "test_specificity": 0.41}
    assert clinical["operating_points"][1]["invalid"] == "specificity 0.100 is under the floor 0.20"
    assert (Path(target) / "reference_profile.parquet").read_bytes() == b"PAR1 stand-in"
    assert record["created"] and record["run"] == "r1"


def test_a_model_that_cannot_serve_is_not_pushed(model_dir, tmp_path, monkeypatch):
    import dermpipe.model.export

    original = dermpipe.model.export.export_serving_model

    def broken_export(model, out_dir):  # exports, then loses the weights: loads nowhere
        description = original(model, out_dir)
        shutil.rmtree(Path(out_dir) / "variables")
        return description

    monkeypatch.setattr(dermpipe.model.export, "export_serving_model", broken_export)
    root = tmp_path / "registry"
    with pytest.raises(InfraValidationError, match="failed in a separate process .*not pushed"):
        deploy_stage.push(model_dir, str(root), "m", {})
    assert not (root / "m" / "1").exists() and not (root / "m" / "current.json").exists()
    assert registry.allocated_versions(str(root), "m") == []  # validation fails before a number is claimed


def test_copy_profile_checks_the_embedding_size(tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir()
    assert deploy_stage.copy_profile(None, stage, 128)["copied"] == []
    only_pca = _profile(tmp_path / "p1")
    (only_pca / "reference_profile.parquet").unlink()
    result = deploy_stage.copy_profile(only_pca, stage, 128)
    assert result["copied"] == ["embedding_pca.npz"]
    assert result["missing"] == ["reference_profile.parquet", "clinical.json", "licences.json"]
    with pytest.raises(ValueError, match=r"embedding has 64 values"):
        deploy_stage.copy_profile(_profile(tmp_path / "p2", dim=128), tmp_path, 64)


class FakeVertexModel:
    def __init__(self, name, **kwargs):
        self.resource_name, self.upload_kwargs, self.deployed = name, kwargs, []
        self.version_id = kwargs.get("version_id", "1")

    def deploy(self, **kwargs):
        self.deployed.append(kwargs)
        kwargs["endpoint"].models.append(self)
        kwargs["endpoint"].traffic_split = {"new": kwargs["traffic_percentage"]}


class FakeEndpoint:
    def __init__(self, name):
        self.resource_name, self.models, self.traffic_split = name, [], {}

    def list_models(self):
        return list(self.models)


class FakeAiplatform:
    """aiplatform.init / Model.list / Model.upload / Endpoint.list / Endpoint.create, recording calls."""

    def __init__(self):
        self.inits, self.models, self.endpoints = [], [], []
        fake = self

        class ModelApi:
            @staticmethod
            def list(filter, order_by):  # noqa: A002 - the SDK's argument name
                return [m for m in reversed(fake.models) if f'"{m.upload_kwargs["display_name"]}"' in filter][:1]

            @staticmethod
            def upload(**kwargs):
                model = FakeVertexModel(f"projects/p/locations/r/models/{len(fake.models) + 1}",
                                        version_id=str(len(fake.models) + 1), **kwargs)
                fake.models.append(model)
                return model

        class EndpointApi:
            @staticmethod
            def list(filter, order_by):  # noqa: A002
                return [e for e in fake.endpoints if filter.endswith(f'"{e.display_name}"')]

            @staticmethod
            def create(display_name, labels):
                endpoint = FakeEndpoint(f"projects/p/locations/r/endpoints/{len(fake.endpoints) + 1}")
                endpoint.display_name = display_name
                fake.endpoints.append(endpoint)
                return endpoint

        self.Model, self.Endpoint = ModelApi, EndpointApi

    def init(self, **kwargs):
        self.inits.append(kwargs)


def test_vertex_uploads_a_new_version_under_the_parent_and_splits_traffic():
    fake = FakeAiplatform()
    settings = cloud_targets.VertexSettings(project="proj", region="europe-west4", traffic_percentage=20)
    first = cloud_targets.deploy_vertex("gs://b/reg/m/1", "m", 1, settings, aiplatform=fake)
    second = cloud_targets.deploy_vertex("gs://b/reg/m/2", "m", 2, settings, aiplatform=fake)
    assert fake.inits[0] == {"project": "proj", "location": "europe-west4"}
    one, two = fake.models
    assert one.upload_kwargs["parent_model"] is None and first["vertex_parent_model"] == ""
    assert two.upload_kwargs["parent_model"] == one.resource_name == second["vertex_parent_model"]
    assert two.upload_kwargs["artifact_uri"] == "gs://b/reg/m/2" and two.upload_kwargs["version_aliases"] == ["v2"]
    assert two.upload_kwargs["serving_container_image_uri"] == cloud_targets.VERTEX_TF_IMAGE
    assert len(fake.endpoints) == 1 and fake.endpoints[0].display_name == "m-endpoint"
    assert first["vertex_traffic_percentage"] == 100, "the first model on an endpoint takes all traffic"
    assert second["vertex_traffic_percentage"] == 20 and two.deployed[0]["traffic_percentage"] == 20
    assert two.deployed[0]["deployed_model_display_name"] == "m-v2"
    assert second["vertex_endpoint"] == fake.endpoints[0].resource_name
    with pytest.raises(ValueError, match="gcp_project is empty"):
        cloud_targets.deploy_vertex("gs://b/reg/m/3", "m", 3, cloud_targets.VertexSettings(project=""), aiplatform=fake)


class FakeCustomObjects:
    def __init__(self, status_on_get=404):
        self.objects, self.calls, self.status_on_get = {}, [], status_on_get

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("get", namespace, name))
        if (namespace, name) not in self.objects:
            raise ApiException(status=self.status_on_get, reason="Not Found")
        return self.objects[(namespace, name)]

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("serving.kserve.io", "v1beta1", "inferenceservices")
        self.calls.append(("create", namespace, body["metadata"]["name"]))
        self.objects[(namespace, body["metadata"]["name"])] = body

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.calls.append(("patch", namespace, name))
        self.objects[(namespace, name)] = body


def test_kserve_creates_then_patches_the_inference_service():
    api = FakeCustomObjects()
    first = cloud_targets.inference_service("dermpipe-isic2019", "models", "gs://b/reg/dermpipe-isic2019/serving/1",
                                           version="1")
    assert cloud_targets.apply_inference_service(first, api) == "created"
    canary = cloud_targets.inference_service("dermpipe-isic2019", "models", "gs://b/reg/dermpipe-isic2019/serving/2",
                                            version="2", canary_traffic_percent=10, service_account="sa")
    assert cloud_targets.apply_inference_service(canary, api) == "patched"
    assert [c[0] for c in api.calls] == ["get", "create", "get", "patch"]
    stored = api.objects[("models", "dermpipe-isic2019")]
    predictor = stored["spec"]["predictor"]
    assert predictor["model"]["modelFormat"] == {"name": "tensorflow"}
    assert predictor["model"]["storageUri"] == "gs://b/reg/dermpipe-isic2019/serving/2"
    assert predictor["canaryTrafficPercent"] == 10 and predictor["serviceAccountName"] == "sa"
    assert stored["metadata"]["annotations"]["dermpipe/registry-version"] == "2"
    with pytest.raises(RuntimeError, match="HTTP 403"):
        cloud_targets.apply_inference_service(first, FakeCustomObjects(status_on_get=403))


def test_the_kserve_template_is_the_manifest_deploy_applies():
    template = yaml.safe_load((REPO / "infra" / "kserve" / "inferenceservice.yaml").read_text())
    expected = cloud_targets.inference_service("${NAME}", "${NAMESPACE}",
                                              "gs://${BUCKET}/registry/${MODEL_NAME}/serving/${VERSION}",
                                              service_account="${SERVICE_ACCOUNT}", version="${VERSION}",
                                              training_licence="${TRAINING_LICENCE}")
    assert template == expected
    assert cloud_targets.kserve_name("dermpipe_ISIC.2019") == "dermpipe-isic-2019"
    assert cloud_targets.kserve_name("2019-model") == "m-2019-model"


def _artifacts(tmp_path):
    model = Model(name="model", uri=str(tmp_path / "model"), metadata={"backbone": "simple_cnn"})
    evaluation = Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={"balanced_accuracy": 0.7})
    pushed = Model(name="pushed", uri=str(tmp_path / "pushed"), metadata={})
    return model, evaluation, pushed


def test_run_deploys_the_promoted_version_to_the_target(tmp_path, monkeypatch):
    published = []

    def publish(*args):
        published.append(args)
        return {"version": 4, "registry_uri": "gs://b/reg/m/4", "action": "pushed", "promoted": True,
                "current_version": 4, "message": "version 4 pushed and promoted (was 3)",
                "training_licence": "non-commercial"}

    monkeypatch.setattr(deploy_stage, "publish", publish)
    monkeypatch.setattr(registry, "serving_alias", lambda root, name, version: f"{root}/{name}/serving/{version}")
    monkeypatch.setattr(cloud_targets, "remember_kserve", lambda *args: None)
    model, evaluation, pushed = _artifacts(tmp_path)
    fake = FakeAiplatform()
    vertex = cloud_targets.VertexSettings(project="proj")
    result = deploy_stage.run(model, evaluation, pushed, "gs://b/reg", "m", "vertex", None, vertex,
                              clients={"aiplatform": fake}, champion_version=3)
    assert fake.models[0].upload_kwargs["artifact_uri"] == "gs://b/reg/m/4"
    assert fake.models[0].upload_kwargs["labels"]["dermpipe-training-licence"] == "non-commercial"
    assert pushed.metadata["vertex_endpoint"] == result["vertex_endpoint"] and pushed.metadata["target"] == "vertex"
    assert json.loads(Path(pushed.path).read_text())["version"] == 4
    api = FakeCustomObjects()
    result = deploy_stage.run(model, evaluation, pushed, "gs://b/reg", "m", "kserve", None,
                              kserve={"namespace": "models", "canary_traffic_percent": 25},
                              clients={"kubernetes": api})
    assert result["kserve_action"] == "created" and result["kserve_storage_uri"] == "gs://b/reg/m/serving/4"
    assert api.objects[("models", "m")]["spec"]["predictor"]["canaryTrafficPercent"] == 25
    assert api.objects[("models", "m")]["metadata"]["annotations"]["dermpipe/training-data-licence"] == \
        "non-commercial"
    assert published[0][4] is None and published[0][3]["target"] == "vertex" and published[0][5] == 3


def test_an_unpromoted_push_is_not_deployed_to_vertex(tmp_path, monkeypatch):
    monkeypatch.setattr(deploy_stage, "publish", lambda *args: {
        "version": 5, "registry_uri": "gs://b/reg/m/5", "action": "pushed", "promoted": False, "current_version": 6,
        "message": "version 5 pushed but NOT promoted"})
    model, evaluation, pushed = _artifacts(tmp_path)
    fake = FakeAiplatform()
    result = deploy_stage.run(model, evaluation, pushed, "gs://b/reg", "m", "vertex", None,
                              cloud_targets.VertexSettings(project="proj"), clients={"aiplatform": fake})
    assert fake.models == [] and result["promoted"] is False and "vertex_endpoint" not in result


@pytest.mark.parametrize(("target", "root", "message"), [
    ("vertex", "/local/registry", "gs://bucket/prefix"),
    ("kserve", "/local/registry", "gs://bucket/prefix"),
    ("sagemaker", "gs://b/reg", "not one of local, vertex, kserve"),
])
def test_targets_are_checked_before_any_work(tmp_path, target, root, message):
    model, evaluation, pushed = _artifacts(tmp_path)
    with pytest.raises(ValueError, match=message):
        deploy_stage.run(model, evaluation, pushed, root, "m", target)


def test_the_compiled_pipeline_passes_the_deploy_target_to_deploy(tmp_path):
    from dermpipe.pipelines.compile import compile_training

    documents = list(yaml.safe_load_all(compile_training(tmp_path / "t.yaml").read_text()))
    params = documents[0]["root"]["inputDefinitions"]["parameters"]
    assert params["deploy_target"]["defaultValue"] == "local"
    deploy_inputs = documents[0]["components"]["comp-deploy"]["inputDefinitions"]
    assert deploy_inputs["artifacts"]["profile"]["isOptional"] is True
    assert deploy_inputs["parameters"]["vertex_serving_image"]["defaultValue"] == cloud_targets.VERTEX_TF_IMAGE
