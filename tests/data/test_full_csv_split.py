"""The split on the full official ISIC 2019 CSVs (25,331 rows): leakage-free, stratified, seed-default ratios."""

import pandas as pd
import pytest

from dermpipe.data.merge import merge_tables, read_isic_csv
from dermpipe.data.split import split_summary, split_table


@pytest.fixture(scope="module")
def merged_full(isic_csv):
    truth = read_isic_csv(isic_csv / "ISIC_2019_Training_GroundTruth.csv")
    meta = read_isic_csv(isic_csv / "ISIC_2019_Training_Metadata.csv")
    files = {image: f"img/{image}.jpg" for image in truth["image"]}  # the CSV kit has no images
    return merge_tables(truth, meta, files)


def test_full_merge_counts(merged_full):
    table = merged_full.table
    assert len(table) == 25331
    assert table["label"].value_counts().to_dict() == {
        "NV": 12875, "MEL": 4522, "BCC": 3323, "BKL": 2624, "AK": 867, "SCC": 628, "VASC": 253, "DF": 239,
    }
    assert table["lesion_id"].notna().sum() == 23247
    assert merged_full.counts["rows_without_metadata"] == 0


def test_full_split_has_no_leakage(merged_full):
    splits = split_table(merged_full.table, test_size=0.1, val_size=0.1, seed=42)
    lesions = {n: set(getattr(splits, n)["lesion_id"].dropna()) for n in ("train", "val", "test")}
    assert not lesions["train"] & lesions["test"]
    assert not lesions["train"] & lesions["val"]
    assert not lesions["val"] & lesions["test"]
    summary = split_summary(splits)
    assert summary["test_fraction"] == pytest.approx(0.10, abs=0.01)
    assert summary["val_fraction"] == pytest.approx(0.09, abs=0.01)
    full = merged_full.table["label"].value_counts(normalize=True)
    for name in ("train", "val", "test"):
        share = getattr(splits, name)["label"].value_counts(normalize=True)
        assert (share - full).abs().max() < 0.01, name  # stratified to within one percentage point
    assert pd.concat([splits.train, splits.val, splits.test])["image"].is_unique


def test_full_folds_and_class_counts(merged_full):
    splits = split_table(merged_full.table, test_size=0.1, val_size=0.1, seed=42, folds=5)
    trainval = pd.concat([splits.train, splits.val])
    lesion_folds = trainval.dropna(subset=["lesion_id"]).groupby("lesion_id")["fold"].nunique()
    assert lesion_folds.max() == 1  # no lesion spans two folds
    full = merged_full.table["label"].value_counts(normalize=True)
    for _, fold in trainval.groupby("fold"):
        assert (fold["label"].value_counts(normalize=True) - full).abs().max() < 0.01
    summary = split_summary(splits)
    assert sum(summary[f"test_{c}"] for c in ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")) == len(splits.test)
    assert max(summary[f"{n}_max_class_share_deviation_pt"] for n in ("train", "val", "test")) < 1.0
