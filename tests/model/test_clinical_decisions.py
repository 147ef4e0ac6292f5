"""Clinical.decide: the stored temperature is applied before the threshold, an answer predicted MEL but routine says
why, and a point not achievable by the model decides nothing."""

import json

import numpy as np

from dermpipe import config
from dermpipe.model.evaluation.calibration import Calibration
from dermpipe.model.evaluation.operating_points import OperatingPoint
from dermpipe.model.profile.clinical import Clinical

MEL, NV = config.CLASSES.index("MEL"), config.CLASSES.index("NV")


def _probabilities(melanoma: list[float]) -> np.ndarray:
    p = np.zeros((len(melanoma), len(config.CLASSES)))
    p[:, MEL] = melanoma
    p[:, NV] = 1.0 - np.asarray(melanoma)
    return p


def test_the_threshold_applies_to_calibrated_probabilities():
    point = OperatingPoint("melanoma_sens95", 0.7, 0.95, min_specificity=0.2)
    raw = _probabilities([0.6, 0.4])
    assert [d["decision"] for d in Clinical((point,), None, {}).decide(raw, raw, None)] == ["routine", "routine"]
    sharpened = Clinical((point,), None, {}, Calibration(0.5))  # T 0.5: 0.6 -> 0.69, so a T of 0.25 -> 0.84
    assert sharpened.decide(raw, raw, None)[0]["decision"] == "routine"
    sharper = Clinical((point,), None, {}, Calibration(0.25))
    decided = sharper.decide(raw, raw, None)
    assert [d["decision"] for d in decided] == ["refer_melanoma", "routine"]
    assert decided[0]["decision_reason"] == "calibrated melanoma probability 0.835 >= melanoma_sens95's threshold 0.700"
    again = Clinical.from_dict(json.loads(json.dumps(sharper.as_dict())))
    assert again.calibration == sharper.calibration and again.decide(raw, raw, None) == decided


def test_predicted_mel_but_routine_states_why():
    point = OperatingPoint("melanoma_sens95", 0.7, 0.95, chosen_on="val", min_specificity=0.2)
    decided = Clinical((point,), None, {}).decide(_probabilities([0.55]), np.zeros((1, 2)), None)[0]
    assert decided["decision"] == "routine"
    assert decided["decision_reason"] == ("MEL is the most probable class, but its calibrated melanoma probability "
                                          "0.550 < melanoma_sens95's threshold 0.700 (chosen to refer 95% of val "
                                          "melanomas): routine")


def test_a_point_not_achievable_decides_nothing_and_says_why():
    invalid = OperatingPoint("melanoma_sens95", 0.05, 0.95, min_specificity=0.2,
                             invalid="specificity 0.030 is under the floor 0.20: it refers nearly every patient")
    decided = Clinical((invalid,), None, {}).decide(_probabilities([0.9, 0.01]), np.zeros((2, 2)), None)
    assert [d["decision"] for d in decided] == [None, None]
    assert decided[0]["decision_reason"].startswith("no decision: operating point melanoma_sens95 is not achievable "
                                                    "by this model (specificity 0.030 is under the floor")
