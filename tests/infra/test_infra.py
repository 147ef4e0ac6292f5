"""infra/: Terraform parsed with python-hcl2 and checked with checkov (one run over Terraform and the Kubernetes
manifests, nothing downloaded), terraform fmt when terraform is installed, and the KServe/KFP manifests' content."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TERRAFORM = INFRA / "terraform"
K8S = INFRA / "k8s"


def _checkov() -> str:
    for candidate in (REPO / ".venv-tools" / "bin" / "checkov", Path(sys.executable).parent / "checkov"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("checkov")
    if not found:
        pytest.fail("checkov not installed: `make install` puts it in .venv-tools (it pins packaging<24, so it has "
                    "its own environment)")
    return found


def plain(value):
    """python-hcl2 8 keeps the quotes of string literals and marks blocks; drop both so the tests read values."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def terraform() -> dict[str, list]:
    """Every block of every .tf file, by block type (resource, variable, output, ...)."""
    blocks: dict[str, list] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            for kind, items in plain(hcl2.load(handle)).items():
                blocks.setdefault(kind, []).extend(items)
    return blocks


def resources(terraform, kind: str) -> dict[str, dict]:
    found = {}
    for block in terraform["resource"]:
        for name, body in block.get(kind, {}).items():
            found[name] = body
    return found


