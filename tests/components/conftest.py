"""Fixtures of the component tests: the real ISIC 2019 sample through ingest and merge, called as plain Python."""

import pytest
from artifacts import make_artifact
from kfp.dsl import Dataset, Markdown, Metrics

from dermpipe.components.ingest import ingest
from dermpipe.components.merge import merge


@pytest.fixture(scope="session")
def merged(isic_sample, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("components")
    raw, ingest_stats = make_artifact(Dataset, tmp, "raw"), make_artifact(Metrics, tmp, "ingest-stats")
    ingest.python_func(source=str(isic_sample), source_fingerprint="", demo_images=0, dataset=raw,
                       stats=ingest_stats)
    table, report, stats = (make_artifact(Dataset, tmp, "merged"), make_artifact(Markdown, tmp, "report"),
                            make_artifact(Metrics, tmp, "merge-stats"))
    merge.python_func(raw=raw, merged=table, report=report, stats=stats, invalid_images="drop")
    return raw, ingest_stats, table, report, stats
