"""split method=file on the real HAM10000 kit and its official DermaMNIST split file (train/val by image): the
file's checks, the rule for a file without a test split, and the lesion-overlap report, checked against counts
computed here from the kit's own CSVs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kfp.dsl import Dataset, Markdown, Metrics

from dermpipe.components.split import split
from dermpipe.data.merge import merge_tables, read_isic_csv
from dermpipe.data.split import split_summary, split_table
from dermpipe.data.split_file import FINDINGS_KEY, TEST_RULE, VAL_RULE, evaluation_metrics, read_split_file

HAM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ham10000"  # the real kits (tests/conftest)
SPLIT_CSV = HAM / "dermamnist_split.csv"


@pytest.fixture(scope="module")
def kit() -> pd.DataFrame:
    if not SPLIT_CSV.exists():
        pytest.fail(f"real data kit missing: {HAM}")
    truth = read_isic_csv(HAM / "ISIC_2019_Training_GroundTruth.csv")
    meta = read_isic_csv(HAM / "ISIC_2019_Training_Metadata.csv")
    files = {image: f"ISIC_2019_Training_Input/{image}.jpg" for image in truth["image"]}
    return merge_tables(truth, meta, files).table


@pytest.fixture(scope="module")
def official() -> pd.DataFrame:
    return pd.read_csv(SPLIT_CSV)


def _write(frame: pd.DataFrame, path: Path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def test_dermamnist_split_val_becomes_test_and_val_is_carved_by_lesion(kit, official):
    splits = split_table(kit, method="file", given=read_split_file(str(SPLIT_CSV)), val_size=0.1, seed=42)
    named = official.set_index("image")["split"]
    assert sorted(splits.test["image"]) == sorted(named[named == "val"].index)  # the official val: 998 images
    assert len(splits.test) == 998
    carved = pd.concat([splits.train, splits.val])
    assert sorted(carved["image"]) == sorted(named[named == "train"].index)  # 6,959: every official train image
    assert 0.08 < len(splits.val) / len(carved) < 0.12
    assert not set(splits.train["lesion_id"]) & set(splits.val["lesion_id"])  # carved by lesion
    assert splits.findings.rules[1] == TEST_RULE


def test_lesions_across_splits_match_the_kit_csvs(kit, official):
    """The lesions the official file puts in train and val, counted here from the CSVs, are the report's."""
    lesions = official.merge(kit[["image", "lesion_id"]], on="image")
    by_split = lesions.groupby("lesion_id")["split"].nunique()
    spanning = set(by_split[by_split > 1].index)
    splits = split_table(kit, method="file", given=read_split_file(str(SPLIT_CSV)), val_size=0.1, seed=42)
    found = splits.findings
    assert found.across["train-val"] == []
    reported = {k.removeprefix("lesion:") for k in found.across["train-test"] + found.across["val-test"]}
    assert reported == spanning and len(spanning) == 330
    test_seen = lesions[(lesions["split"] == "val") & lesions["lesion_id"].isin(spanning)]
    assert found.test_rows_seen == len(test_seen) == 346
    assert found.metrics()["file_groups_across_splits"] == 330
    assert (found.unknown, found.unnamed, found.duplicates) == ([], [], [])


def test_a_file_naming_all_three_splits_is_taken_as_it_is(kit, official, tmp_path):
    given = official.copy()
    given.loc[given.index[:500], "split"] = "test"
    splits = split_table(kit, method="file", given=read_split_file(_write(given, tmp_path / "s.csv")))
    for name in ("train", "val", "test"):
        assert sorted(getattr(splits, name)["image"]) == sorted(given[given["split"] == name]["image"])
    assert splits.findings.rules == splits.findings.rules[:1]  # no rule applied: the file decides


def test_a_file_without_val_gets_val_carved_from_train(kit, official, tmp_path):
    given = official.replace({"split": {"val": "test"}})
    splits = split_table(kit, method="file", given=read_split_file(_write(given, tmp_path / "s.csv")), seed=3)
    assert len(splits.test) == 998 and len(splits.train) + len(splits.val) == 6959
    assert splits.findings.rules[1] == VAL_RULE


def test_unknown_unnamed_and_duplicate_images_are_counted_and_listed(kit, official, tmp_path):
    given = official.iloc[10:].copy()  # the first 10 images are not named: left out
    extra = pd.DataFrame({"image": ["ISIC_9999991.jpg", "ISIC_9999992"], "split": ["train", "val"], "dx": "nv"})
    given = pd.concat([given, extra, official.iloc[[20, 21]]], ignore_index=True)  # 2 unknown, 2 named twice
    given["image"] = given["image"].where(given.index % 7 != 0, given["image"] + ".jpg")  # suffixes are tolerated
    splits = split_table(kit, method="file", given=read_split_file(_write(given, tmp_path / "s.csv")))
    found = splits.findings
    assert found.unnamed == sorted(official["image"][:10])
    assert found.unknown == ["ISIC_9999991", "ISIC_9999992"]
    assert found.duplicates == sorted(official["image"][[20, 21]])
    assert sum(split_summary(splits)[f"{n}_rows"] for n in ("train", "val", "test")) == 7957 - 10
    assert found.metrics()["file_unnamed_images_left_out"] == 10 and found.metrics()["file_unknown_images"] == 2


