"""Operating points on the real ISIC 2019 sample (475 UDA-1 images, 114 MEL): a weak real model (logistic regression
on colour statistics of the images, AUC about 0.5-0.6 here) gets no valid point, on real or shuffled labels, so none
can be reported as passed; and the temperature fitted on validation undoes an over-confidence on test."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermpipe import config
from dermpipe.deploy.gate.decision import decide
from dermpipe.deploy.gate.stage import GateParams
from dermpipe.model.evaluation.calibration import fit_calibration
from dermpipe.model.evaluation.clinical_section import measure_points, verdict
from dermpipe.model.evaluation.operating_points import choose_operating_points, targets_for

MEL, NV = config.CLASSES.index("MEL"), config.CLASSES.index("NV")


def _colour_statistics(folder: Path, names: pd.Series) -> np.ndarray:
    """Per image: mean, spread and quantiles of RGB over the centre and the whole image (64 x 64)."""
    rows = []
    for name in names:
        pixels = np.asarray(Image.open(folder / f"{name}.jpg").convert("RGB").resize((64, 64)), np.float64) / 255
        centre, whole = pixels[16:48, 16:48].reshape(-1, 3), pixels.reshape(-1, 3)
        rows.append(np.concatenate([centre.mean(0), centre.std(0), whole.mean(0), whole.std(0),
                                    np.quantile(centre, [0.1, 0.5, 0.9], axis=0).ravel()]))
    return np.array(rows)


@pytest.fixture(scope="module")
def sample(isic_sample):
    truth = pd.read_csv(isic_sample / "ISIC_2019_Training_GroundTruth.csv")
    features = _colour_statistics(isic_sample / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input",
                                  truth["image"])
    return features, truth["MEL"].to_numpy() == 1.0


def _split_probabilities(features: np.ndarray, melanoma: np.ndarray, sharpen: float = 1.0):
    """(val labels, val probabilities, test labels, test probabilities) of a logistic regression fitted on half the
    images, stratified; probabilities raised to `sharpen` and renormalised (over-confident for sharpen > 1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    index = np.arange(len(melanoma))
    train, rest = train_test_split(index, test_size=0.5, stratify=melanoma, random_state=0)
    val, test = train_test_split(rest, test_size=0.5, stratify=melanoma[rest], random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features[train], melanoma[train])
    out = []
    for rows in (val, test):
        p = np.zeros((len(rows), len(config.CLASSES)))
        p[:, MEL] = model.predict_proba(features[rows])[:, 1] ** sharpen
        p[:, NV] = (1.0 - model.predict_proba(features[rows])[:, 1]) ** sharpen
        out += [np.where(melanoma[rows], MEL, NV), p / p.sum(axis=1, keepdims=True)]
    return out


@pytest.mark.parametrize("shuffled", [False, True])
def test_a_weak_real_model_has_no_valid_point_and_none_passes_on_test(sample, shuffled):
    features, melanoma = sample
    if shuffled:
        melanoma = np.random.default_rng(1).permutation(melanoma)
    y_val, p_val, y_test, p_test = _split_probabilities(features, melanoma)
    calibration = fit_calibration(y_val, p_val)
    points = choose_operating_points(y_val, calibration.apply(p_val), targets_for(0.95), y_test,
                                     calibration.apply(p_test), min_specificity=0.2)
    assert [p.name for p in points] == ["melanoma_sens95", "melanoma_sens90", "melanoma_sens99"]
    for point in points:
        assert not point.valid and point.chosen["specificity"] < 0.12  # the floor is 0.2: a clear margin
        assert "under the floor 0.20" in point.invalid
    # the report re-measures on test (calibrated as served) and the gate judges the default point: neither passes it
    clinical = {"operating_points": [p.as_dict() for p in points], "calibration": calibration.as_dict()}
    measured = measure_points(clinical, y_test, p_test)
    assert [m["test"]["specificity"] for m in measured] == [p.test["specificity"] for p in points]
    assert all(verdict(m).startswith("not achievable by this model") for m in measured)
    gate = decide(y_test, p_test.argmax(axis=1), GateParams(), operating_point=points[0])
    assert gate.conditions["melanoma_operating_point"] is False and not gate.blessed


def test_temperature_fitted_on_real_validation_predictions_lowers_test_ece(sample):
    features, melanoma = sample
    y_val, p_val, y_test, p_test = _split_probabilities(features, melanoma, sharpen=5.0)
    found = fit_calibration(y_val, p_val, "val", (y_test, p_test))
    assert 2.0 < found.temperature < 6.0  # the over-confidence was a power of 5
    assert found.ece["test_melanoma_after"] < 0.7 * found.ece["test_melanoma_before"]
    assert found.ece["test_melanoma_before"] > 0.15
