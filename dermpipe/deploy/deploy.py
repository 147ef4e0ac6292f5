"""The deploy stage: push a blessed model into the versioned registry, promote it, then serve it on the target.

    <registry>/<model name>/<version>/saved_model.pb, variables/, model.keras, dermpipe.json, COMMITTED.json
    <registry>/<model name>/current.json      which version is served

Never served from the cache, and idempotent: it pushes nothing when the model's digest (SHA-256 of model.keras) is
the current version's, and promotes the existing version when the same model is already in the registry. A push
claims its version number first and commits it with a marker written last (dermpipe.deploy.registry), so concurrent runs
each get an intact version. It promotes by compare-and-swap against the champion the gate compared with
(`champion_version`, from the pipeline's resolver task): if another run promoted in between, the version stays
pushed but not promoted, and the result says which version is current.

The registry root may be a local folder or gs://bucket/prefix. Infra validation: the exported SavedModel is loaded in
a separate Python process and sent real JPEGs (dermpipe.deploy.infravalidate); a model that cannot serve is never
pushed.
When the profile artifact is given, its embedding_pca.npz, reference_profile.parquet and clinical.json go into the
version folder (what `dermpipe serve` and the drift monitor read); the version's dermpipe.json also records the
operating points and the OOD threshold (`clinical`), so `dermpipe models` and the UI show them without the file.

deploy_target: local (the registry only) | vertex (also a Vertex AI model version + endpoint) | kserve (also a
KServe InferenceService on the version's serving alias); both cloud targets need a gs:// registry (cloud_targets).
`run` is what components/deploy.py calls, DeployParams its parameters; light to import (kfp only for type hints), as
`dermpipe run`'s options are built from DeployParams.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermpipe import config
from dermpipe.componentkit import param
from dermpipe.deploy import cloud_targets
from dermpipe.deploy.registry import model_name_field, registry_root_field

if TYPE_CHECKING:
    from kfp.dsl import Dataset, Metrics, Model


@dataclass(frozen=True)
class DeployParams:
    registry_root: str = registry_root_field()
    model_name: str = model_name_field()
    deploy_target: str = param("local", "where the blessed model is served: local | vertex | kserve")
    gcp_project: str = param("", "Google Cloud project of the Vertex AI endpoint (deploy_target vertex)")
    gcp_region: str = param("us-central1", "region of the Vertex AI endpoint (deploy_target vertex)")
    vertex_endpoint: str = param("", "Vertex AI endpoint name [default: <model name>-endpoint]")
    traffic_percentage: int = param(100, "share of the Vertex AI endpoint's traffic the new version gets")
    vertex_machine_type: str = param("n1-standard-4", "machine type of the Vertex AI deployment")
    vertex_serving_image: str = param("us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
                                      "serving container image of the Vertex AI model")
    kserve_namespace: str = param("default", "Kubernetes namespace of the KServe InferenceService "
                                             "(deploy_target kserve)")
    kserve_service_account: str = param("", "service account of the KServe predictor (reads the registry)")
    canary_traffic_percent: int = param(100, "share of the KServe traffic the new version gets")
    champion_version: int = param(0, "the champion resolve-champion read; deploy promotes only if still current")
    benchmark: str = param("", "the frozen benchmark set (name@vN) the gate compared on, recorded with the version")

    def vertex(self) -> cloud_targets.VertexSettings:
        return cloud_targets.VertexSettings(project=self.gcp_project, region=self.gcp_region,
                                            endpoint_name=self.vertex_endpoint,
                                            traffic_percentage=self.traffic_percentage,
                                            machine_type=self.vertex_machine_type,
                                            serving_image=self.vertex_serving_image)

    def kserve(self) -> dict[str, Any]:
        return {"namespace": self.kserve_namespace, "service_account": self.kserve_service_account,
                "canary_traffic_percent": self.canary_traffic_percent}


PROFILE_FILES = ("embedding_pca.npz", "reference_profile.parquet", "clinical.json", "licences.json")


def export_saved_model(keras_file: Path, out_dir: Path) -> dict[str, object]:
    """Export the Keras model as a SavedModel (JPEG-bytes and pixel signatures) and validate it in another process."""
    from dermpipe.deploy.infravalidate import validate_in_subprocess
    from dermpipe.model.export import export_serving_model
    from dermpipe.model.zoo import load_classifier

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


def clinical_record(stage: Path) -> dict[str, object] | None:
    """The operating points (name, target, threshold, why it is not achievable ('' when valid), test sensitivity and
    specificity) and the OOD threshold of a staged version, for its registry record; None when the profile brought
    no clinical.json."""
    path = stage / "clinical.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    ood = data.get("ood") or {}
    return {"default_operating_point": data.get("default_operating_point"),
            "operating_points": [{k: p.get(k) for k in ("name", "target_sensitivity", "threshold", "chosen_on")}
                                 | {"invalid": p.get("invalid", ""),
                                    **{f"test_{k}": p.get("test", {}).get(k) for k in ("sensitivity", "specificity")}}
                                 for p in data.get("operating_points", [])],
            "ood_score": ood.get("served_score", ood.get("score")), "ood_threshold": ood.get("threshold"),
            "ood_pass_rate": ood.get("pass_rate")}


def licence_record(stage: Path) -> dict[str, object] | None:
    """The training images' licences (the profile's licences.json: train + val) for the version's record, and its
    attribution.txt beside it; None when the profile brought no licences.json (then every listing says so)."""
    from dermpipe.data import licences

    path = stage / licences.LICENCES_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    summary = data["trained_on"]
    (stage / licences.ATTRIBUTION_FILE).write_text(licences.attribution_text(summary))
    return {**summary, "verdict": licences.verdict(summary), "trained_on_splits": data.get("trained_on_splits"),
            "splits": data.get("splits", {}), "attribution_file": licences.ATTRIBUTION_FILE}


def push(model_dir: Path, registry_root: str, model_name: str, record: dict[str, object],
         profile_dir: Path | None = None, digest: str = "") -> tuple[int, str]:
    """Export, validate (separate process), claim the next version and commit the files (marker last). Does not
    promote: see `promote_or_report`."""
    import datetime as dt
    import shutil

    from dermpipe import storage
    from dermpipe.deploy import registry
    digest = digest or storage.sha256_file(model_dir / "model.keras")
    with tempfile.TemporaryDirectory() as staging:
        stage = Path(staging) / "version"
        check = export_saved_model(model_dir / "model.keras", stage)  # before claiming: a failure leaves no gap
        profile = copy_profile(profile_dir, stage, int(check["outputs"]["embedding"]))
        shutil.copyfile(model_dir / "model.keras", stage / "model.keras")
        version = registry.allocate(registry_root, model_name, owner={"source_model_uri": record.get("source_model_uri",
                                                                                                    "")})
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        (stage / "dermpipe.json").write_text(json.dumps({**record, "version": version, "created": created,
                                                         "model_digest": digest, "serving_check": check,
                                                         "profile": profile, "clinical": clinical_record(stage),
                                                         "licences": licence_record(stage)},
                                                        indent=1, default=str))
        from dermpipe.deploy.model_card import stage_card  # model_card.json/.html, from what the stage holds
        stage_card(stage, model_dir)
        target = registry.commit(registry_root, model_name, version, stage, digest)
    return version, target


def publish(model_dir: Path, registry_root: str, model_name: str, record: dict[str, object],
            profile_dir: Path | None, champion_version: int,
            evidence: Callable[[], dict[str, str]] | None = None) -> dict[str, object]:
    """Push unless the registry already holds this model, then promote by compare-and-swap against the champion the
    gate compared with (0: none). `evidence`: freezes the test split for a first push and returns the record fields
    naming the set (dermpipe.deploy.evidence). Returns what happened, in words and fields."""
    from dermpipe import storage
    from dermpipe.deploy import registry
    digest = storage.sha256_file(model_dir / "model.keras")
    expected = champion_version or None
    current = registry.champion(registry_root, model_name)
    if current.version and current.digest == digest:
        licence = licence_fields(registry_root, model_name, current.version)
        return {"version": current.version, "registry_uri": registry.version_dir(registry_root, model_name,
                                                                                  current.version),
                "action": "unchanged", "promoted": False, "current_version": current.version, "model_digest": digest,
                **licence,
                "message": f"version {current.version} already serves this model (digest {digest[:12]}); "
                           f"nothing pushed; training data: {licence['licences']}"}
    existing = registry.find_by_digest(registry_root, model_name, digest)
    if existing is not None:
        version, target, action = existing, registry.version_dir(registry_root, model_name, existing), "reused"
    else:
        record = {**record, **(evidence() if evidence is not None else {})}
        version, target = push(model_dir, registry_root, model_name, record, profile_dir, digest)
        action = "pushed"
    result = registry.promote(registry_root, model_name, version, expected=expected, reason="deploy")
    licence = licence_fields(registry_root, model_name, version)
    words = f"version {version} {'already in the registry' if action == 'reused' else 'pushed'}"
    if result.promoted:
        message = f"{words} and promoted (was {result.previous or 'none'})"
    else:
        message = (f"{words} but NOT promoted: the gate compared with version {expected or 'none'}, and version "
                   f"{result.current} was made current meanwhile by another run; version {result.current} stays "
                   f"the champion (re-run to gate against it, or `dermpipe models promote {version}`)")
    return {"version": version, "registry_uri": target, "action": action, "promoted": result.promoted,
            "current_version": result.current, "model_digest": digest, **licence,
            "message": f"{message}; training data: {licence['licences']}"}


def licence_fields(registry_root: str, model_name: str, version: int) -> dict[str, str]:
    """What the version's training images' licences allow, for the deploy summary (dermpipe.json's `licences`)."""
    from dermpipe.data import licences
    from dermpipe.deploy import registry

    summary = registry.read_record(registry_root, model_name, version).get("licences")
    return {"licences": licences.verdict(summary), "commercial_use": licences.commercial_use(summary or {}),
            "training_licence": licences.short_verdict(summary)}


def run(model: Model, evaluation: Metrics, pushed: Model, registry_root: str, model_name: str,
        deploy_target: str = "local", profile_dir: Path | None = None,
        vertex: cloud_targets.VertexSettings | None = None, kserve: dict | None = None,
        clients: dict | None = None, champion_version: int = 0, benchmark: str = "", test_split: Dataset | None = None,
        raw: Dataset | None = None) -> dict[str, object]:
    """Publish, then deploy the promoted version to the target; `clients` ({"aiplatform": ...,
    "kubernetes": CustomObjectsApi}) for tests. `benchmark`: the frozen benchmark set (name@vN) the gate compared on,
    kept in the version's dermpipe.json so that the next gate can say when it compares on another one. A pushed
    version's test split (`test_split`, named after `raw`'s source) is frozen as its own benchmark set."""
    from functools import partial

    from dermpipe.deploy.evidence import freeze_run_test_split
    from dermpipe.lineage.artifacts import annotate

    clients = clients or {}
    if not registry_root.strip():
        raise ValueError("deploy: registry_root is empty; set the pipeline parameter registry_root to a folder or "
                         "gs://bucket/prefix where model versions are kept")
    cloud_targets.check_target(deploy_target, registry_root)
    record = {"model_name": model_name, "source_model_uri": model.uri, "training": dict(model.metadata),
              "evaluation_uri": evaluation.uri, "evaluation": dict(evaluation.metadata), "target": deploy_target,
              "benchmark": benchmark}
    evidence = None if test_split is None else partial(freeze_run_test_split, test_split, raw, registry_root,
                                                       model_name)
    result = publish(Path(model.path), registry_root, model_name, record, profile_dir, champion_version, evidence)
    print(f"deploy: {model_name} {result['message']}", flush=True)
    if deploy_target == "vertex" and result["promoted"]:  # an unchanged model is already on its endpoint
        settings = vertex or cloud_targets.VertexSettings(project="")
        result.update(cloud_targets.deploy_vertex(str(result["registry_uri"]), model_name, int(result["version"]),
                                                 settings, clients.get("aiplatform"),
                                                 training_licence=str(result["training_licence"])))
    elif deploy_target == "kserve" and (result["promoted"] or result["action"] == "unchanged"):
        settings = {"namespace": "default", **(kserve or {})}
        cloud_targets.remember_kserve(registry_root, model_name, settings)
        served = cloud_targets.serve_on_kserve(registry_root, model_name, int(result["current_version"]), settings,
                                              api=clients.get("kubernetes"),
                                              training_licence=str(result["training_licence"]))
        result.update({k: v for k, v in served.items() if k != "manifest"})
    Path(pushed.path).write_text(json.dumps(result))
    annotate(pushed, {**result, "model_name": model_name, "target": deploy_target, "source_model_uri": model.uri})
    return result
