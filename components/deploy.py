"""deploy (local target): push a blessed model into a versioned registry in TF Serving's layout.

    <registry>/<model name>/<version>/saved_model.pb, variables/, model.keras, dermpipe.json
    <registry>/<model name>/current.json      which version is served

The registry root may be a local folder or gs://bucket/prefix (tf.io.gfile handles both). Infra validation: the
exported SavedModel is loaded in a separate Python process and sent real JPEGs (dermpipe.infravalidate); a model that
cannot serve is never pushed. When the drift work's profile artifact is given, its embedding_pca.npz and
reference_profile.parquet go into the version folder (what `dermpipe serve` and the drift monitor read).

deploy_target: local (the registry only) | vertex (also a Vertex AI model version + endpoint) | kserve (also a
KServe InferenceService); both cloud targets need a gs:// registry (dermpipe.cloud_deploy).
"""

import json
import tempfile
from pathlib import Path

from kfp.dsl import Artifact, Input, Metrics, Model, Output

from dermpipe import cloud_deploy, config
from dermpipe.componentkit import stage_component


def next_version(registry_root: str, model_name: str) -> int:
    """1 + the highest integer version folder under <registry_root>/<model_name> (1 for a new model)."""
    import tensorflow as tf

    model_dir = f"{registry_root.rstrip('/')}/{model_name}"
    if not tf.io.gfile.exists(model_dir):
        return 1
    versions = [int(name.strip("/")) for name in tf.io.gfile.listdir(model_dir) if name.strip("/").isdigit()]
    return max(versions, default=0) + 1


PROFILE_FILES = ("embedding_pca.npz", "reference_profile.parquet")


def export_saved_model(keras_file: Path, out_dir: Path) -> dict[str, object]:
    """Export the Keras model as a SavedModel (JPEG-bytes and pixel signatures) and validate it in another process."""
    from dermpipe.export import export_serving_model
    from dermpipe.infravalidate import validate_in_subprocess
    from dermpipe.models import load_classifier

    description = export_serving_model(load_classifier(keras_file), out_dir)
    return {**description, **validate_in_subprocess(out_dir, len(config.CLASSES))}


def copy_profile(profile_dir: Path | None, stage: Path, embedding_dim: int) -> dict[str, object]:
    """Copy the drift reference profile files that exist in `profile_dir` into the staged version folder."""
    import shutil

    import numpy as np

    if profile_dir is None or not profile_dir.is_dir():
        return {"copied": [], "missing": list(PROFILE_FILES), "source": str(profile_dir or "")}
    copied = [name for name in PROFILE_FILES if (profile_dir / name).is_file()]
    if "embedding_pca.npz" in copied:
        with np.load(profile_dir / "embedding_pca.npz") as pca:
            mean, components = pca["mean"], pca["components"]
        if mean.shape != (embedding_dim,) or components.ndim != 2 or components.shape[1] != embedding_dim:
            raise ValueError(f"deploy: {profile_dir / 'embedding_pca.npz'} has mean {mean.shape} and components "
                             f"{components.shape}, but this model's embedding has {embedding_dim} values; the profile "
                             f"was made for another model (re-run the profile step on this model)")
    for name in copied:
        shutil.copyfile(profile_dir / name, stage / name)
    return {"copied": copied, "missing": [n for n in PROFILE_FILES if n not in copied], "source": str(profile_dir)}


def copy_tree(src: Path, dst: str) -> None:
    import tensorflow as tf

    for path in sorted(src.rglob("*")):
        target = f"{dst}/{path.relative_to(src).as_posix()}"
        if path.is_dir():
            tf.io.gfile.makedirs(target)
        else:
            tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
            tf.io.gfile.copy(str(path), target, overwrite=True)