@pytest.mark.parametrize(("rows", "message"), [
    ("image,split\nISIC_0024306,train\nISIC_0024307,holdout\n",
     r"1 row\(s\) with a split other than \['train', 'val', 'test'\] \(line 3: 'holdout'\)"),
    ("image,split\nISIC_0024306,train\nISIC_0024306,val\n", r"1 image\(s\) named in two splits \(ISIC_0024306\)"),
    ("image,fold\nISIC_0024306,train\n", r"missing column\(s\) \['split'\]; found \['image', 'fold'\]"),
    ("image,split\n", "has no rows"),
])
def test_a_bad_file_is_refused_naming_the_row(tmp_path, rows, message):
    path = tmp_path / "s.csv"
    path.write_text(rows)
    with pytest.raises(ValueError, match=message):
        read_split_file(str(path))


def test_a_file_of_another_data_set_or_without_a_held_out_split_is_refused(kit, official, tmp_path):
    other = pd.DataFrame({"image": ["ISIC_0000000", "ISIC_0000001"], "split": ["train", "val"]})
    with pytest.raises(ValueError, match="none of its 2 images is in the data"):
        split_table(kit, method="file", given=read_split_file(_write(other, tmp_path / "o.csv")))
    only_train = official.assign(split="train")
    with pytest.raises(ValueError, match=r"all in \['train'\]; expected train and at least one of val, test"):
        split_table(kit, method="file", given=read_split_file(_write(only_train, tmp_path / "t.csv")))


def test_a_pinned_digest_refuses_a_changed_file(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("image,split\nISIC_0024306,train\n")
    pinned = hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_split_file(str(path), pinned).sha256 == pinned
    path.write_text("image,split\nISIC_0024306,val\n")
    with pytest.raises(ValueError, match="changed since the run was started"):
        read_split_file(str(path), pinned)


def test_a_benchmark_group_must_be_in_the_files_test_split(kit):
    given = read_split_file(str(SPLIT_CSV))
    in_val = kit[kit["image"] == next(i for i, s in given.assignment.items() if s == "val")]["lesion_id"].iloc[0]
    splits = split_table(kit, method="file", given=given, benchmark=frozenset({f"lesion:{in_val}"}))
    assert splits.test["in_benchmark"].sum() == (kit["lesion_id"] == in_val).sum() > 0
    seen = kit[kit["image"] == next(i for i, s in given.assignment.items() if s == "train")]["lesion_id"].iloc[0]
    with pytest.raises(ValueError, match=r"puts 1 group\(s\) of the frozen benchmark set in train or val"):
        split_table(kit, method="file", given=given, benchmark=frozenset({f"lesion:{seen}"}))


def test_folds_on_a_given_split_are_grouped(kit):
    splits = split_table(kit, method="file", given=read_split_file(str(SPLIT_CSV)), folds=5, seed=1)
    trainval = pd.concat([splits.train, splits.val])
    assert sorted(trainval["fold"].unique()) == [0, 1, 2, 3, 4] and set(splits.test["fold"]) == {-1}
    assert trainval.groupby("lesion_id")["fold"].nunique().max() == 1


def test_the_component_reads_the_file_and_reports_it(kit, tmp_path):
    """The split component as kfp.local calls it: the path and its digest are parameters; report and metrics."""
    merged = Dataset(name="merged", uri=str(tmp_path / "merged"), metadata={})
    kit.to_parquet(merged.path, index=False)
    parts = {n: Dataset(name=n, uri=str(tmp_path / n), metadata={}) for n in ("train", "val", "test")}
    stats = Metrics(name="stats", uri=str(tmp_path / "stats"), metadata={})
    report = Markdown(name="report", uri=str(tmp_path / "report"), metadata={})
    digest = hashlib.sha256(SPLIT_CSV.read_bytes()).hexdigest()
    split.python_func(merged=merged, stats=stats, report=report, test_size=0.1, val_size=0.1, seed=42, folds=0,
                      method="file", benchmark_uri="", file=str(SPLIT_CSV), file_sha256=digest, **parts)
    assert len(pd.read_parquet(parts["test"].path)) == 998
    assert parts["test"].metadata["params"]["file_sha256"] == digest
    logged = json.loads(Path(stats.path).read_text())
    assert logged["file_groups_across_splits"] == 330 and logged["test_rows"] == 998
    text = Path(report.path).read_text()
    assert TEST_RULE[1:] in text and "**The file splits by image, not by lesion**: 330 lesion groups" in text
    assert "346 test images have a lesion in train or val" in text
    assert "are grouped before splitting" not in text
    assert np.isclose(logged["file_unknown_images"], 0)
    # the findings travel on every split artifact; evaluate reads them off its test split for the model card
    assert all(part.metadata[FINDINGS_KEY]["file_groups_across_splits"] == 330 for part in parts.values())
    assert evaluation_metrics(parts["test"].metadata) == {
        "split_method_file": 1, "split_file_groups_across_splits": 330,
        "split_file_test_rows_with_lesion_in_train_or_val": 346}


def test_a_hash_or_stratified_split_has_no_file_findings_for_evaluate():
    assert evaluation_metrics({"params": {"method": "hash"}}) == {}
    found = {"file_groups_across_splits": 3}
    assert evaluation_metrics({"params": {"method": "stratified"}, FINDINGS_KEY: found}) == {}
    assert evaluation_metrics({}) == {}  # a split annotated before the method was recorded
