"""drift: the KFP component (signature, parameters, one library call); the logic is dermpipe.monitoring.drift.stage."""

from kfp.dsl import HTML, Dataset, Metrics, Output

from dermpipe.componentkit import stage_component


@stage_component()
def drift(
    reference: str, current: str, report: Output[HTML], metrics: Output[Metrics], results: Output[Dataset],
    since: str = "", until: str = "", metadata_csv: str = "", min_samples: int = 30, drift_share: float = 0.5,
    num_method: str = "auto", num_threshold: float = 0.0, cat_method: str = "auto", cat_threshold: float = 0.0,
) -> bool:
    """Evidently drift of current traffic against the model's reference profile; returns drift_detected."""
    from dermpipe.monitoring.drift.stage import DriftParams, run

    params = DriftParams(min_samples=min_samples, drift_share=drift_share, num_method=num_method,
                         num_threshold=num_threshold, cat_method=cat_method, cat_threshold=cat_threshold)
    return run(reference, current, report, metrics, results, params, since=since, until=until,
               metadata_csv=metadata_csv)