def push(model_dir: Path, registry_root: str, model_name: str, record: dict[str, object],
         profile_dir: Path | None = None) -> tuple[int, str]:
    """Export, validate (separate process) and copy the model into the next registry version, then mark it current."""
    import datetime as dt

    import tensorflow as tf

    from dermpipe import registry

    version = next_version(registry_root, model_name)
    target = registry.version_dir(registry_root, model_name, version)
    with tempfile.TemporaryDirectory() as staging:
        stage = Path(staging) / str(version)
        check = export_saved_model(model_dir / "model.keras", stage)
        profile = copy_profile(profile_dir, stage, int(check["outputs"]["embedding"]))
        tf.io.gfile.copy(str(model_dir / "model.keras"), str(stage / "model.keras"))
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        (stage / "dermpipe.json").write_text(json.dumps({**record, "version": version, "created": created,
                                                         "serving_check": check, "profile": profile},
                                                        indent=1, default=str))
        copy_tree(stage, target)
    registry.set_current(registry_root, model_name, version, reason="deploy")
    return version, target


def run(model: Model, evaluation: Metrics, pushed: Model, registry_root: str, model_name: str,
        deploy_target: str = "local", profile_dir: Path | None = None,
        vertex: cloud_deploy.VertexSettings | None = None, kserve: dict | None = None,
        clients: dict | None = None) -> dict[str, object]:
    """Push, then deploy to the target; `clients` ({"aiplatform": ..., "kubernetes": CustomObjectsApi}) for tests."""
    from dermpipe.lineage import annotate

    clients = clients or {}

    if not registry_root.strip():
        raise ValueError("deploy: registry_root is empty; set the pipeline parameter registry_root to a folder or "
                         "gs://bucket/prefix where model versions are kept")
    cloud_deploy.check_target(deploy_target, registry_root)
    record = {"model_name": model_name, "source_model_uri": model.uri, "training": dict(model.metadata),
              "evaluation_uri": evaluation.uri, "evaluation": dict(evaluation.metadata), "target": deploy_target}
    version, target = push(Path(model.path), registry_root, model_name, record, profile_dir)
    result: dict[str, object] = {"registry_uri": target, "version": version}
    if deploy_target == "vertex":
        settings = vertex or cloud_deploy.VertexSettings(project="")
        result.update(cloud_deploy.deploy_vertex(target, model_name, version, settings, clients.get("aiplatform")))
    elif deploy_target == "kserve":
        options = dict(kserve or {})
        namespace = options.pop("namespace", "default") or "default"
        manifest = cloud_deploy.inference_service(cloud_deploy.kserve_name(model_name), namespace,
                                                  target.rsplit("/", 1)[0], version=str(version), **options)
        result.update({"kserve_inference_service": f"{namespace}/{manifest['metadata']['name']}",
                       "kserve_action": cloud_deploy.apply_inference_service(manifest, clients.get("kubernetes")),
                       "kserve_storage_uri": manifest["spec"]["predictor"]["model"]["storageUri"]})
    Path(pushed.path).write_text(json.dumps(result))
    annotate(pushed, {**result, "model_name": model_name, "target": deploy_target, "source_model_uri": model.uri})
    return result


@stage_component()
def deploy(model: Input[Model], evaluation: Input[Metrics], pushed: Output[Model], registry_root: str,
           model_name: str = "dermpipe-isic2019", deploy_target: str = "local", profile: Input[Artifact] = None,
           gcp_project: str = "", gcp_region: str = "us-central1", vertex_endpoint: str = "",
           traffic_percentage: int = 100, vertex_machine_type: str = "n1-standard-4",
           vertex_serving_image: str = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
           kserve_namespace: str = "default", kserve_service_account: str = "", canary_traffic_percent: int = 100):
    """Push a blessed model to the versioned registry (runs only under the pipeline's blessed condition), then to
    the deploy target (local | vertex | kserve)."""
    from pathlib import Path

    from dermpipe.cloud_deploy import VertexSettings
    from dermpipe.components.deploy import run

    vertex = VertexSettings(project=gcp_project, region=gcp_region, endpoint_name=vertex_endpoint,
                            traffic_percentage=traffic_percentage, machine_type=vertex_machine_type,
                            serving_image=vertex_serving_image)
    kserve = {"namespace": kserve_namespace, "service_account": kserve_service_account,
              "canary_traffic_percent": canary_traffic_percent}
    run(model, evaluation, pushed, registry_root, model_name, deploy_target,
        Path(profile.path) if profile is not None else None, vertex, kserve)
