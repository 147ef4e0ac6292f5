"""deploy: the KFP component (signature, parameters, one library call); the logic is dermpipe.deploy.deploy."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from dermpipe.componentkit import stage_component


@stage_component()
def deploy(model: Input[Model], evaluation: Input[Metrics], pushed: Output[Model], registry_root: str = "",
           model_name: str = "dermpipe-isic2019", deploy_target: str = "local", profile: Input[Artifact] = None,
           gcp_project: str = "", gcp_region: str = "us-central1", vertex_endpoint: str = "",
           traffic_percentage: int = 100, vertex_machine_type: str = "n1-standard-4",
           vertex_serving_image: str = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
           kserve_namespace: str = "default", kserve_service_account: str = "", canary_traffic_percent: int = 100,
           champion_version: int = 0, benchmark: str = "", test_split: Input[Dataset] = None,
           raw: Input[Dataset] = None):
    """Push a blessed model to the versioned registry (runs only under the pipeline's blessed condition), promote it
    if `champion_version` is still current, then serve it on the deploy target (local | vertex | kserve). A pushed
    version's `test_split` is frozen as its benchmark set (named after `raw`'s source), which later gates compare on."""
    from pathlib import Path

    from dermpipe.deploy.deploy import DeployParams, run

    params = DeployParams(
        registry_root=registry_root, model_name=model_name, deploy_target=deploy_target, gcp_project=gcp_project,
        gcp_region=gcp_region, vertex_endpoint=vertex_endpoint, traffic_percentage=traffic_percentage,
        vertex_machine_type=vertex_machine_type, vertex_serving_image=vertex_serving_image,
        kserve_namespace=kserve_namespace, kserve_service_account=kserve_service_account,
        canary_traffic_percent=canary_traffic_percent, champion_version=champion_version, benchmark=benchmark)
    run(model, evaluation, pushed, params.registry_root, params.model_name, params.deploy_target,
        Path(profile.path) if profile is not None else None, params.vertex(), params.kserve(),
        champion_version=params.champion_version, benchmark=params.benchmark, test_split=test_split, raw=raw)
