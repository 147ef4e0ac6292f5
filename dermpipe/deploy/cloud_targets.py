"""Deploy targets beyond the local registry: Vertex AI (Model Registry + endpoint) and KServe (InferenceService).

Both deploy a version that deploy has already pushed to a gs:// registry:
- vertex: upload the version folder as a new version of the Vertex model with the same display name (parent_model),
  on Google's prebuilt TensorFlow serving container, then deploy it to an endpoint (created when missing) with
  `traffic_percentage` of the traffic (the other deployed versions keep the rest, in proportion).
- kserve: create or patch an InferenceService (tensorflow model format) whose storageUri is the registry's serving
  alias of the promoted version, <model>/serving/<N> (a folder holding only <N>/: TF Serving serves the highest
  version under its base path, so pointing it at the whole model folder would serve an unpromoted push and ignore
  rollbacks). The settings are remembered in <model>/kserve.json, so `dermpipe models promote|rollback` re-point the
  InferenceService too. infra/kserve/inferenceservice.yaml is the same manifest with placeholders.

The cloud clients are passed in (tests pass fakes) or created from the ambient credentials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dermpipe import storage
from dermpipe.deploy import registry

VERTEX_TF_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
# TF Serving image tag KServe runs (its ClusterServingRuntime default, 2.6.2, predates ops our TF 2.21 SavedModels
# use). The oldest TensorFlow our SavedModels are checked against is 2.15 (tests/serving/test_prebuilt_compat.py).
KSERVE_TF_SERVING_VERSION = "2.16.1"
KSERVE_GROUP, KSERVE_VERSION, KSERVE_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
TARGETS = ("local", "vertex", "kserve")


@dataclass
class VertexSettings:
    project: str
    region: str = "us-central1"
    endpoint_name: str = ""  # default: "<model name>-endpoint"
    traffic_percentage: int = 100
    machine_type: str = "n1-standard-4"
    serving_image: str = VERTEX_TF_IMAGE
    min_replicas: int = 1
    max_replicas: int = 1


def check_target(target: str, registry_root: str) -> None:
    """Fail before any work when the target is unknown or cannot read the registry."""
    if target not in TARGETS:
        raise ValueError(f"deploy: deploy_target {target!r} is not one of {', '.join(TARGETS)}")
    if target != "local" and not str(registry_root).startswith("gs://"):
        raise ValueError(f"deploy: deploy_target {target} serves the model from Cloud Storage, but registry_root is "
                         f"{registry_root!r}; set registry_root to gs://bucket/prefix")


def _labels(model_name: str, version: int, training_licence: str = "unknown") -> dict[str, str]:
    """The Vertex resources' labels; `dermpipe-training-licence` (non-commercial | unknown | commercial) says what the
    training images' licences allow wherever the model is listed in the console."""
    return {"app": "dermpipe", "dermpipe-model": model_name.lower()[:63], "dermpipe-version": str(version),
            "dermpipe-training-licence": training_licence}


def deploy_vertex(version_uri: str, model_name: str, version: int, settings: VertexSettings,
                  aiplatform: Any = None, training_licence: str = "unknown") -> dict[str, Any]:
    """Upload `version_uri` as a new Vertex model version and deploy it to the endpoint; returns the resource names.
    `training_licence`: what the training images' licences allow (dermpipe.data.licences.short_verdict), a label."""
    if aiplatform is None:
        from google.cloud import aiplatform
    if not settings.project:
        raise ValueError("deploy (vertex): gcp_project is empty; set it to the Google Cloud project id")
    if not 0 < settings.traffic_percentage <= 100:
        raise ValueError(f"deploy (vertex): traffic_percentage {settings.traffic_percentage} is outside 1..100")
    aiplatform.init(project=settings.project, location=settings.region)
    labels = _labels(model_name, version, training_licence)
    existing = aiplatform.Model.list(filter=f'display_name="{model_name}"', order_by="create_time desc")
    parent = existing[0].resource_name if existing else None
    model = aiplatform.Model.upload(
        display_name=model_name, artifact_uri=version_uri, serving_container_image_uri=settings.serving_image,
        parent_model=parent, is_default_version=True, version_aliases=[f"v{version}"],
        version_description=f"dermpipe registry version {version} ({version_uri})", labels=labels, sync=True)
    endpoint_name = settings.endpoint_name or f"{model_name}-endpoint"
    endpoints = aiplatform.Endpoint.list(filter=f'display_name="{endpoint_name}"', order_by="create_time desc")
    endpoint = endpoints[0] if endpoints else aiplatform.Endpoint.create(display_name=endpoint_name, labels=labels)
    serving_already = bool(endpoint.list_models())
    traffic = settings.traffic_percentage if serving_already else 100
    model.deploy(endpoint=endpoint, deployed_model_display_name=f"{model_name}-v{version}",
                 machine_type=settings.machine_type, min_replica_count=settings.min_replicas,
                 max_replica_count=settings.max_replicas, traffic_percentage=traffic, sync=True)
    return {"vertex_model": model.resource_name, "vertex_model_version": str(getattr(model, "version_id", "")),
            "vertex_parent_model": parent or "", "vertex_endpoint": endpoint.resource_name,
            "vertex_traffic_percentage": traffic, "vertex_traffic_split": dict(endpoint.traffic_split or {})}


