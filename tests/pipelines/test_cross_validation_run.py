"""folds=3 with a two-configuration sweep through kfp.local: six train-fold tasks in a ParallelFor, cross-validate
with its leaderboard, and the ensemble of both configurations evaluated, explained, gated, deployed and served like a
single model."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermpipe.pipelines.local import run_local

SWEEP = "[{name: plain}, {name: focal, loss: focal, learning_rate: 0.003}]"


@pytest.fixture(scope="module")
def cv_run(tiny, tmp_path_factory):
    home = tmp_path_factory.mktemp("cv-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DERMPIPE_HOME", str(home))
        record = run_local({**tiny, "folds": 3, "min_balanced_accuracy": 0.0, "ensemble_weighting": "fold_bma",
                            "sweep": SWEEP, "ensemble_top": 2}, verbose=False)
    return record, home


def test_folds_run_in_a_parallel_for_and_the_ensemble_is_deployed(cv_run):
    record, home = cv_run
    assert record.status == "succeeded", record.error
    names = set(record.tasks)
    assert {"fold-plan", "cross-validate", "evaluate", "explain", "profile", "gate", "deploy"} <= names
    assert "train" not in names and "prepare" not in names  # the fold tasks replace them
    folds = {n: t for n, t in record.tasks.items() if n.startswith("train-fold")}
    assert sorted(folds) == [f"train-fold-{i}" for i in range(6)]  # 2 configurations x 3 folds, one entry each
    assert all(t.status == "success" and Path(t.log).exists() for t in folds.values())
    cv = record.artifact("cross-validate", "metrics")["metadata"]
    train = pd.read_parquet(record.artifact("split", "train")["uri"])
    val = pd.read_parquet(record.artifact("split", "val")["uri"])
    assert cv["folds"] == 3 and cv["oof_rows"] == len(train) + len(val)
    assert cv["cv_balanced_accuracy_mean"] == pytest.approx(
        np.mean([cv[f"fold_{f}_balanced_accuracy"] for f in range(3)]))
    ensemble = Path(record.artifact("cross-validate", "ensemble")["uri"])
    oof = pd.read_parquet(ensemble / "oof_predictions.parquet")
    assert sorted(oof["image"]) == sorted([*train["image"], *val["image"]])
    annotations = record.artifact("cross-validate", "ensemble")["metadata"]
    assert len(annotations["members"]) == 6 and sorted(annotations["configurations"]) == ["focal", "plain"]
    board = Path(record.artifact("cross-validate", "leaderboard")["uri"]).read_text()
    assert "Ranked by oof_balanced_accuracy" in board and "| plain |" in board and "| focal |" in board
    assert cv["configurations"] == 2 and cv["best_oof_balanced_accuracy"] == cv["oof_balanced_accuracy"]
    test = pd.read_parquet(record.artifact("split", "test")["uri"])
    assert record.artifact("evaluate", "metrics")["metadata"]["test_rows"] == len(test)
    # the ensemble trained on val: its melanoma thresholds come from the best configuration's out-of-fold predictions
    clinical = json.loads((Path(record.artifact("profile", "profile")["uri"]) / "clinical.json").read_text())
    point = clinical["operating_points"][0]
    assert point["chosen_on"] == "out-of-fold" and point["chosen"]["n"] == len(train) + len(val)
    assert "melanoma_oof_sensitivity" in record.artifact("profile", "stats")["metadata"]
    registry = Path(record.artifact("deploy", "pushed")["metadata"]["registry_uri"])
    assert json.loads((registry.parent / "current.json").read_text())["version"] == 1
    assert "test split was not used here" in Path(record.artifact("cross-validate", "report")["uri"]).read_text()


def test_the_deployed_ensemble_serves_like_a_single_model(cv_run):
    import tensorflow as tf

    from dermpipe.model.export import probe_jpeg

    record, _ = cv_run
    registry = Path(record.artifact("deploy", "pushed")["metadata"]["registry_uri"])
    answer = tf.saved_model.load(str(registry)).signatures["serving_default"](
        image_bytes=tf.constant([probe_jpeg(), probe_jpeg(80)]))
    assert answer["probabilities"].shape == (2, 8)
    np.testing.assert_allclose(answer["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-4)
    assert answer["embedding"].shape == (2, 6 * 128)  # the six members' "pool" embeddings, concatenated


def test_a_sweep_without_folds_is_ranked_by_validation_bma(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("DERMPIPE_HOME", str(tmp_path))
    record = run_local({**tiny, "demo_images": 160, "epochs": 3, "sweep": SWEEP, "min_balanced_accuracy": 0.0},
                       verbose=False)
    assert record.status == "succeeded", record.error
    assert sorted(n for n in record.tasks if n.startswith("train-fold")) == ["train-fold-0", "train-fold-1"]
    val = pd.read_parquet(record.artifact("split", "val")["uri"])
    metrics = record.artifact("cross-validate", "metrics")["metadata"]
    assert metrics["val_rows"] == len(val) and metrics["best_val_balanced_accuracy"] == metrics["val_balanced_accuracy"]
    board = Path(record.artifact("cross-validate", "leaderboard")["uri"]).read_text()
    assert "Ranked by val_balanced_accuracy" in board
    report = Path(record.artifact("cross-validate", "report")["uri"]).read_text()
    assert "No folds" in report and "test split was not used here" in report
    ensemble = record.artifact("cross-validate", "ensemble")["metadata"]
    assert len(ensemble["members"]) == 1 and ensemble["configurations"] == [board.split("| 1 | ")[1].split(" |")[0]]
    assert record.tasks["evaluate"].status == record.tasks["gate"].status == "success"  # the ensemble, gated


def test_a_failing_and_a_succeeding_iteration_side_by_side_are_recorded_apart(tiny, tmp_path, monkeypatch, capfd):
    """kfp.local runs iterations in threads: each gets its own record entry and log, the failure names its cause."""
    monkeypatch.setenv("DERMPIPE_HOME", str(tmp_path))
    sweep = "[{name: ok}, {name: broken, backbone: mobilenet_v3_small, weights: /no/such/weights.h5}]"
    record = run_local({**tiny, "demo_images": 160, "folds": 2, "epochs": 1, "sweep": sweep}, verbose=False)
    assert record.status == "failed" and "cross-validate" not in record.tasks
    folds = {name: task for name, task in record.tasks.items() if name.startswith("train-fold")}
    assert {"train-fold-0", "train-fold-1"} <= set(folds) and "train-fold" not in folds
    assert folds["train-fold-0"].status == folds["train-fold-1"].status == "success"
    broken = [task for name, task in folds.items() if name in ("train-fold-2", "train-fold-3")]
    assert broken and all(t.status == "failure" and "/no/such/weights.h5" in t.error for t in broken)
    assert "/no/such/weights.h5" in record.error
    cause = "weights file '/no/such/weights.h5' not found"  # the sweep string itself is every iteration's input
    for name, task in folds.items():
        log = Path(task.log).read_text()
        assert task.log.endswith(f"{name}.log") and (cause in log) == (name in ("train-fold-2", "train-fold-3"))
    assert "could not write lineage" not in capfd.readouterr().err
