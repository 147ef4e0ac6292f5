"""The monitoring DAG: drift report -> [drift?] -> retraining trigger; local runner and IR YAML compiler.

    drift (Evidently on the prediction log window or an image folder)  ->  dsl.If(drift_detected)  ->  retrain

Schedule it daily on Kubeflow Pipelines (a recurring run) or Vertex AI (a PipelineJob schedule) with `since`/`until`
covering the previous day; locally, cron `dermpipe monitor`.
"""

from pathlib import Path
from typing import Any

from kfp import dsl

from dermpipe.components.drift import drift
from dermpipe.components.retrain import retrain
from dermpipe.pipelines.placement import Placement, place_step

PIPELINE_NAME = "dermpipe-monitoring"


def build_monitoring_pipeline(placement: Placement | None = Placement()):
    """The monitoring pipeline function; `placement=None` leaves out cluster placement (local runs)."""

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
        feedback_log_root: str = "",
    ):
        checked = place_step(
            drift(reference=reference, current=current, since=since, until=until, metadata_csv=metadata_csv,
                  min_samples=min_samples, drift_share=drift_share, num_method=num_method,
                  num_threshold=num_threshold, cat_method=cat_method, cat_threshold=cat_threshold),
            placement, cpu=placement and placement.drift_cpu, memory=placement and placement.drift_memory,
        ).set_display_name("drift")
        with dsl.If(checked.outputs["Output"] == True, name="drifted"):  # noqa: E712 (KFP condition syntax)
            started = place_step(
                retrain(backend=retrain_backend, training_params=training_params, kfp_host=kfp_host,
                        template_path=template_path, project=project, location=location,
                        pipeline_root=pipeline_root, feedback_log_root=feedback_log_root),
                placement,
            ).set_display_name("retrain")
            started.set_caching_options(False)  # a new drift verdict must start a new run

    return monitoring_pipeline


def run_monitoring_local(params: dict[str, Any], *, pipeline_root: Path | None = None) -> Path:
    """Run the monitoring pipeline with the local runner (no caching: every run reads the log anew); returns the
    run's artifact folder (<pipeline root>/<run>/<task>/<output>: drift/report, drift/metrics, retrain/request...).
    The run is recorded like a training run (`dermpipe runs`, `dermpipe show`, the lineage store)."""
    from dermpipe.pipelines.local import run_pipeline

    record = run_pipeline(build_monitoring_pipeline(placement=None), PIPELINE_NAME, params,
                          pipeline_root=pipeline_root, cache=False)
    if record.status != "succeeded":
        raise RuntimeError(f"monitoring run {record.run_id} failed: {record.error}")
    return Path(record.pipeline_root) / record.run_id
