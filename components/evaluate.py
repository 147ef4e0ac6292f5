"""evaluate: test-set metrics (BMA, the ISIC 2019 metric, plus accuracy, precision, recall, F1, confusion matrix)
and the blessing gate that decides whether deploy runs."""

from pathlib import Path

import numpy as np
import pandas as pd
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from dermpipe import config
from dermpipe.componentkit import stage_component
from dermpipe.metrics import Evaluation


def gate(evaluation: Evaluation, *, min_balanced_accuracy: float) -> tuple[bool, str]:
    """Bless the model when its test BMA reaches the threshold; the reason is written for the run's reader."""
    bma = evaluation.balanced_accuracy
    if bma >= min_balanced_accuracy:
        return True, f"blessed: balanced accuracy {bma:.4f} >= threshold {min_balanced_accuracy:.4f}"
    return False, f"not blessed: balanced accuracy {bma:.4f} < threshold {min_balanced_accuracy:.4f}"


def predict_table(model, table: pd.DataFrame, dataset_dir: Path, image_size: int, batch_size: int = 32) -> np.ndarray:
    from dermpipe.imagedata import make_dataset

    ds = make_dataset(table, dataset_dir, image_size=image_size, batch_size=batch_size, with_labels=False)
    return model.predict(ds, verbose=0)


def predictions_frame(table: pd.DataFrame, probabilities: np.ndarray) -> pd.DataFrame:
    """The test table with predicted label, confidence and one probability column per class."""
    out = table[["image", "path", "label", "label_index"]].copy()
    out["predicted_index"] = probabilities.argmax(axis=1)
    out["predicted"] = [config.CLASSES[i] for i in out["predicted_index"]]
    out["confidence"] = probabilities.max(axis=1)
    for i, cls in enumerate(config.CLASSES):
        out[f"p_{cls}"] = probabilities[:, i]
    return out


def render_report(evaluation: Evaluation, decision: str, n_test: int) -> str:
    from dermpipe.reports import confusion_figure, img_tag, page, png_bytes, table

    headline = table(["metric", "value"], evaluation.headline().items())
    per_class = table(
        ["class", "precision", "recall (sensitivity)", "F1", "support"],
        [(c, v["precision"], v["recall"], v["f1"], v["support"]) for c, v in evaluation.per_class.items()],
    )
    absent = ", ".join(evaluation.absent_classes) or "none"
    confusion = img_tag(png_bytes(confusion_figure(evaluation.confusion, config.CLASSES)), "confusion matrix")
    body = (f"<p>{n_test} test images. Classes absent from the test split (not averaged in): {absent}.</p>"
            f"<p><b>Gate:</b> {decision}</p><h2>Headline</h2>{headline}<h2>Per class</h2>{per_class}"
            f"<h2>Confusion matrix</h2>{confusion}")
    return page("Evaluation report (test split)", body)


def run(raw: Dataset, model: Model, test: Dataset, metrics: Metrics, confusion: ClassificationMetrics,
        report: HTML, predictions: Dataset, min_balanced_accuracy: float) -> bool:
    import keras

    from dermpipe.lineage import annotate, log_metrics, write_metadata_file
    from dermpipe.metrics import evaluate_predictions

    trained = keras.models.load_model(Path(model.path) / "model.keras")
    image_size = int(trained.input_shape[1])
    test_table = pd.read_parquet(test.path)
    probabilities = predict_table(trained, test_table, Path(raw.path), image_size)
    evaluation = evaluate_predictions(test_table["label_index"].to_numpy(), probabilities, config.CLASSES)
    blessed, decision = gate(evaluation, min_balanced_accuracy=min_balanced_accuracy)
    log_metrics(metrics, {**evaluation.headline(), "test_rows": len(test_table), "blessed": int(blessed)})
    for cls, values in evaluation.per_class.items():
        log_metrics(metrics, {f"{cls}_recall": values["recall"], f"{cls}_f1": values["f1"]})
    confusion.log_confusion_matrix(list(config.CLASSES), evaluation.confusion)
    write_metadata_file(confusion)
    Path(report.path).write_text(render_report(evaluation, decision, len(test_table)))
    predictions_frame(test_table, probabilities).to_parquet(predictions.path, index=False)
    annotate(predictions, {"rows": len(test_table), "model_uri": model.uri, "format": "parquet"})
    annotate(report, {"decision": decision, "absent_classes": evaluation.absent_classes})
    return blessed


@stage_component()
def evaluate(
    raw: Input[Dataset], model: Input[Model], test_split: Input[Dataset], metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics], report: Output[HTML], predictions: Output[Dataset],
    min_balanced_accuracy: float = 0.5,
) -> bool:
    """Score the model on the test split; returns whether it is blessed for deployment (the pipeline's condition).

    A single unnamed output on purpose: kfp.local resolves conditions on `<task>-Output` channels only."""
    from dermpipe.components.evaluate import run

    return run(raw, model, test_split, metrics, confusion, report, predictions, min_balanced_accuracy)
