"""train and evaluate called as plain Python (`python_func`) on the real ISIC 2019 sample: the component builds its
parameter object from its literal signature and hands the library what it trained."""

import json
from dataclasses import asdict

import pandas as pd
import pytest
from artifacts import make_artifact
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from dermpipe.components.evaluate import evaluate
from dermpipe.components.split import split
from dermpipe.components.train import train
from dermpipe.model.evaluation.bootstrap import Bootstrap, bootstrap_bma
from dermpipe.model.training.train import TrainParams


@pytest.fixture(scope="module")
def trained(merged, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    raw, table = merged[0], merged[2]
    parts = {name: make_artifact(Dataset, tmp, name) for name in ("train", "val", "test")}
    split.python_func(merged=table, stats=make_artifact(Metrics, tmp, "split-stats"),
                      report=make_artifact(Markdown, tmp, "split-report"), test_size=0.1, val_size=0.1, seed=42,
                      folds=0, **parts)
    model, stats = make_artifact(Model, tmp, "model"), make_artifact(Metrics, tmp, "train-stats")
    train.python_func(raw=raw, train_split=parts["train"], val_split=parts["val"], model=model, stats=stats,
                      curves=make_artifact(HTML, tmp, "curves"), backbone="simple_cnn", image_size=32, epochs=2,
                      patience=2, seed=7, quiet=True)
    return raw, parts, model, stats, tmp


def test_train_component_passes_its_parameters_to_the_trainer(trained):
    _, parts, model, stats, _ = trained
    # every parameter the component was not given keeps the stage's own default
    expected = TrainParams(backbone="simple_cnn", image_size=32, epochs=2, patience=2, seed=7, quiet=True)
    assert model.metadata["params"] == asdict(expected)
    assert 1 <= stats.metadata["epochs_run"] == model.metadata["epochs_run"] <= 2
    assert model.metadata["train_rows"] == parts["train"].metadata["rows"]
    assert model.metadata["train_uri"] == parts["train"].uri


def test_evaluate_component_scores_every_test_image(trained):
    raw, parts, model, _, tmp = trained
    metrics, confusion = make_artifact(Metrics, tmp, "metrics"), make_artifact(ClassificationMetrics, tmp, "cm")
    predictions = make_artifact(Dataset, tmp, "predictions")
    evaluate.python_func(raw=raw, model=model, test_split=parts["test"], metrics=metrics, confusion=confusion,
                         report=make_artifact(HTML, tmp, "report"), predictions=predictions, tta=False)
    assert 0.0 <= metrics.metadata["balanced_accuracy"] <= 1.0
    # the test BMA's bootstrap bounds travel with the deployed version: the performance monitor judges live BMA by them
    bma = [metrics.metadata[f"balanced_accuracy{k}"] for k in ("_lower", "", "_upper")]
    frame = pd.read_parquet(predictions.path)
    expected = bootstrap_bma(frame["label_index"].to_numpy(), frame["predicted_index"].to_numpy(), Bootstrap())
    assert bma == pytest.approx([expected.lower, expected.point, expected.upper]) and bma == sorted(bma)
    # a zero-width interval only where every resample scores the same: each class's images all right or all wrong
    # (2 epochs from scratch sometimes predicts a single class for every image)
    recalls = frame.assign(hit=frame["label_index"] == frame["predicted_index"]).groupby("label_index")["hit"].mean()
    assert bma[2] - bma[0] > 0 or set(recalls) <= {0.0, 1.0}
    matrix = confusion.metadata["confusionMatrix"]["rows"]
    assert sum(sum(row["row"]) for row in matrix) == parts["test"].metadata["rows"]
    assert json.dumps(metrics.metadata)  # what the pipeline UI shows must be plain JSON


def test_evaluate_reports_the_official_isic_score_on_the_real_sample(trained):
    """isic-challenge-scoring on the real sample's test split (MEL and NV only): its BMA equals dermpipe's unless a
    top probability is tied, its per-class AUC is scikit-learn's, and the six absent classes are named."""
    from sklearn.metrics import roc_auc_score

    raw, parts, model, _, tmp = trained
    metrics, report = make_artifact(Metrics, tmp, "metrics-isic"), make_artifact(HTML, tmp, "report-isic")
    predictions = make_artifact(Dataset, tmp, "predictions-isic")
    evaluate.python_func(raw=raw, model=model, test_split=parts["test"], metrics=metrics,
                         confusion=make_artifact(ClassificationMetrics, tmp, "cm-isic"), report=report,
                         predictions=predictions, tta=False)
    frame = pd.read_parquet(predictions.path)
    probabilities = frame[[f"p_{c}" for c in ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")]].to_numpy()
    tied = (probabilities == probabilities.max(axis=1, keepdims=True)).sum(axis=1) > 1
    assert metrics.metadata["isic_undecided_images"] == int(tied.sum())
    official, ours = metrics.metadata["isic_balanced_accuracy"], metrics.metadata["balanced_accuracy"]
    # a tied image is wrong officially and may be right for argmax (first class): ties can only lower the official
    assert official == pytest.approx(ours, abs=1e-12) if not tied.any() else official <= ours
    assert metrics.metadata["isic_classes_scored"] == 2
    mel = frame["label"].eq("MEL").to_numpy()
    assert metrics.metadata["isic_MEL_auc"] == pytest.approx(roc_auc_score(mel, probabilities[:, 0]))
    assert metrics.metadata["isic_NV_auc"] == pytest.approx(roc_auc_score(~mel, probabilities[:, 1]))
    for key in ("isic_auc", "isic_auc_sens_80", "isic_ap", "isic_NV_ap"):
        assert 0.0 <= metrics.metadata[key] <= 1.0
    html = open(report.path).read()
    assert "<h2>ISIC challenge score</h2>" in html and "isic-challenge-scoring 5." in html
    summary = report.metadata["isic_challenge_score"]
    assert summary["scored_classes"] == ["MEL", "NV"]
    assert sorted(summary["left_out"]) == ["AK", "BCC", "BKL", "DF", "SCC", "VASC"]
    assert all(f"<td>{c}</td><td>no true case in the test split" in html for c in summary["left_out"])


def test_evaluate_reports_the_profiles_operating_points_measured_on_test(trained):
    raw, parts, model, _, tmp = trained
    profile = make_artifact(Dataset, tmp, "profile")
    (tmp / "profile").mkdir(exist_ok=True)
    # threshold 0 refers every image (sensitivity 1, specificity 0); above 1 refers none
    points = [{"name": "refer_all", "threshold": 0.0, "target_sensitivity": 0.95, "chosen": {"sensitivity": 1.0,
                                                                                           "specificity": 0.0},
               "min_specificity": 0.2},
              {"name": "refer_none", "threshold": 1.01, "target_sensitivity": 0.5, "chosen": {}}]
    (tmp / "profile" / "clinical.json").write_text(json.dumps({
        "default_operating_point": "refer_all", "operating_points": points,
        "ood": {"method": "mahalanobis_pca_plus_residual", "threshold": 3.5, "val_pass_rate": 0.95}}))
    profile.path = str(tmp / "profile")
    metrics, report = make_artifact(Metrics, tmp, "metrics-op"), make_artifact(HTML, tmp, "report-op")
    evaluate.python_func(raw=raw, model=model, test_split=parts["test"], metrics=metrics,
                         confusion=make_artifact(ClassificationMetrics, tmp, "cm-op"), report=report,
                         predictions=make_artifact(Dataset, tmp, "predictions-op"), profile=profile, tta=False)
    assert metrics.metadata["melanoma_op_threshold"] == 0.0
    assert metrics.metadata["melanoma_op_test_sensitivity"] == 1.0
    assert metrics.metadata["melanoma_op_test_specificity"] == 0.0
    html = open(report.path).read()
    assert "Clinical decisions" in html and "refer_all (default)" in html and "refer_none" in html
    assert "3.5" in html and "advice to a clinician, not a diagnosis" in html
    assert "alt='decision curve'" in html and "alt='melanoma ROC with operating points'" in html
    assert "test specificity under the floor 0.20" in html  # refers everyone: never "consistent with target"
    measured = {p["name"]: p for p in report.metadata["operating_points"]}
    assert measured["refer_none"]["test"]["sensitivity"] == 0.0 and measured["refer_none"]["short"] is True
    assert measured["refer_all"]["test"]["n"] == parts["test"].metadata["rows"]
    assert measured["refer_all"]["below_floor"] is True and measured["refer_none"]["below_floor"] is None


def test_evaluate_component_scores_the_benchmark_rows_beside_the_whole_split(trained):
    import pandas as pd

    raw, parts, model, _, tmp = trained
    test = pd.read_parquet(parts["test"].path)
    test = test.assign(in_benchmark=[i % 2 == 0 for i in range(len(test))])
    marked = make_artifact(Dataset, tmp, "test-with-benchmark")
    test.to_parquet(marked.path)
    marked.metadata["benchmark"] = "release@v3"
    metrics, predictions = make_artifact(Metrics, tmp, "metrics-b"), make_artifact(Dataset, tmp, "predictions-b")
    evaluate.python_func(raw=raw, model=model, test_split=marked, metrics=metrics,
                         confusion=make_artifact(ClassificationMetrics, tmp, "cm-b"),
                         report=make_artifact(HTML, tmp, "report-b"), predictions=predictions, tta=False)
    assert metrics.metadata["benchmark_rows"] == int(test["in_benchmark"].sum())
    assert metrics.metadata["test_rows"] == len(test)
    assert 0.0 <= metrics.metadata["benchmark_balanced_accuracy"] <= 1.0
    assert predictions.metadata["benchmark"] == "release@v3"
