"""The gate with default parameters, both arms: a model trained on shuffled labels of the real ISIC 2019 sample is
not blessed, and `make demo` (`dermpipe run --source demo`, the same defaults) still deploys.

Each arm is a whole `dermpipe run` in its own fresh DERMPIPE_HOME, as a new user would start it. The shuffled arm
trains with `--deterministic` (the same model on every run; the gate's bootstrap is seeded), so its outcome is
reproducible rather than a draw with the gate's 5 % false-bless rate.

The permutation is seed 1. Seed 0's permutation happens to leave the labels associated with the images across the
whole sample: the gate's own image-statistics baseline, fitted on its train split, scores test BMA 0.61 on it and the
CNN 0.65 (lower bound 0.52), so a 95 % test rightly calls that better than chance. A permutation only stands for
"labels unrelated to the images" when nothing can predict it, so the test also asserts that the baseline stays at
chance on the permutation it uses.
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.config import MODEL_NAME
from dermpipe.pipelines.local import list_records

pytestmark = pytest.mark.slow
GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"


def shuffled_copy(sample: Path, out: Path, seed: int = 1) -> Path:
    """The sample with its ground-truth rows permuted (a seeded permutation): images keep their pixels, lose their
    diagnosis. Anything learnt from them is chance."""
    shutil.copytree(sample, out, ignore=shutil.ignore_patterns(GROUND_TRUTH))
    truth = pd.read_csv(sample / GROUND_TRUTH)
    labels = truth.drop(columns="image")
    permuted = labels.iloc[np.random.default_rng(seed).permutation(len(labels))].reset_index(drop=True)
    pd.concat([truth[["image"]], permuted], axis=1).to_csv(out / GROUND_TRUTH, index=False)
    return out


def _decision(home: Path) -> tuple[dict, str, dict]:
    record = list_records()[0]
    decision = record.artifact("gate", "decision")
    return record, Path(decision["uri"]).read_text(), decision["metadata"]


def test_shuffled_labels_are_not_blessed_with_default_parameters(isic_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("DERMPIPE_HOME", str(tmp_path / "home"))
    source = shuffled_copy(isic_sample, tmp_path / "shuffled")
    original = pd.read_csv(isic_sample / GROUND_TRUTH)
    assert (pd.read_csv(source / GROUND_TRUTH)["MEL"] != original["MEL"]).mean() > 0.2  # really shuffled
    result = CliRunner().invoke(app, ["run", "--source", str(source), "--deterministic"])
    assert result.exit_code == 0, result.output
    record, text, meta = _decision(tmp_path / "home")
    assert record.status == "succeeded" and "deploy" not in record.tasks
    assert meta["baseline_lower"] <= 0.5  # the premise: nothing in the image statistics predicts these labels
    assert meta["blessed"] is False and meta["conditions"]["above_chance"] is False
    assert meta["chance_level"] == 0.5 and meta["challenger_lower"] <= 0.5
    assert "**Not blessed**" in text and "lower bound is not above chance level 0.5000" in text
    assert re.search(r"^deployed +no: the model was not blessed", result.output, re.MULTILINE)
    assert not (tmp_path / "home" / "registry" / MODEL_NAME / "current.json").exists()
    print(f"\nshuffled labels: {text}")  # the decision with its intervals, for the record (pytest -s)


def test_the_demo_with_default_parameters_is_blessed_and_deployed(tmp_path, monkeypatch):
    monkeypatch.setenv("DERMPIPE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["run", "--source", "demo"])
    assert result.exit_code == 0, result.output
    record, text, meta = _decision(tmp_path / "home")
    assert meta["blessed"] is True and all(meta["conditions"].values())
    assert meta["challenger_lower"] > meta["chance_level"]
    assert record.artifact("deploy", "pushed")["metadata"]["action"] == "pushed"
    current = json.loads((tmp_path / "home" / "registry" / MODEL_NAME / "current.json").read_text())
    assert current["version"] == 1
    assert re.search(rf"^serving +{MODEL_NAME} version 1 ", result.output, re.MULTILINE)
    print(f"\ndemo: {text}")
