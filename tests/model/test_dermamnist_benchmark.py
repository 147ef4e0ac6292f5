"""benchmarks/ham10000.py's metric and table code on constructed predictions: MedMNIST's ACC/AUC definitions
(checked against scikit-learn's own multi-class AUC), the AK+SCC -> akiec merge, ISIC 2019 BMA, the majority floor,
mean ± sd, and run parameters that pass the pipeline's pre-flight."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dermpipe import config
from dermpipe.pipelines.preflight import problems

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ham10000.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ham10000_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _predictions(labels: list[str], probabilities: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"label": labels})
    for i, cls in enumerate(config.CLASSES):
        frame[f"p_{cls}"] = probabilities[:, i]
    return frame


def test_auc_is_medmnists_mean_of_one_vs_rest_and_agrees_with_sklearn(bench):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(7), 20)
    scores = rng.dirichlet(np.ones(7), size=len(y)) + np.eye(7)[y] * rng.uniform(0, 0.5, size=(len(y), 1))
    scores /= scores.sum(axis=1, keepdims=True)
    acc, auc = bench.medmnist_acc_auc(y, scores)
    assert auc == pytest.approx(roc_auc_score(y, scores, multi_class="ovr", average="macro"))
    assert acc == pytest.approx((scores.argmax(axis=1) == y).mean())
    with pytest.raises(ValueError, match=r"no test image of \['vasc'\]"):
        bench.medmnist_acc_auc(y[y != 6], scores[y != 6])


def test_ak_and_scc_merge_into_akiec_but_count_apart_in_bma(bench):
    """An SCC image called AK is right for DermaMNIST (both akiec) and wrong for ISIC 2019's BMA."""
    labels = list(config.CLASSES) + ["SCC"]
    probabilities = np.eye(8)[[*range(8), config.CLASSES.index("AK")]] * 0.9 + 0.1 / 8
    found = bench.figures(_predictions(labels, probabilities), config.CLASSES)
    assert found["acc"] == 1.0 and found["auc"] == 1.0
    assert found["recall_SCC"] == 0.5 and found["recall_AK"] == 1.0
    assert found["bma"] == pytest.approx((7 + 0.5) / 8)
    scores = bench.dermamnist_scores(probabilities, config.CLASSES)
    assert np.allclose(scores.sum(axis=1), 1.0)
    assert scores[-1, bench.DERMAMNIST_CLASSES.index("akiec")] == pytest.approx(0.9 + 2 * 0.1 / 8)
    with pytest.raises(ValueError, match=r"labels \['UNK'\] have no DermaMNIST class"):
        bench.dermamnist_labels(["NV", "UNK"])


def test_the_majority_floor_is_the_nv_share_with_chance_auc(bench):
    labels = ["NV"] * 12 + [c for c in config.CLASSES if c != "NV"]
    found = bench.majority_figures(_predictions(labels, np.full((len(labels), 8), 1 / 8)), config.CLASSES)
    assert found["acc"] == pytest.approx(12 / 19) and found["auc"] == 0.5
    assert found["bma"] == pytest.approx(1 / 8) and found["recall_NV"] == 1.0 and found["recall_MEL"] == 0.0


def test_table_rows_are_mean_and_sample_sd_beside_the_published_ones(bench):
    assert bench.mean_sd([0.7, 0.8, 0.9]) == pytest.approx((0.8, 0.1))
    assert np.isnan(bench.mean_sd([0.7])[1])
    runs = [{"acc": a, "auc": 0.9, "bma": 0.6, "wall_s": w, "recall_MEL": 0.5} for a, w in ((0.7, 100), (0.9, 140))]
    table = bench.result_table({"dermpipe laptop, X": runs}, config.CLASSES)
    assert "dermpipe laptop, X | 2 | 0.800 ± 0.141 | 0.900 ± 0.000 | 0.600 ± 0.000 | 120 ± 28 | 0.50 ± 0.00" in table
    assert "MedMNIST+ VGG16 (ImageNet), 64 px, DermaMNIST test | 3 | 0.795 | 0.944" in table
    assert bench.ratios({"a": runs}, "a")[1].startswith("a / MedMNIST+ VGG16 (ImageNet) 64 px: ACC 0.800 / 0.795")


def test_run_parameters_pass_the_pipelines_preflight(bench, tmp_path):
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "dermamnist_split.csv").write_text("image,split,dx\nISIC_0024306,train,nv\n")
    given = bench.run_params("dermamnist", 43, kit, tmp_path, epochs=2)
    assert (given["split_method"], given["split_file"], given["split_seed"], given["train_seed"]) == (
        "file", str(kit / "dermamnist_split.csv"), 43, 43)
    assert given["epochs"] == 2 and given["backbone"] == "simple_cnn"  # the laptop profile under the arm's values
    assert given["registry_root"] == str(tmp_path / "registry-dermamnist-43")
    assert problems(given) == []
    assert "split_file" not in bench.run_params("lesion-grouped", 42, kit, tmp_path, epochs=None)
    resnet = bench.run_params("dermamnist", 42, kit, tmp_path, epochs=None, profile="laptop_resnet")
    assert (resnet["backbone"], resnet["class_balance"], resnet["epochs"]) == ("small_resnet", "sqrt_weights", 20)
    assert problems(resnet) == []
