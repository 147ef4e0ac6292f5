"""The data stages' KFP components called as plain Python (`component.python_func`, as the Vertex AI end-to-end
samples test theirs): the literal signature, the parameters and the one library call, on the real ISIC 2019 sample."""

import pandas as pd
import pytest
from artifacts import make_artifact
from kfp.dsl import Dataset, Markdown, Metrics

from dermpipe.components.merge import merge
from dermpipe.components.split import split


def test_ingest_then_merge_keep_every_real_image(merged, isic_sample):
    raw, ingest_stats, table, report, stats = merged
    images = sorted(p.name for p in isic_sample.rglob("*.jpg"))
    assert ingest_stats.metadata["n_images"] == len(images) == 475
    rows = pd.read_parquet(table.path)
    assert len(rows) == table.metadata["rows"] == 475 and table.metadata["invalid_images"] == 0
    assert table.metadata["dataset_uri"] == raw.uri
    assert sum(table.metadata["class_counts"].values()) == 475
    assert "# " in open(report.path).read()


def test_split_component_partitions_the_merged_table(merged, tmp_path):
    _, _, table, _, _ = merged
    parts = {name: make_artifact(Dataset, tmp_path, name) for name in ("train", "val", "test")}
    stats, report = make_artifact(Metrics, tmp_path, "stats"), make_artifact(Markdown, tmp_path, "report")
    split.python_func(merged=table, stats=stats, report=report, test_size=0.1, val_size=0.1, seed=42, folds=5,
                      **parts)
    frames = {name: pd.read_parquet(a.path) for name, a in parts.items()}
    assert sum(len(f) for f in frames.values()) == 475
    assert set(frames["train"]["image"]).isdisjoint(frames["test"]["image"])
    assert {a.metadata["params"]["folds"] for a in parts.values()} == {5}
    assert sorted(frames["train"]["fold"].unique()) == [0, 1, 2, 3, 4]
    assert 0.05 < len(frames["test"]) / 475 < 0.15


def test_merge_component_refuses_an_unknown_policy(merged, tmp_path):
    raw = merged[0]
    expected = r"merge parameter invalid_images='ignore' is not supported; choose one of \['drop', 'fail'\]"
    with pytest.raises(ValueError, match=expected):
        merge.python_func(raw=raw, merged=make_artifact(Dataset, tmp_path, "m"),
                          report=make_artifact(Markdown, tmp_path, "r"), stats=make_artifact(Metrics, tmp_path, "s"),
                          invalid_images="ignore")
