"""The gate compares champion and challenger on the frozen benchmark set's rows and on the whole test split, says
which set it used (and when the champion was gated on another one), and refuses, plainly, a challenger whose data
shares no image with the champion's own frozen set."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kfp.dsl import Dataset, Markdown, Metrics, Model

from dermpipe import storage
from dermpipe.deploy.gate.stage import GateParams, run
from dermpipe.deploy.registry import version_dir


def _artifact(kind, folder: Path, name: str):
    return kind(name=name, uri=str(folder / name), metadata={})


def _inputs(tmp_path: Path, n: int = 200, n_bench: int = 80):
    """Test rows whose first n_bench are the benchmark's; the challenger is right there and wrong elsewhere."""
    labels = np.arange(n) % 4
    test = pd.DataFrame({"image": [f"I{i}" for i in range(n)], "label_index": labels,
                         "group_key": [f"image:I{i}" for i in range(n)], "in_benchmark": np.arange(n) < n_bench})
    predicted = np.where(test["in_benchmark"], labels, (labels + 1) % 4)
    arts = {name: _artifact(Dataset, tmp_path, name) for name in ("raw", "test", "train", "predictions")}
    test.to_parquet(arts["test"].path)
    test.iloc[:4].to_parquet(arts["train"].path)
    pd.DataFrame({"image": test["image"], "predicted_index": predicted}).to_parquet(arts["predictions"].path)
    model = _artifact(Model, tmp_path, "model")
    Path(model.path).mkdir(parents=True)
    (Path(model.path) / "model.keras").write_bytes(b"stand-in: the champion is this very model (same digest)")
    return arts, model


def _registry_with_champion(tmp_path: Path, benchmark: str, frozen: dict | None = None) -> str:
    root = str(tmp_path / "registry")
    record = {"benchmark": benchmark, **(frozen or {})}
    storage.write_bytes(f"{version_dir(root, 'm', 1)}/dermpipe.json", json.dumps(record).encode())
    return root


def _gate(tmp_path: Path, benchmark: str, champion_benchmark: str, n_bench: int = 80, frozen: dict | None = None):
    arts, model = _inputs(tmp_path, n_bench=n_bench)
    params = GateParams(min_balanced_accuracy=0.5, model_name="m",
                        registry_root=_registry_with_champion(tmp_path, champion_benchmark, frozen),
                        champion_version=1, champion_digest=storage.sha256_file(Path(model.path) / "model.keras"),
                        benchmark=benchmark)
    decision, metrics = _artifact(Markdown, tmp_path, "decision"), _artifact(Metrics, tmp_path, "gate_metrics")
    blessed = run(arts["raw"], model, arts["test"], arts["train"], arts["predictions"], None, decision, metrics,
                  params)
    return blessed, Path(decision.path).read_text(), decision.metadata, metrics.metadata


def test_gate_compares_champion_and_challenger_on_the_benchmark_rows_and_on_the_whole_split(tmp_path):
    blessed, text, meta, metrics = _gate(tmp_path, "bench@v2", "bench@v2")
    # on the benchmark's 80 rows the challenger is always right, on all 200 it scores 0.4: the floor is judged on the
    # whole split (the challenger's own evidence), non-inferiority on both (the champion is this very model)
    assert not blessed
    assert ("- compared on the whole test split (200 images) and on the frozen benchmark set bench@v2 (80 of "
            "them)") in text
    assert "on the whole test split: champion (version 1) BMA 0.4000 on the same n=200 images" in text
    assert ("on frozen benchmark set bench@v2 (80 of the 200 test images): champion (version 1) BMA 1.0000 on the "
            "same n=80 images") in text
    assert "test BMA 0.4000 < minimum 0.5000" in text
    assert "NOTE" not in text
    assert meta["conditions"] == {"min_balanced_accuracy": False, "above_chance": True,
                                  "non_inferior_to_champion": True, "non_inferior_on_champion_set": True}
    assert meta["benchmark"] == "bench@v2" and meta["n_test"] == 200
    assert metrics["benchmark_rows"] == 80 and metrics["benchmark_version"] == 2


