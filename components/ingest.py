"""ingest: the KFP component (signature, parameters, one library call); the logic is dermpipe.data.ingest."""

from kfp.dsl import Dataset, Metrics, Output

from dermpipe.componentkit import stage_component


@stage_component()
def ingest(dataset: Output[Dataset], stats: Output[Metrics], source: str = "demo", source_fingerprint: str = "",
           demo_images: int = 400):
    """Bring the data set into the pipeline (source_fingerprint changes when the source's files do: cache key)."""
    from dermpipe.data.ingest import run
    from dermpipe.data.params import IngestParams

    params = IngestParams(source=source, source_fingerprint=source_fingerprint, demo_images=demo_images)
    run(params.source, dataset, stats, params.demo_images)
