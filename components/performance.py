"""performance: the KFP component (signature, parameters, one library call); the logic is
dermpipe.monitoring.performance.stage."""

from kfp.dsl import HTML, Dataset, Metrics, Output

from dermpipe.componentkit import stage_component


@stage_component()
def performance(
    current: str, report: Output[HTML], metrics: Output[Metrics], results: Output[Dataset], registry_root: str = "",
    model_name: str = "dermpipe-isic2019", since: str = "", until: str = "", min_labels: int = 30,
    min_melanomas: int = 10, n_bootstrap: int = 1000, period: str = "", reference: str = "",
) -> bool:
    """Live performance of each served version from the fed-back labels, against its test figures; returns whether
    performance dropped (no labels: False, and the report says so)."""
    from dermpipe.monitoring.performance.stage import PerformanceParams, run

    params = PerformanceParams(min_labels=min_labels, min_melanomas=min_melanomas, n_bootstrap=n_bootstrap,
                               period=period)
    return run(current, registry_root, model_name, report, metrics, results, params, since=since, until=until,
               reference=reference)
