"""The parameter sets of the stages that read or change the registry: resolve-champion, gate (ChallengeParams) and
deploy. registry_root and model_name are one value for all three (one pipeline parameter each), so their fields come
from one definition.

Kept apart from the stage logic (which imports pandas and kfp) so that `dermpipe run --help`, whose options are
derived from these, stays quick; tests/architecture/test_parameter_agreement.py checks the signatures against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dermpipe import config
from dermpipe.componentkit import param
from dermpipe.model.evaluation.gate import GateParams

if TYPE_CHECKING:
    from dermpipe.deploy.cloud_targets import VertexSettings


def registry_root_field() -> Any:
    return param("", "model registry: a folder or gs://bucket/prefix holding the model versions")


def model_name_field() -> Any:
    return param(config.MODEL_NAME, "the model's name in the registry")


@dataclass(frozen=True)
class ChampionParams:
    registry_root: str = registry_root_field()
    model_name: str = model_name_field()
    benchmark_set: str = param("", "frozen benchmark set the gate compares on: NAME (its latest version in the "
                                   "registry), NAME@vN, or a benchmark .json URI; empty: the champion's own "
                                   "(frozen when it was deployed)")

    def check(self) -> None:
        from dermpipe.data.benchmark import check_benchmark_set

        check_benchmark_set(self.benchmark_set)


@dataclass(frozen=True)
class ChallengeParams:
    """The gate's statistics settings and the champion it compares with (the resolver's outputs, as values)."""

    gate: GateParams = field(default_factory=GateParams)
    registry_root: str = registry_root_field()
    model_name: str = model_name_field()
    champion_version: int = param(0, "the current champion's version (resolve-champion's output; 0: none)")
    champion_digest: str = param("", "the current champion's model digest (resolve-champion's output)")
    benchmark: str = param("", "the frozen benchmark set (name@vN) to compare on (resolve-champion's output; "
                               "empty: the whole test split)")


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

    def vertex(self) -> VertexSettings:
        from dermpipe.deploy.cloud_targets import VertexSettings

        return VertexSettings(project=self.gcp_project, region=self.gcp_region, endpoint_name=self.vertex_endpoint,
                              traffic_percentage=self.traffic_percentage, machine_type=self.vertex_machine_type,
                              serving_image=self.vertex_serving_image)

    def kserve(self) -> dict[str, Any]:
        return {"namespace": self.kserve_namespace, "service_account": self.kserve_service_account,
                "canary_traffic_percent": self.canary_traffic_percent}