def inference_service(name: str, namespace: str, storage_uri: str, *, service_account: str = "",
                      canary_traffic_percent: int = 100, version: str = "", cpu: str = "1",
                      memory: str = "2Gi", runtime_version: str = KSERVE_TF_SERVING_VERSION,
                      training_licence: str = "unknown") -> dict[str, Any]:
    """The KServe v1beta1 InferenceService manifest (tensorflow model format, TF Serving REST on port 8080); the
    annotation dermpipe/training-data-licence says what the training images' licences allow."""
    predictor: dict[str, Any] = {
        "model": {"modelFormat": {"name": "tensorflow"}, "runtimeVersion": runtime_version,
                  "storageUri": storage_uri,
                  "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}},
    }
    if service_account:
        predictor["serviceAccountName"] = service_account
    if canary_traffic_percent < 100:
        predictor["canaryTrafficPercent"] = canary_traffic_percent
    return {
        "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app": "dermpipe"},
                     "annotations": {"dermpipe/registry-version": str(version),
                                     "dermpipe/training-data-licence": training_licence}},
        "spec": {"predictor": predictor},
    }


def kserve_name(model_name: str) -> str:
    """A DNS-1035 label from the model name (KServe names become hostnames)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in model_name.lower()).strip("-")
    return (cleaned if cleaned[:1].isalpha() else f"m-{cleaned}")[:45]


def apply_inference_service(manifest: dict[str, Any], api: Any = None) -> str:
    """Create the InferenceService, or patch it when it exists; returns "created" or "patched"."""
    from kubernetes.client.rest import ApiException

    if api is None:
        from kubernetes import client
        from kubernetes import config as kube_config

        try:
            kube_config.load_incluster_config()
        except kube_config.ConfigException:
            kube_config.load_kube_config()
        api = client.CustomObjectsApi()
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    try:
        api.get_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, name)
    except ApiException as err:
        if err.status != 404:
            raise RuntimeError(f"deploy (kserve): reading InferenceService {namespace}/{name} failed with HTTP "
                               f"{err.status} ({err.reason}); check that KServe is installed and that the "
                               f"pipeline's service account may get/create/patch inferenceservices") from err
        api.create_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, manifest)
        return "created"
    api.patch_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, name, manifest)
    return "patched"


KSERVE_SETTINGS_FILE = "kserve.json"


def remember_kserve(root: str, model_name: str, settings: dict[str, Any]) -> None:
    """Record where the model is served on KServe, for promote and rollback to follow."""
    storage.write_bytes(storage.join(registry.model_dir(root, model_name), KSERVE_SETTINGS_FILE),
                        json.dumps(settings).encode())


def kserve_settings(root: str, model_name: str) -> dict[str, Any] | None:
    """The KServe settings deploy recorded for this model, or None when it was never deployed there."""
    try:
        return json.loads(storage.read_text(storage.join(registry.model_dir(root, model_name), KSERVE_SETTINGS_FILE)))
    except FileNotFoundError:
        return None


def serve_on_kserve(root: str, model_name: str, version: int, settings: dict[str, Any], *, api: Any = None,
                    apply: bool = True, training_licence: str | None = None) -> dict[str, Any]:
    """Point the model's InferenceService at `version` (its serving alias); returns the manifest and what was done.
    `training_licence`: the version's (deploy knows it); None: read from the version's dermpipe.json."""
    options = dict(settings)
    namespace = options.pop("namespace", "default") or "default"
    name = options.pop("name", "") or kserve_name(model_name)
    if training_licence is None:  # promote / rollback: the version's own record says
        from dermpipe.data.licences import short_verdict

        training_licence = short_verdict(registry.read_record(root, model_name, version).get("licences"))
    manifest = inference_service(name, namespace, registry.serving_alias(root, model_name, version),
                                 version=str(version), training_licence=training_licence, **options)
    action = apply_inference_service(manifest, api) if apply else "rendered"
    return {"manifest": manifest, "kserve_inference_service": f"{namespace}/{name}", "kserve_action": action,
            "kserve_storage_uri": manifest["spec"]["predictor"]["model"]["storageUri"]}
