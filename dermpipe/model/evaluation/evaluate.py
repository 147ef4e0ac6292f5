"""evaluate: test-set metrics, the evaluation report and the predictions the gate and explain read.

Metrics: balanced multiclass accuracy (BMA, the ISIC 2019 metric), accuracy, per-class precision, recall
(sensitivity), specificity, F1, one-vs-rest ROC AUC and support, macro/weighted averages, melanoma sensitivity at
80 %/90 % specificity, expected calibration error, the confusion matrix, and the same headline sliced by anatomic
site, sex and age band. Optional test-time augmentation (flips) is reported beside plain inference. Beside them, the
ISIC challenge's own scorer (challenge_score.py: BMA with its tie rule, per-class AUC, AUC80, average precision).

It depends on the model and the data only, so an unchanged model is served from the cache whatever the registry
holds; the comparison with the deployed champion is the gate task's (components/gate.py). EvaluateParams sit beside
run(); pre-flight imports them, so pandas, scikit-learn and kfp are imported where they are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dermpipe import config
from dermpipe.componentkit import param

if TYPE_CHECKING:
    import pandas as pd
    from kfp.dsl import HTML, ClassificationMetrics, Dataset, Metrics, Model

    from dermpipe.model.evaluation.metrics import Evaluation

SLICES = {"anatomic site": "anatom_site_general", "sex": "sex", "age band": "age_approx"}


@dataclass(frozen=True)
class EvaluateParams:
    tta: bool = param(True, "also report test-time augmentation (flips)")


def predict_table(model, table: pd.DataFrame, dataset_dir: Path, image_size: int, batch_size: int = 32,
                  *, tta: bool = False) -> np.ndarray:
    """Class probabilities; with tta, the mean over the image and its horizontal and vertical flips. A metadata-fusion
    model also gets each row's age_approx, sex and anatom_site_general (the flips leave them as they are)."""
    import tensorflow as tf

    from dermpipe.data.images import make_dataset, on_image
    from dermpipe.model.metadata_inputs import attach_metadata, takes_metadata

    ds = make_dataset(table, dataset_dir, image_size=image_size, batch_size=batch_size, with_labels=False)
    if takes_metadata(model):
        ds = attach_metadata(ds, table, batch_size)
    probabilities = model.predict(ds, verbose=0)
    if tta:
        for flip in (tf.image.flip_left_right, tf.image.flip_up_down):
            probabilities = probabilities + model.predict(ds.map(lambda x, flip=flip: on_image(x, flip)), verbose=0)
        probabilities = probabilities / 3.0
    return probabilities


def predictions_frame(table: pd.DataFrame, probabilities: np.ndarray) -> pd.DataFrame:
    """The test table with predicted label, confidence and one probability column per class (and the row's metadata,
    which explain hands to a metadata-fusion model)."""
    from dermpipe.model.metadata_inputs import METADATA_INPUTS

    out = table[["image", "path", "label", "label_index", *(c for c in METADATA_INPUTS if c in table.columns)]].copy()
    out["predicted_index"] = probabilities.argmax(axis=1)
    out["predicted"] = [config.CLASSES[i] for i in out["predicted_index"]]
    out["confidence"] = probabilities.max(axis=1)
    for i, cls in enumerate(config.CLASSES):
        out[f"p_{cls}"] = probabilities[:, i]
    return out


def slices(table: pd.DataFrame, probabilities: np.ndarray) -> dict[str, list[dict[str, object]]]:
    import pandas as pd

    from dermpipe.model.evaluation.metrics import age_band, slice_table

    y_true = table["label_index"].to_numpy()
    result = {}
    for title, column in SLICES.items():
        values = table[column]
        keys = [age_band(v) for v in values.astype(float)] if column == "age_approx" else \
            ["(missing)" if pd.isna(v) else str(v) for v in values]
        result[title] = slice_table(keys, y_true, probabilities)
    return result


