"""Performance monitoring: labels joined to the prediction log, estimates with intervals and n, label delay, the
unlabelled share, and the drop rule against a version's own test figures (by interval, with a minimum sample)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score
from synthetic_traffic import labelled_traffic, write_prediction_log, write_version_figures

from dermpipe import config
from dermpipe.monitoring.performance import estimates as perf
from dermpipe.monitoring.performance.analysis import analyse, metric_values
from dermpipe.monitoring.performance.drop import judge
from dermpipe.monitoring.performance.stage import PerformanceParams
from dermpipe.serving.labels import Label, append_labels

PARAMS = PerformanceParams(n_bootstrap=500)


def _predictions() -> pd.DataFrame:
    return pd.DataFrame({"request_id": ["a", "b", "c", "d"], "model_version": [1, 1, 1, 1],
                         "timestamp": pd.to_datetime(["2026-11-20T10:00Z", "2026-11-20T11:00Z", "2026-11-21T09:00Z",
                                                      "2026-11-22T09:00Z"], utc=True),
                         "predicted_class": ["MEL", "NV", "NV", "BCC"]})


def _labels() -> pd.DataFrame:
    return pd.DataFrame({"request_id": ["a", "b", "b", "zz"], "diagnosis": ["MEL", "MEL", "NV", "NV"],
                         "source": "biopsy", "date": ["2026-11-27", "2026-11-30", "2026-11-30", "2026-11-30"],
                         "received_at": ["2026-11-28T10:00:00Z", "2026-12-01T00:00:00Z", "2026-12-02T11:00:00Z",
                                         "2026-12-01T00:00:00Z"], "submission_id": "s"})


def test_labels_join_by_request_id_and_nothing_is_dropped_silently():
    joined, counts = perf.join_labels(_predictions(), _labels())
    assert joined["diagnosis"].tolist()[:2] == ["MEL", "NV"]  # b: the latest received label wins
    assert joined["diagnosis"].isna().tolist() == [False, False, True, True]
    assert counts["repeated_labels"] == 1 and counts["labels_outside_window"] == 1
    assert counts["labels_outside_window_ids"] == ["zz"]
    assert perf.coverage(joined) == {"predictions": 4, "labelled": 2, "unlabelled": 2, "unlabelled_share": 0.5}


def test_label_delay_counts_days_to_the_result_and_to_the_feedback():
    joined, _ = perf.join_labels(_predictions(), _labels())
    delays = perf.label_delays(joined)
    assert delays["labelled"] == 2 and delays["dated_before_prediction"] == 0
    assert delays["result_days_median"] == 8.5 and delays["result_days_max"] == 10  # 7 and 10 days
    assert delays["received_days_max"] == pytest.approx(12.0)  # b: 2026-11-20T11 -> 2026-12-02T11


def test_estimates_match_scikit_learn_and_the_operating_point_counts():
    records, labels = labelled_traffic(300, seed=4, sensitivity=0.8)
    joined, _ = perf.join_labels(pd.DataFrame(records), pd.DataFrame(labels).assign(received_at="2026-12-01"))
    rows = {(e["metric"], e["operating_point"]): e for e in perf.estimates(joined, {"melanoma_sens95": 0.2}, PARAMS)}
    bma = rows[("bma", "")]
    assert bma["point"] == pytest.approx(balanced_accuracy_score(joined["diagnosis"], joined["predicted_class"]))
    assert bma["lower"] < bma["point"] < bma["upper"] and bma["n"] == 300
    mel = joined["diagnosis"] == "MEL"
    score = np.array([p[config.CLASSES.index("MEL")] for p in joined["probabilities"]])
    sens = rows[("melanoma_sensitivity", "melanoma_sens95")]
    assert sens["n"] == mel.sum() and sens["point"] == pytest.approx((score[mel] >= 0.2).mean())
    assert 0.7 < sens["point"] < 0.9 and sens["lower"] < sens["point"] < sens["upper"]
    assert rows[("melanoma_specificity", "melanoma_sens95")]["n"] == (~mel).sum()
    assert 0 < rows[("ece", "")]["point"] < 1 and rows[("brier", "")]["n"] == 300
    matrix = np.array(perf.confusion(joined))
    assert matrix.sum() == 300 and np.trace(matrix) == (joined["diagnosis"] == joined["predicted_class"]).sum()


def test_live_melanoma_rates_use_the_calibrated_probability_the_server_decided_on():
    from dermpipe.model.evaluation.calibration import Calibration

    records, labels = labelled_traffic(300, seed=4, sensitivity=0.8)
    joined, _ = perf.join_labels(pd.DataFrame(records), pd.DataFrame(labels).assign(received_at="2026-12-01"))
    calibration = Calibration(2.0)  # softens: a threshold on the calibrated score refers other images than on raw
    rows = {(e["metric"], e["operating_point"]): e
            for e in perf.estimates(joined, {"melanoma_sens95": 0.28}, PARAMS, calibration)}
    mel = (joined["diagnosis"] == "MEL").to_numpy()
    probabilities = np.array([np.asarray(p, float) for p in joined["probabilities"]])
    score = calibration.apply(probabilities)[:, config.CLASSES.index("MEL")]
    assert rows[("melanoma_sensitivity", "melanoma_sens95")]["point"] == pytest.approx((score[mel] >= 0.28).mean())
    raw = probabilities[:, config.CLASSES.index("MEL")]
    assert (score[mel] >= 0.28).mean() != (raw[mel] >= 0.28).mean()  # the premise: calibration changes the count


def test_resampled_ece_is_the_evaluate_stages_ece_of_each_resample():
    from dermpipe.model.evaluation.metrics import reliability

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(8) * 0.5, 400)
    y = rng.integers(0, 8, 400)
    indices = rng.integers(0, 400, (250, 400))
    fast = perf.ece_resampled(probs.max(axis=1), probs.argmax(axis=1) == y, indices)
    np.testing.assert_allclose(fast, [reliability(y[i], probs[i])[0] for i in indices], atol=1e-12)


@pytest.mark.parametrize(("estimate", "test", "verdict"), [
    ({"metric": "bma", "n": 100, "point": 0.6, "upper": 0.7}, {"point": 0.8, "lower": 0.75}, "drop"),
    ({"metric": "bma", "n": 100, "point": 0.7, "upper": 0.76}, {"point": 0.8, "lower": 0.75}, "no drop"),
    ({"metric": "bma", "n": 100, "point": 0.7, "upper": 0.76}, {"point": 0.8, "lower": None}, "drop"),  # no interval
    ({"metric": "bma", "n": 29, "point": 0.1, "upper": 0.2}, {"point": 0.8, "lower": 0.75}, "insufficient data"),
    ({"metric": "melanoma_sensitivity", "n": 9, "point": 0.1, "upper": 0.2}, {"point": 0.95, "lower": 0.9},
     "insufficient data"),
    ({"metric": "melanoma_sensitivity", "n": 10, "point": 0.5, "upper": 0.8}, {"point": 0.95, "lower": 0.9}, "drop"),
    ({"metric": "bma", "n": 100, "point": 0.1, "upper": 0.2}, None, "not judged"),
    ({"metric": "ece", "n": 100, "point": 0.4, "upper": 0.5}, {"point": 0.05}, "reported"),
])
def test_the_drop_rule_needs_the_whole_live_interval_below_the_test_figure_and_enough_labels(estimate, test, verdict):
    found, why = judge(estimate, test, PerformanceParams())
    assert found == verdict, why


@pytest.fixture()
def served(tmp_path):
    """Version 1 (test sensitivity 0.95 [0.90, 0.99]) served 300 predictions; labels are fed back for 240."""
    def make(sensitivity: float, labelled: int = 240):
        write_version_figures(tmp_path / "registry" / config.MODEL_NAME / "1")
        records, labels = labelled_traffic(300, seed=5, sensitivity=sensitivity, accuracy=0.85)
        write_prediction_log(records, tmp_path / "log")
        append_labels(str(tmp_path / "log"), config.MODEL_NAME, [Label(**x) for x in labels[:labelled]])
        return analyse(str(tmp_path / "log"), config.MODEL_NAME, str(tmp_path / "registry"), PARAMS)
    return make


def test_a_sensitivity_fall_is_a_drop_of_that_version(served):
    result = served(0.5)
    assert result.dropped and [v.verdict for v in result.versions] == ["drop"]
    rows = {e["metric"]: e for e in result.versions[0].estimates}
    assert rows["melanoma_sensitivity"]["verdict"] == "drop" and rows["melanoma_sensitivity"]["upper"] < 0.9
    assert rows["bma"]["verdict"] == "no drop" and rows["bma"]["test_lower"] == 0.75
    assert result.counts["unlabelled_share"] == pytest.approx(0.2)
    values = metric_values(result)
    assert values["performance_dropped"] == 1 and values["v1_labelled"] == 240
    assert values["v1_melanoma_sensitivity_melanoma_sens95_n"] == rows["melanoma_sensitivity"]["n"]


def test_steady_performance_is_no_drop_and_few_labels_are_no_decision(served, tmp_path):
    assert served(0.95).versions[0].verdict == "no drop"
    few = analyse(str(tmp_path / "log"), config.MODEL_NAME, str(tmp_path / "registry"),
                  PerformanceParams(min_labels=1000, min_melanomas=1000, n_bootstrap=200))
    assert not few.dropped and few.versions[0].verdict == "insufficient data"
    assert "no decision" in few.message


def test_without_labels_nothing_is_measured_and_nothing_fires(tmp_path):
    records, _ = labelled_traffic(50, seed=1)
    write_prediction_log(records, tmp_path / "log")
    result = analyse(str(tmp_path / "log"), config.MODEL_NAME, "", PARAMS)
    assert not result.dropped and result.versions == [] and "no labels fed back" in result.message


def test_the_registry_is_found_from_a_registry_reference_and_only_from_one(tmp_path):
    import json

    from dermpipe.monitoring.profile_reader import registry_root_of

    root = tmp_path / "registry"
    version = root / config.MODEL_NAME / "3"
    write_version_figures(version)
    assert registry_root_of(str(version), config.MODEL_NAME) == str(root)
    assert registry_root_of(str(root / config.MODEL_NAME), config.MODEL_NAME) == ""  # no current.json yet
    (root / config.MODEL_NAME / "current.json").write_text(json.dumps({"version": 3, "uri": str(version)}))
    assert registry_root_of(str(root / config.MODEL_NAME) + "/", config.MODEL_NAME) == str(root)
    assert registry_root_of(str(root / config.MODEL_NAME), "another-model") == ""  # its test figures are not here
    (tmp_path / "profile").mkdir()
    assert registry_root_of(str(tmp_path / "profile"), config.MODEL_NAME) == ""


def test_without_a_registry_estimates_are_reported_and_the_message_says_why_nothing_was_judged(served, tmp_path):
    judged = served(0.5)
    unjudged = analyse(str(tmp_path / "log"), config.MODEL_NAME, "", PARAMS)
    assert judged.dropped and not unjudged.dropped
    assert [v.verdict for v in unjudged.versions] == ["not judged"]
    assert unjudged.versions[0].estimates[0]["point"] == judged.versions[0].estimates[0]["point"]
    assert "no registry_root given" in unjudged.message and "no registry_root" not in judged.message
