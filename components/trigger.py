"""trigger: the KFP component that combines the monitoring DAG's retraining triggers into one bool (kfp.local
resolves a dsl.If condition only on a task's single unnamed output); the logic is dermpipe.monitoring.trigger."""

from kfp.dsl import Markdown, Metrics, Output

from dermpipe.componentkit import stage_component


@stage_component()
def trigger(drift_detected: bool, performance_dropped: bool, report: Output[Markdown],
            metrics: Output[Metrics]) -> bool:
    """Retrain when drift was detected or performance dropped; the report and metrics say which fired."""
    from dermpipe.monitoring.trigger import run

    return run(drift_detected, performance_dropped, report, metrics)
