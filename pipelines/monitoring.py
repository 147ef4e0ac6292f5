"""The monitoring DAG: drift and performance reports -> trigger -> [fired?] -> retraining; local runner.

    drift (Evidently on the prediction log window or an image folder)          \
                                                                                trigger -> dsl.If(fired) -> retrain
    performance (fed-back labels joined to the log, against the test figures)  /

The trigger task returns one bool (drift OR performance drop; kfp.local resolves a condition only on a task's single
unnamed output) and its report says which fired. Without labels performance reports "not measured" and returns
False, so the DAG behaves as drift alone.

Schedule it daily on Kubeflow Pipelines (a recurring run) or Vertex AI (a PipelineJob schedule) with `since`/`until`
covering the previous day; locally, cron `dermpipe monitor`.
"""

from pathlib import Path
from typing import Any

from kfp import dsl

from dermpipe.components.drift import drift
from dermpipe.components.performance import performance
from dermpipe.components.retrain import retrain
from dermpipe.components.trigger import trigger
from dermpipe.pipelines.placement import Placement, place_step

PIPELINE_NAME = "dermpipe-monitoring"


RETRAIN_REASON = "monitoring trigger fired: drift and/or a performance drop (the trigger task's report says which)"


def _performance_and_trigger(checked, placement: Placement | None, **settings):
    """The performance task and the trigger task that combines its verdict with drift's (neither taken from the
    cache: labels keep arriving for the same window)."""
    measured = place_step(performance(**settings), placement).set_display_name("performance")
    decided = place_step(
        trigger(drift_detected=checked.outputs["Output"], performance_dropped=measured.outputs["Output"]), placement,
    ).set_display_name("trigger")
    for task in (measured, decided):
        task.set_caching_options(False)
    return decided


def build_monitoring_pipeline(placement: Placement | None = Placement()):
    """The monitoring pipeline function; `placement=None` leaves out cluster placement (local runs)."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Drift of served traffic against the reference profile and "
                                                  "performance on fed-back labels; retrain when it drifted or "
                                                  "performance dropped")
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
        registry_root: str = "",
        model_name: str = "dermpipe-isic2019",
        min_labels: int = 30,
        min_melanomas: int = 10,
        n_bootstrap: int = 1000,
        period: str = "",
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
        decided = _performance_and_trigger(
            checked, placement, current=current, registry_root=registry_root, reference=reference,
            model_name=model_name, since=since, until=until, min_labels=min_labels, min_melanomas=min_melanomas,
            n_bootstrap=n_bootstrap, period=period)
        with dsl.If(decided.outputs["Output"] == True, name="fired"):  # noqa: E712 (KFP condition syntax)
            started = place_step(
                retrain(backend=retrain_backend, training_params=training_params, reason=RETRAIN_REASON,
                        kfp_host=kfp_host, template_path=template_path, project=project, location=location,
                        pipeline_root=pipeline_root, feedback_log_root=feedback_log_root),
                placement,
            ).set_display_name("retrain")
            started.set_caching_options(False)  # a new verdict must start a new run

    return monitoring_pipeline


def run_monitoring_local(params: dict[str, Any], *, pipeline_root: Path | None = None) -> Path:
    """Run the monitoring pipeline with the local runner (no caching: every run reads the log anew); returns the
    run's artifact folder (<pipeline root>/<run>/<task>/<output>: drift/report, performance/report, trigger/report,
    retrain/request...).
    The run is recorded like a training run (`dermpipe runs`, `dermpipe show`, the lineage store)."""
    from dermpipe.pipelines.local import run_pipeline

    record = run_pipeline(build_monitoring_pipeline(placement=None), PIPELINE_NAME, params,
                          pipeline_root=pipeline_root, cache=False)
    if record.status != "succeeded":
        raise RuntimeError(f"monitoring run {record.run_id} failed: {record.error}")
    return Path(record.pipeline_root) / record.run_id
