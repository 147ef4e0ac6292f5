"""Frozen benchmark sets: versioned JSON files in the registry, resolved by name, name@vN or URI, and honoured by
the split whatever its seed or method."""

import json

import pandas as pd
import pytest

from dermpipe.data.benchmark import (
    benchmark_file,
    freeze,
    freeze_or_reuse,
    load,
    pin,
    resolve,
    set_name,
    versions,
)
from dermpipe.data.split import split_table


def _table(n_lesions: int = 200, prefix: str = "L") -> pd.DataFrame:
    labels = ["NV", "MEL", "BCC", "BKL"]
    return pd.DataFrame([{"image": f"{prefix}{i}_{k}", "label": labels[i % 4], "lesion_id": f"{prefix}{i}",
                          "sha256": f"h{prefix}{i}_{k}"} for i in range(n_lesions) for k in range(2)])


def test_freeze_writes_numbered_immutable_versions(tmp_path):
    root = str(tmp_path / "registry")
    test = split_table(_table(), seed=42).test
    uri, first = freeze(test, "isic-bench", root, "m", split_seed=42, dataset_fingerprint="abc")
    assert uri == str(tmp_path / "registry" / "m" / "benchmarks" / "isic-bench" / "v1.json")
    data = json.loads(open(uri).read())
    assert data["name"] == "isic-bench" and data["version"] == 1 and data["split_seed"] == 42
    assert data["dataset_fingerprint"] == "abc" and data["created_at"]
    assert data["groups"] == sorted("lesion:" + test["lesion_id"].unique())
    assert data["rows"] == len(test) and data["class_counts"]["NV"] == int((test["label"] == "NV").sum())
    assert data["class_counts"]["DF"] == 0
    uri2, second = freeze(test.iloc[:10], "isic-bench", root, "m", split_seed=42)
    assert second.ref == "isic-bench@v2" and versions(root, "m", "isic-bench") == [1, 2]
    assert load(uri) == first  # version 1 untouched


def test_resolve_by_name_version_or_uri(tmp_path):
    root = str(tmp_path / "registry")
    test = split_table(_table(), seed=42).test
    freeze(test, "b", root, "m", split_seed=42)
    freeze(test, "b", root, "m", split_seed=42)
    assert resolve("", root, "m") == ""
    assert resolve("b", root, "m") == benchmark_file(root, "m", "b", 2)
    assert resolve("b@v1", root, "m") == benchmark_file(root, "m", "b", 1)
    assert resolve("/any/where/x.json", "", "m") == "/any/where/x.json"
    assert pin("b@v1", root, "m") == (benchmark_file(root, "m", "b", 1), "b@v1")
    assert pin("", root, "m") == ("", "")
    with pytest.raises(FileNotFoundError, match="benchmark 'nope' has no frozen version under .*benchmark freeze"):
        resolve("nope", root, "m")
    with pytest.raises(ValueError, match="registry_root is empty"):
        resolve("b", "", "m")
    with pytest.raises(ValueError, match="expected NAME, NAME@vN or the URI"):
        resolve("b@1", root, "m")
    with pytest.raises(FileNotFoundError, match="v9.json does not exist"):
        pin("b@v9", root, "m")
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with pytest.raises(ValueError, match="bad.json is not a dermpipe benchmark JSON"):
        load(str(tmp_path / "bad.json"))


def test_benchmark_groups_stay_in_test_when_data_grows_and_the_seed_changes(tmp_path):
    """Cut with seed 42; a later release splits more data with seed 7: every benchmark group is in its test split,
    the rest is hashed as usual, and the split counts what it found."""
    from dermpipe.data.split import benchmark_summary, render_report

    root = str(tmp_path / "registry")
    _, bench = freeze(split_table(_table(), seed=42).test, "b", root, "m", split_seed=42)
    grown = pd.concat([_table(), _table(60, prefix="N")]).sample(frac=1, random_state=0)
    grown = grown[grown["lesion_id"] != bench.groups[0].removeprefix("lesion:")]  # one benchmark lesion is gone
    for method in ("hash", "stratified"):
        splits = split_table(grown, seed=7, method=method, benchmark=frozenset(bench.groups))
        marked = set(splits.test.loc[splits.test["in_benchmark"], "group_key"])
        assert marked == set(bench.groups[1:])
        assert not set(bench.groups) & set(pd.concat([splits.train, splits.val])["group_key"])
        summary = benchmark_summary(splits, bench)
        assert summary == {"benchmark": "b@v1", "benchmark_rows": 2 * (len(bench.groups) - 1),
                           "benchmark_groups": len(bench.groups), "benchmark_groups_absent": 1}
    report = render_report(splits, {"method": method}, summary)
    assert (f"Frozen benchmark set **b@v1**: {summary['benchmark_rows']} rows of {len(bench.groups) - 1} of its "
            f"{len(bench.groups)} groups are in this data, all in test") in report


def test_a_deployments_set_is_named_after_its_source_and_reused_while_its_groups_stay():
    assert set_name("demo") == "demo-test"
    assert set_name("../shared/data/isic2019-sample/") == "isic2019-sample-test"
    assert set_name("gs://bucket/clinic/ham") == "ham-test"
    assert set_name("kaggle:andrewmvd/isic-2019") == "kaggle-andrewmvd-isic-2019-test"


def test_freeze_or_reuse_keeps_the_set_of_an_unchanged_test_split(tmp_path):
    root = str(tmp_path / "registry")
    test = split_table(_table(), seed=42).test
    uri, first, new = freeze_or_reuse(test, "demo-test", root, "m", split_seed=42)
    assert new and first.ref == "demo-test@v1"
    again = freeze_or_reuse(test.sample(frac=1.0, random_state=1), "demo-test", root, "m", split_seed=42)
    assert again == (uri, first, False)  # same groups in another order: the same set, no new version
    grown = split_table(pd.concat([_table(), _table(40, "N")]), seed=42).test
    _, second, new = freeze_or_reuse(grown, "demo-test", root, "m", split_seed=42)
    assert new and second.ref == "demo-test@v2" and set(first.groups) < set(second.groups)
