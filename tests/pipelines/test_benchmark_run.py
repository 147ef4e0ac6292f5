"""A frozen benchmark set end to end: freeze a run's test split, then a later run gates on exactly those images,
says so, and records the set with the version it deploys.

Its own DERMPIPE_HOME and registry, so the shared runs' registry, cache and lineage store are untouched."""

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.config import MODEL_NAME
from dermpipe.deploy import registry
from dermpipe.pipelines.local import run_local


def test_a_later_run_gates_on_the_frozen_benchmark_and_records_it(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("DERMPIPE_HOME", str(tmp_path / "home"))
    root = str(tmp_path / "registry")
    params = {**tiny, "min_balanced_accuracy": 0.0, "registry_root": root}
    first = run_local(params)
    assert first.status == "succeeded", first.error
    assert registry.current_version(root, MODEL_NAME) == 1
    assert registry.read_record(root, MODEL_NAME, 1)["benchmark"] == ""
    first_test = pd.read_parquet(first.artifact("split", "test")["uri"])
    frozen = CliRunner().invoke(app, ["benchmark", "freeze", "bench", "--run", first.run_id, "--registry-root", root])
    assert frozen.exit_code == 0, frozen.output
    uri = str(Path(root) / MODEL_NAME / "benchmarks" / "bench" / "v1.json")
    bench = json.loads(Path(uri).read_text())
    assert bench["split_seed"] == 42 and bench["rows"] == len(first_test)
    assert bench["dataset_fingerprint"] == first.artifact("ingest", "dataset")["metadata"]["manifest_sha256"]

    # a new model (another train seed) gated on the set; any drop allowed, so that it deploys and records the set
    second = run_local({**params, "benchmark_set": "bench", "train_seed": 7, "max_bma_drop": 1.0})
    assert second.status == "succeeded", second.error
    assert second.tasks["resolve-champion"].outputs["benchmark"] == "bench@v1"
    assert second.tasks["resolve-champion"].outputs["benchmark_uri"] == uri
    assert not second.tasks["split"].cached  # a pinned benchmark is a parameter: a new one re-runs split
    test = pd.read_parquet(second.artifact("split", "test")["uri"])
    assert set(test.loc[test["in_benchmark"], "image"]) == set(first_test["image"])  # every benchmark image
    decision = second.artifact("gate", "decision")
    text = Path(decision["uri"]).read_text()
    n = len(first_test)
    assert (f"compared on the whole test split ({len(test)} images) and on the frozen benchmark set bench@v1 ({n} of "
            f"them)") in text
    assert "champion (version 1) BMA" in text and f"on the same n={n} images" in text
    assert ("NOTE: champion version 1 was gated on the whole test split (no benchmark set), this gate on "
            "bench@v1") in text
    assert decision["metadata"]["benchmark"] == "bench@v1"
    assert second.artifact("gate", "gate_metrics")["metadata"]["benchmark_rows"] == n
    assert second.artifact("deploy", "pushed")["metadata"]["action"] == "pushed"
    assert registry.read_record(root, MODEL_NAME, 2)["benchmark"] == "bench@v1"
