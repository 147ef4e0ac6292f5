"""The monitoring DAG: drift report -> [drift?] -> retraining trigger; local runner and IR YAML compiler.

    drift (Evidently on the prediction log window or an image folder)  ->  dsl.If(drift_detected)  ->  retrain

Schedule it daily on Kubeflow Pipelines (a recurring run) or Vertex AI (a PipelineJob schedule) with `since`/`until`
covering the previous day; locally, cron `dermpipe monitor`.
"""

import warnings
from pathlib import Path
from typing import Any

from kfp import dsl

from dermpipe import config
from dermpipe.components.drift import drift
from dermpipe.components.retrain import retrain
from dermpipe.lineage.artifacts import CODE_VERSION_ENV, code_version

PIPELINE_NAME = "dermpipe-monitoring"


def build_monitoring_pipeline(placement: bool = True):
    """The monitoring pipeline function; placement=False leaves out CPU/memory limits (local runs)."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Drift of served traffic against the reference profile; "
                                                  "retrain when it drifted")
    def monitoring_pipeline(
        reference: str,
        current: str,
        since: str = "",
        until: str = "",
        metadata_csv: str = "",
        min_samples: int = 30,
        drift_share: float = 0.5,
        num_method: str = "auto",
        num_threshold: float = 0.0,
        cat_method: str = "auto",
        cat_threshold: float = 0.0,
        retrain_backend: str = "local",
        training_params: str = "{}",
        kfp_host: str = "",
        template_path: str = "",
        project: str = "",
        location: str = "",
        pipeline_root: str = "",
    ):
        checked = drift(reference=reference, current=current, since=since, until=until, metadata_csv=metadata_csv,
                        min_samples=min_samples, drift_share=drift_share, num_method=num_method,
                        num_threshold=num_threshold, cat_method=cat_method, cat_threshold=cat_threshold)
        checked.set_display_name("drift").set_env_variable(CODE_VERSION_ENV, code_version())
        if placement:
            checked.set_cpu_limit("4").set_memory_limit("16G")
        with dsl.If(checked.outputs["Output"] == True, name="drifted"):  # noqa: E712 (KFP condition syntax)
            started = retrain(backend=retrain_backend, training_params=training_params, kfp_host=kfp_host,
                              template_path=template_path, project=project, location=location,
                              pipeline_root=pipeline_root)
            started.set_display_name("retrain").set_env_variable(CODE_VERSION_ENV, code_version())
            started.set_caching_options(False)  # a new drift verdict must start a new run

    return monitoring_pipeline


def run_monitoring_local(params: dict[str, Any], *, pipeline_root: Path | None = None) -> Path:
    """Run the monitoring pipeline with kfp.local (no caching: every run reads the log anew); returns the run's
    artifact folder (<pipeline root>/<run>/<task>/<output>: drift/report, drift/metrics, retrain/request, ...)."""
    from kfp import local

    root = Path(pipeline_root or config.default_pipeline_root()).resolve()
    before = set(root.glob(f"{PIPELINE_NAME}-*")) if root.exists() else set()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), enable_caching=False,
               raise_on_error=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        build_monitoring_pipeline(placement=False)(**params)
    created = sorted(set(root.glob(f"{PIPELINE_NAME}-*")) - before, key=lambda p: p.stat().st_mtime)
    if not created:
        raise RuntimeError(f"the monitoring run left no folder under {root}")
    return created[-1]
