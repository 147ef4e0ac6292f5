"""ingest: the KFP component (signature, parameters, one library call); the logic is dermpipe.data.ingest."""

from kfp.dsl import Dataset, Metrics, Output

from dermpipe.componentkit import stage_component


@stage_component()
def ingest(source: str, source_fingerprint: str, demo_images: int, dataset: Output[Dataset], stats: Output[Metrics]):
    """Bring the data set into the pipeline (source_fingerprint changes when the source's files do: cache key)."""
    from dermpipe.data.ingest import run

    run(source, dataset, stats, demo_images)