def _roc_figure(y_true: np.ndarray, probabilities: np.ndarray):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5, 5))
    for i, cls in enumerate(config.CLASSES):
        positives = y_true == i
        if 0 < positives.sum() < len(y_true):
            fpr, tpr, _ = roc_curve(positives, probabilities[:, i])
            ax.plot(fpr, tpr, label=cls)
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(fontsize=8)
    plt.close(fig)
    return fig


def _reliability_figure(bins: list[dict[str, float]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=0.1, align="edge", alpha=0.7,
           label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    plt.close(fig)
    return fig


def render_report(evaluation: Evaluation, n_test: int, *, y_true: np.ndarray,
                  probabilities: np.ndarray, sliced: dict[str, list[dict[str, object]]],
                  tta: Evaluation | None = None, clinical_html: str = "", challenge_html: str = "") -> str:
    from dermpipe.reports import confusion_figure, img_tag, page, png_bytes, table

    headline_rows = [(k, v, tta.headline()[k] if tta else "") for k, v in evaluation.headline().items()]
    headline = table(["metric", "plain", "with TTA (flips)" if tta else ""], headline_rows)
    per_class = table(
        ["class", "precision", "recall (sensitivity)", "specificity", "F1", "ROC AUC", "support"],
        [(c, v["precision"], v["recall"], v["specificity"], v["f1"], "n/a" if v["roc_auc"] is None else v["roc_auc"],
          v["support"]) for c, v in evaluation.per_class.items()],
    )
    mel = table(["specificity", "melanoma sensitivity"],
                [(k, "n/a" if v is None else v) for k, v in evaluation.mel_sensitivity_at_specificity.items()])
    absent = ", ".join(evaluation.absent_classes) or "none"
    sliced_html = "".join(
        f"<h3>{title}</h3>" + table(["slice", "n", "accuracy", "BMA"],
                                    [(r["slice"], r["n"], r["accuracy"], r["balanced_accuracy"]) for r in rows])
        for title, rows in sliced.items()
    )
    figures = (img_tag(png_bytes(confusion_figure(evaluation.confusion, config.CLASSES)), "confusion matrix")
               + img_tag(png_bytes(_roc_figure(y_true, probabilities)), "ROC curves")
               + img_tag(png_bytes(_reliability_figure(evaluation.reliability)), "reliability diagram"))
    body = (f"<p>{n_test} test images. Classes absent from the test split (reported, not averaged in): {absent}.</p>"
            "<p>Whether this model is deployed is the gate task's decision (its <code>decision</code> artifact): "
            "bootstrap intervals against chance, the deployed champion and a baseline.</p>"
            f"<h2>Headline</h2>{headline}<h2>Per class</h2>{per_class}{challenge_html}"
            f"<h2>Melanoma operating points</h2>{mel}"
            f"<h2>Confusion matrix, ROC curves, reliability (ECE {evaluation.expected_calibration_error:.4f})</h2>"
            f"{figures}{clinical_html}<h2>Slices</h2>{sliced_html}")
    return page("Evaluation report (test split)", body)


def _predict(model: Model, raw: Dataset, test_table: pd.DataFrame,
             tta: bool) -> tuple[np.ndarray, Evaluation, Evaluation | None]:
    from dermpipe.model.evaluation.metrics import evaluate_predictions
    from dermpipe.model.metadata_inputs import image_size as model_image_size
    from dermpipe.model.zoo import load_classifier

    trained = load_classifier(Path(model.path) / "model.keras")
    image_size = model_image_size(trained)
    y_true = test_table["label_index"].to_numpy()
    probabilities = predict_table(trained, test_table, Path(raw.path), image_size)
    evaluation = evaluate_predictions(y_true, probabilities, config.CLASSES)
    tta_eval = None
    if tta:
        tta_probs = predict_table(trained, test_table, Path(raw.path), image_size, tta=True)
        tta_eval = evaluate_predictions(y_true, tta_probs, config.CLASSES)
    return probabilities, evaluation, tta_eval


def benchmark_headline(test_table: pd.DataFrame, probabilities: np.ndarray) -> dict[str, float]:
    """Rows and BMA of the frozen benchmark set's test rows (`in_benchmark`, marked by split); {} without a set.
    The gate compares champion and challenger on these rows; this is the same figure, beside the whole split's."""
    from dermpipe.model.evaluation.metrics import evaluate_predictions

    if "in_benchmark" not in test_table or not test_table["in_benchmark"].any():
        return {}
    mask = test_table["in_benchmark"].to_numpy(dtype=bool)
    found = evaluate_predictions(test_table["label_index"].to_numpy()[mask], probabilities[mask], config.CLASSES)
    return {"benchmark_rows": int(mask.sum()), "benchmark_balanced_accuracy": found.headline()["balanced_accuracy"]}


def run(raw: Dataset, model: Model, test: Dataset, metrics: Metrics, confusion: ClassificationMetrics,
        report: HTML, predictions: Dataset, *, tta: bool = True, profile_dir: Path | None = None) -> None:
    import pandas as pd

    from dermpipe.data.split_file import evaluation_metrics
    from dermpipe.lineage.artifacts import annotate, log_metrics, write_metadata_file
    from dermpipe.model.evaluation import challenge_score
    from dermpipe.model.evaluation.bootstrap import Bootstrap, bootstrap_bma
    from dermpipe.model.evaluation.clinical_section import (
        curve_figures,
        load_clinical_dict,
        measure_points,
        metric_values,
        render_clinical,
    )

    test_table = pd.read_parquet(test.path)
    y_true = test_table["label_index"].to_numpy()
    probabilities, evaluation, tta_eval = _predict(model, raw, test_table, tta)
    sliced = slices(test_table, probabilities)
    clinical = load_clinical_dict(profile_dir)
    points = measure_points(clinical, y_true, probabilities) if clinical else []
    figures = curve_figures(clinical, y_true, probabilities, points) if points else ""
    official = challenge_score.official_score(test_table["image"].astype(str).tolist(), y_true, probabilities,
                                              config.CLASSES)
    log_metrics(metrics, {**metric_values(points), **challenge_score.metric_values(official)})
    # the BMA interval travels with the deployed version (dermpipe.json): the monitor judges live BMA by it
    bma = bootstrap_bma(y_true, probabilities.argmax(axis=1), Bootstrap())
    log_metrics(metrics, {**evaluation.headline(), "test_rows": len(test_table),
                          "balanced_accuracy_lower": bma.lower, "balanced_accuracy_upper": bma.upper,
                          **benchmark_headline(test_table, probabilities), **evaluation_metrics(test.metadata),
                          **({f"tta_{k}": v for k, v in tta_eval.headline().items()} if tta_eval else {}),
                          **{f"mel_sensitivity_at_{k[:-1]}_specificity": v
                             for k, v in evaluation.mel_sensitivity_at_specificity.items() if v is not None}})
    for cls, values in evaluation.per_class.items():
        log_metrics(metrics, {f"{cls}_recall": values["recall"], f"{cls}_f1": values["f1"]})
    confusion.log_confusion_matrix(list(config.CLASSES), evaluation.confusion)
    write_metadata_file(confusion)
    Path(report.path).write_text(render_report(evaluation, len(test_table), y_true=y_true,
                                               probabilities=probabilities, sliced=sliced, tta=tta_eval,
                                               clinical_html=render_clinical(clinical, points, figures),
                                               challenge_html=challenge_score.render_section(
                                                   official, evaluation.balanced_accuracy)))
    predictions_frame(test_table, probabilities).to_parquet(predictions.path, index=False)
    benchmark = str(test.metadata.get("benchmark", ""))  # name@vN, annotated by split ('' without a set)
    annotate(predictions, {"rows": len(test_table), "model_uri": model.uri, "format": "parquet",
                           "benchmark": benchmark})
    annotate(report, {"absent_classes": evaluation.absent_classes, "slices": sliced, "benchmark": benchmark,
                      "isic_challenge_score": official.summary(),
                      "operating_points": [{k: p[k] for k in ("name", "threshold", "target", "test", "short",
                                                              "below_floor", "valid", "invalid")}
                                           for p in points]})