def test_checkov_finds_nothing_and_every_skip_is_explained():
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_EXPERIMENTAL_IMAGE_REFERENCING": "False"}
    result = subprocess.run(
        [_checkov(), "-d", str(INFRA), "--framework", "terraform", "kubernetes", "--skip-download",
         "--var-file", str(TERRAFORM / "ci.tfvars"), "-o", "json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {r["check_type"]: r for r in reports}
    assert set(by_type) == {"terraform", "kubernetes"}, result.stderr[-2000:]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for r in reports for c in r["results"]["failed_checks"]]
    assert failed == []
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0
        for skipped in report["results"].get("skipped_checks", []):
            assert len(skipped["check_result"].get("suppress_comment") or "") > 20, skipped["check_id"]
    # the GKE cluster and node pools were checked too (ci.tfvars turns create_gke on)
    assert by_type["terraform"]["summary"]["passed"] >= 60
    assert by_type["terraform"]["summary"]["resource_count"] >= 30


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not installed (fmt style check only)")
def test_terraform_is_fmt_clean():
    result = subprocess.run(["terraform", "fmt", "-check", "-diff", "-recursive", str(TERRAFORM)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_artifact_bucket_is_versioned_private_and_expires_old_data(terraform):
    bucket = resources(terraform, "google_storage_bucket")["artifacts"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    conditions = [rule["condition"][0] for rule in bucket["lifecycle_rule"]]
    assert any("days_since_noncurrent_time" in c for c in conditions)
    assert any(c.get("matches_prefix") == ["artifacts/"] for c in conditions)  # the registry is never expired


def test_required_apis_and_image_repository(terraform):
    main = next(b for b in terraform["locals"] if "apis" in b)
    assert {"aiplatform.googleapis.com", "artifactregistry.googleapis.com", "container.googleapis.com",
            "storage.googleapis.com"} <= set(main["apis"])
    repo = resources(terraform, "google_artifact_registry_repository")["images"]
    assert repo["format"] == "DOCKER" and repo["docker_config"][0]["immutable_tags"] is True


def test_service_accounts_have_least_privilege(terraform):
    accounts = resources(terraform, "google_service_account")
    assert {"pipelines", "serving", "gke_nodes"} <= set(accounts)
    project_roles = {name: body["role"] for name, body in resources(terraform, "google_project_iam_member").items()}
    broad = {"roles/owner", "roles/editor", "roles/storage.admin", "roles/aiplatform.admin", "roles/iam.securityAdmin"}
    assert not broad & set(project_roles.values())
    assert project_roles["pipelines_aiplatform"] == "roles/aiplatform.user"
    bucket_roles = resources(terraform, "google_storage_bucket_iam_member")
    assert bucket_roles["pipelines_objects"]["role"] == "roles/storage.objectAdmin"
    assert bucket_roles["serving_read"]["role"] == "roles/storage.objectViewer"
    writer = bucket_roles["serving_log_writer"]
    assert writer["role"] == "roles/storage.objectCreator" and "/objects/predictions/" in writer["condition"][0][
        "expression"]
    # serving never gets project-wide storage or Vertex roles
    assert not [r for n, r in project_roles.items() if n.startswith("serving") and r != "roles/logging.logWriter"]


def test_gpu_pool_is_tainted_autoscaled_from_zero_and_optional(terraform):
    pool = resources(terraform, "google_container_node_pool")["gpu"]
    assert pool["count"] == "${var.create_gke ? 1 : 0}"
    assert pool["autoscaling"][0]["min_node_count"] == 0
    node = pool["node_config"][0]
    assert node["taint"][0] == {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
    assert node["guest_accelerator"][0]["type"] == "${var.gpu_type}"
    assert node["spot"] == "${var.gpu_spot}"
    cluster = resources(terraform, "google_container_cluster")["kfp"]
    assert cluster["private_cluster_config"][0]["enable_private_nodes"] is True
    assert cluster["workload_identity_config"][0]["workload_pool"] == "${var.project_id}.svc.id.goog"


def test_every_variable_and_output_is_documented(terraform):
    for variable in terraform["variable"]:
        for name, body in variable.items():
            assert body.get("description") and body.get("type"), f"variable {name}"
    outputs = {name: body for block in terraform["output"] for name, body in block.items()}
    assert {"pipeline_root", "registry_root", "image_registry", "pipelines_service_account"} <= set(outputs)
    assert all(body.get("description") for body in outputs.values())


def test_inference_service_runs_dermpipe_serve_hardened():
    kustomization = yaml.safe_load((K8S / "kserve" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / "kserve" / resource).exists(), resource
    service = yaml.safe_load((K8S / "kserve" / "inferenceservice.yaml").read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    predictor = service["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["image"] == kustomization["images"][0]["name"]  # set by kustomize `images:`
    assert kustomization["images"][0]["newName"].endswith("/dermpipe/serving")
    args = container["args"]
    assert args[args.index("--registry-root") + 1].startswith("gs://")
    assert args[args.index("--log-root") + 1].startswith("gs://")
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"},
                                  {"name": "h2c", "containerPort": 8500, "protocol": "TCP"}]
    assert args[args.index("--grpc-port") + 1] == "8500"
    # two ports (HTTP and gRPC) need RawDeployment: Knative (Serverless) routes one
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"] and predictor["securityContext"]["runAsNonRoot"]
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    assert predictor["serviceAccountName"] == "dermpipe-serving"


def test_workload_identity_annotations_match_the_terraform_accounts(terraform):
    accounts = resources(terraform, "google_service_account")
    for path, account in ((K8S / "kserve" / "serviceaccount.yaml", accounts["serving"]),
                          (K8S / "kfp" / "pipeline-runner-workload-identity.yaml", accounts["pipelines"])):
        annotation = yaml.safe_load(path.read_text())["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        expected = account["account_id"].replace("${var.name}", "dermpipe")
        assert annotation == f"{expected}@PROJECT_ID.iam.gserviceaccount.com", path.name
    kfp = yaml.safe_load((K8S / "kfp" / "kustomization.yaml").read_text())
    assert any("kubeflow/pipelines/manifests/kustomize" in r and "?ref=" in r for r in kfp["resources"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed (kustomize render check only)")
def test_kserve_kustomization_renders_with_the_serving_image():
    result = subprocess.run(["kubectl", "kustomize", str(K8S / "kserve")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rendered = {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout) if doc}
    assert set(rendered) == {"Namespace", "ServiceAccount", "NetworkPolicy", "InferenceService"}
    (container,) = rendered["InferenceService"]["spec"]["predictor"]["containers"]
    assert container["image"] == "us-central1-docker.pkg.dev/PROJECT_ID/dermpipe/serving:0.1.0"
    assert all(doc["metadata"].get("namespace", "dermpipe-serving") == "dermpipe-serving" for doc in rendered.values())
