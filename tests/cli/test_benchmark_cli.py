"""`dermpipe benchmark freeze` and `list`: a split stage's test groups become a named, versioned benchmark set."""

import json

import pandas as pd
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.data.split import split_table


def _test_split(tmp_path):
    table = pd.DataFrame([{"image": f"I{i}_{k}", "label": ["NV", "MEL"][i % 2], "lesion_id": f"L{i}",
                           "sha256": f"h{i}_{k}"} for i in range(100) for k in range(2)])
    test = split_table(table, seed=3).test
    test.to_parquet(tmp_path / "test.parquet")
    return test


def test_freeze_then_list(tmp_path):
    test = _test_split(tmp_path)
    root = str(tmp_path / "registry")
    args = ["benchmark", "freeze", "release-1", "--test-split", str(tmp_path / "test.parquet"), "--split-seed", "3",
            "--registry-root", root, "--model-name", "m"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    groups = test["lesion_id"].nunique()
    assert f"froze release-1@v1: {groups} groups, {len(test)} images" in first.output
    assert "--benchmark-set release-1@v1" in first.output
    stored = json.loads((tmp_path / "registry" / "m" / "benchmarks" / "release-1" / "v1.json").read_text())
    assert stored["split_seed"] == 3 and len(stored["groups"]) == groups
    assert CliRunner().invoke(app, args).exit_code == 0  # a second freeze is version 2
    listed = CliRunner().invoke(app, ["benchmark", "list", "release-1", "--registry-root", root, "--model-name", "m"])
    assert listed.exit_code == 0 and listed.output.count(f"{groups} groups  {len(test)} images  split_seed 3") == 2
    assert "release-1@v1" in listed.output and "release-1@v2" in listed.output


def test_freeze_needs_one_source_and_list_names_the_missing_set(tmp_path):
    result = CliRunner().invoke(app, ["benchmark", "freeze", "x", "--registry-root", str(tmp_path)])
    assert result.exit_code == 2 and "give exactly one of --run RUN_ID" in result.output
    missing = CliRunner().invoke(app, ["benchmark", "list", "x", "--registry-root", str(tmp_path)])
    assert missing.exit_code == 1 and "no frozen version of benchmark 'x'" in missing.output
