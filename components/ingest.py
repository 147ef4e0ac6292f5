"""ingest: the KFP component (signature, parameters, one library call); the logic is dermpipe.data.ingest."""

from kfp.dsl import Dataset, Metrics, Output

from dermpipe.componentkit import stage_component


@stage_component()
def ingest(dataset: Output[Dataset], stats: Output[Metrics], source: str = "demo", source_fingerprint: str = "",
           demo_images: int = 400, feedback_log_root: str = "", feedback_retention_days: int = 365,
           feedback_fingerprint: str = ""):
    """Bring the data set into the pipeline, plus the labelled images fed back to the served model when
    feedback_log_root is set (source_fingerprint / feedback_fingerprint change with their input: cache keys)."""
    from dermpipe.data.ingest import IngestParams, run

    params = IngestParams(source=source, source_fingerprint=source_fingerprint, demo_images=demo_images,
                          feedback_log_root=feedback_log_root, feedback_retention_days=feedback_retention_days,
                          feedback_fingerprint=feedback_fingerprint)
    run(params.source, dataset, stats, params.demo_images, feedback_log_root=params.feedback_log_root,
        feedback_retention_days=params.feedback_retention_days)