def test_gate_says_when_the_champion_was_gated_on_another_benchmark(tmp_path):
    _, text, _, _ = _gate(tmp_path, "bench@v2", "bench@v1")
    assert ("NOTE: champion version 1 was gated on bench@v1, this gate on bench@v2; both models are scored on the "
            "same images here") in text
    (tmp_path / "none").mkdir()
    _, text, meta, metrics = _gate(tmp_path / "none", "", "bench@v1")
    assert "compared on the whole test split (200 images; no frozen benchmark set pinned)" in text
    assert "this gate on the whole test split (no benchmark set)" in text
    assert meta["n_test"] == 200 and metrics["benchmark_version"] == 0 and not meta["blessed"]


def test_a_benchmark_absent_from_the_data_is_a_clear_error(tmp_path):
    arts, model = _inputs(tmp_path, n_bench=0)
    params = GateParams(benchmark="bench@v3")
    with pytest.raises(ValueError, match="none of the frozen benchmark set bench@v3's groups is in this data set"):
        run(arts["raw"], model, arts["test"], arts["train"], arts["predictions"], None,
            _artifact(Markdown, tmp_path, "d"), _artifact(Metrics, tmp_path, "g"), params)


def test_a_challenger_sharing_no_image_with_the_champions_own_set_is_refused_plainly(tmp_path):
    bench = tmp_path / "demo-test-v1.json"
    bench.write_text(json.dumps({"name": "demo-test", "version": 1, "groups": ["lesion:DEMO_1"],
                                 "class_counts": {"MEL": 3, "NV": 9, "BCC": 0}}))
    frozen = {"frozen_benchmark": "demo-test@v1", "frozen_benchmark_uri": str(bench)}
    blessed, text, meta, metrics = _gate(tmp_path, "demo-test@v1", "", n_bench=0, frozen=frozen)
    assert not blessed and meta["conditions"]["comparable_on_champion_set"] is False
    assert ("the challenger's data shares no image/lesion with version 1's frozen benchmark set demo-test@v1 (its "
            "classes MEL, NV; this test split's MEL, NV, BCC, AK: MEL, NV in common): the two cannot be compared on "
            "the champion's evidence; not promoted; `dermpipe models push RUN --override-gate REASON` to deploy "
            "anyway: failed") in text
    assert "NOTE" not in text  # the champion's own set: no "gated on another set" warning
    assert metrics["benchmark_rows"] == 0
    # a set no version froze (named by a person) absent from the data stays a configuration error
    (tmp_path / "named").mkdir()
    with pytest.raises(ValueError, match="none of the frozen benchmark set demo-test@v1's groups is in this data"):
        _gate(tmp_path / "named", "demo-test@v1", "", n_bench=0)


def test_the_champions_own_set_is_found_by_the_gate_and_trained_on_groups_are_left_out(tmp_path):
    bench = tmp_path / "demo-test-v1.json"  # the champion's test split was I0..I79; split was not told (own set)
    bench.write_text(json.dumps({"name": "demo-test", "version": 1, "groups": [f"image:I{i}" for i in range(80)]}))
    frozen = {"frozen_benchmark": "demo-test@v1", "frozen_benchmark_uri": str(bench)}
    _, text, meta, metrics = _gate(tmp_path, "demo-test@v1", "", n_bench=0, frozen=frozen)
    assert ("compared on the whole test split (200 images) and on version 1's frozen benchmark set demo-test@v1 (80 "
            "of them)") in text
    assert metrics["benchmark_rows"] == 80 and meta["conditions"]["non_inferior_on_champion_set"] is True
    # the train split of this fake run holds I0..I3: the challenger trained on 4 of the set's groups
    assert ("NOTE: 4 groups (4 images) of version 1's frozen benchmark set demo-test@v1 are in this run's train "
            "split") in text
