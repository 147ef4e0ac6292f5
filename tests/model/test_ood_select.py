"""AUROC / FPR@95TPR on a table worked by hand, the selection rule, and the detector it serves."""

import numpy as np
import pytest

from dermpipe.model.profile.ood_select import (
    OODEvidence,
    Outputs,
    auroc_fpr,
    detector_for,
    select,
)
from dermpipe.model.profile.reference import fit_embedding_pca


def test_auroc_and_fpr_at_95_tpr_on_a_known_table():
    """In-distribution scores 0..19 (positives), OOD 5.5, 18.5, 25, 30. Passing 95 % of in-distribution passes
    scores <= 18, which lets 5.5 through: FPR 1/4. AUROC = P(OOD scores higher) = (6 + 19 + 20 + 20) / 80."""
    figures = auroc_fpr(np.arange(20.0), np.array([5.5, 18.5, 25.0, 30.0]))
    assert figures == pytest.approx({"auroc": 65 / 80, "fpr_at_95_tpr": 0.25})
    assert auroc_fpr(np.arange(20.0), np.array([20.5, 21.0])) == pytest.approx({"auroc": 1.0, "fpr_at_95_tpr": 0.0})
    assert auroc_fpr(np.arange(20.0), np.array([-1.0]))["fpr_at_95_tpr"] == 1.0
    with pytest.raises(ValueError, match="0 OOD scores"):
        auroc_fpr(np.arange(3.0), np.array([]))


def _figures(far_fpr: float, near_fpr: float, near_auroc: float = 0.9) -> dict:
    return {"far": {"auroc": 0.99, "fpr_at_95_tpr": far_fpr}, "near": {"auroc": near_auroc, "fpr_at_95_tpr": near_fpr}}


def test_the_best_near_score_is_served_among_those_that_still_flag_far_images():
    figures = {"a": _figures(far_fpr=0.5, near_fpr=0.05),  # best on near, but lets half the far set through
               "b": _figures(far_fpr=0.05, near_fpr=0.20), "c": _figures(far_fpr=0.0, near_fpr=0.40)}
    served, why = select(figures, "near", "far")
    assert served == "b" and "lowest near-OOD FPR@95TPR (0.200" in why and "guard >= 90%" in why
    figures["d"] = _figures(far_fpr=0.1, near_fpr=0.20, near_auroc=0.95)  # ties b on FPR, higher AUROC
    assert select(figures, "near", "far")[0] == "d"
    unguarded = {"a": _figures(0.5, 0.3), "b": _figures(0.6, 0.1)}
    served, why = select(unguarded, "near", "far")
    assert served == "b" and "could not apply" in why


def _gaussian(n: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(4, 16))
    return rng.normal(size=(n, 4)) @ basis + 0.1 * rng.normal(size=(n, 16)) + shift


def _outputs(embeddings: np.ndarray) -> Outputs:
    probabilities = np.full((len(embeddings), 2), 0.5)
    return Outputs(probabilities, embeddings)


def test_the_chosen_detector_is_calibrated_on_val_and_reported_per_candidate():
    pca = fit_embedding_pca(_gaussian(400), 4)
    labels = np.zeros(400, int)
    evidence = OODEvidence(far=_outputs(_gaussian(60, shift=6.0, seed=2)),
                           near={"new_device": _outputs(_gaussian(60, shift=1.0, seed=3)),
                                 "reported_only": _outputs(_gaussian(30, shift=2.0, seed=4))}, near_name="new_device")
    detector, report = detector_for(pca, _outputs(_gaussian(400)), labels, _outputs(_gaussian(200, seed=1)),
                                    evidence, 0.95)
    assert set(report["candidates"]) == {"msp", "mahalanobis", "knn", "pca_residual"}  # no head: no energy
    assert report["served_score"] == detector.method and report["chosen_on"] == "new_device"
    served = report["candidates"][detector.method]
    assert served["far"]["fpr_at_95_tpr"] <= 0.1 and served["new_device"]["auroc"] > 0.9
    assert served["reported_only"]["n"] == 30 and "'new_device' set" in report["chosen_by"]
    assert report["candidates"]["msp"]["new_device"]["auroc"] == pytest.approx(0.5)  # constant probabilities
    val_flagged = detector.flags(detector.score(pca, _gaussian(200, seed=1)))
    assert val_flagged.mean() == pytest.approx(0.05, abs=0.011)


def test_without_ood_sets_the_default_is_served_and_says_it_was_not_measured():
    pca = fit_embedding_pca(_gaussian(100), 4)
    detector, report = detector_for(pca, _outputs(_gaussian(100)), np.zeros(100, int),
                                    _outputs(_gaussian(50, seed=1)), None, 0.95)
    assert detector.method == "pca_residual" and report["candidates"] == {} and "no score was measured" in \
        report["chosen_by"]


def test_a_served_msp_decides_without_the_profile_pca():
    from dermpipe.model.evaluation.operating_points import OperatingPoint
    from dermpipe.model.profile.clinical import Clinical
    from dermpipe.model.profile.ood import OODDetector
    from dermpipe.model.profile.ood_scores import Scorer

    point = OperatingPoint.from_dict({"name": "melanoma_sens95", "positive_class": "MEL", "target_sensitivity": 0.95,
                                      "threshold": 0.5, "chosen_on": "val", "chosen": {}, "test": {}})
    clinical = Clinical((point,), OODDetector(Scorer("msp"), threshold=-0.6), {})
    probabilities = np.array([[0.9] + [0.1 / 7] * 7, [0.3, 0.25] + [0.45 / 6] * 6])
    decided = clinical.decide(probabilities, np.zeros((2, 4)), None)
    assert [d["decision"] for d in decided] == ["refer_melanoma", "out_of_distribution"]
    assert decided[1]["ood_score"] == pytest.approx(-0.3) and decided[0]["ood_threshold"] == -0.6


def test_the_evaluation_report_lists_every_candidate_per_set():
    from dermpipe.model.evaluation.clinical_section import ood_candidates_table

    figures = {s: {"auroc": 0.9, "fpr_at_95_tpr": 0.25, "detection_rate": 0.7, "n": 10} for s in ("far", "new_device")}
    html = ood_candidates_table({"msp": figures, "mahalanobis": {**figures, "far": {**figures["far"], "auroc": 1.0}}})
    assert html.count("<tr") == 3 and "new_device" in html and "1.000 / 0.250 / 0.700" in html and "msp" in html
    assert ood_candidates_table({}) == ""


def test_the_report_says_plainly_when_the_threshold_does_not_hold_on_test():
    from dermpipe.model.profile.ood_select import transfer_check

    holds = transfer_check(3, 60, 0.95)
    assert holds["threshold_holds_on_test"] is True and "NOT" not in holds["transfer_note"]
    assert holds["test_false_refer_lower"] < 0.05 < holds["test_false_refer_upper"]
    fails = transfer_check(10, 45, 0.95)  # 22 %: the demo run's kNN threshold, calibrated on 38 val images
    assert fails["threshold_holds_on_test"] is False and fails["test_false_refer_lower"] > 0.05
    assert "does NOT hold" in fails["transfer_note"] and "10/45" in fails["transfer_note"]
    assert transfer_check(0, 0, 0.95)["threshold_holds_on_test"] is None
