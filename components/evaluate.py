"""evaluate: test-set metrics and the blessing gate that decides whether deploy runs.

Metrics: balanced multiclass accuracy (BMA, the ISIC 2019 metric), accuracy, per-class precision, recall
(sensitivity), specificity, F1, one-vs-rest ROC AUC and support, macro/weighted averages, melanoma sensitivity at
80 %/90 % specificity, expected calibration error, the confusion matrix, and the same headline sliced by anatomic
site, sex and age band. Optional test-time augmentation (flips) is reported beside plain inference.

Gate (dermpipe.gate): bootstrap intervals, not one number. The challenger's one-sided 95 % lower bound of test BMA
must be above chance for the classes present, its point BMA at least `min_balanced_accuracy`, and, when a champion
is deployed, a paired bootstrap on the same images must show it no worse than the champion by more than
`max_bma_drop`. A baseline (logistic regression on the profile's image statistics, fitted on the train split) is
scored on the same images; `require_beat_baseline` makes beating it a condition. The champion is the version the
pipeline's resolver task passed in (`champion_version`, `champion_digest`): a parameter, so a changed champion
re-runs this task instead of being reused from the cache.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from dermpipe import config
from dermpipe.componentkit import stage_component
from dermpipe.gate import Decision, GateParams, decide
from dermpipe.metrics import Evaluation

SLICES = {"anatomic site": "anatom_site_general", "sex": "sex", "age band": "age_approx"}


def predict_table(model, table: pd.DataFrame, dataset_dir: Path, image_size: int, batch_size: int = 32,
                  *, tta: bool = False) -> np.ndarray:
    """Class probabilities; with tta, the mean over the image and its horizontal and vertical flips. A metadata-fusion
    model also gets each row's age_approx, sex and anatom_site_general (the flips leave them as they are)."""
    import tensorflow as tf

    from dermpipe.imagedata import make_dataset, on_image
    from dermpipe.metafeatures import attach_metadata, takes_metadata

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
    from dermpipe.metafeatures import METADATA_INPUTS

    out = table[["image", "path", "label", "label_index", *(c for c in METADATA_INPUTS if c in table.columns)]].copy()
    out["predicted_index"] = probabilities.argmax(axis=1)
    out["predicted"] = [config.CLASSES[i] for i in out["predicted_index"]]
    out["confidence"] = probabilities.max(axis=1)
    for i, cls in enumerate(config.CLASSES):
        out[f"p_{cls}"] = probabilities[:, i]
    return out


def slices(table: pd.DataFrame, probabilities: np.ndarray) -> dict[str, list[dict[str, object]]]:
    from dermpipe.metrics import age_band, slice_table

    y_true = table["label_index"].to_numpy()
    result = {}
    for title, column in SLICES.items():
        values = table[column]
        keys = [age_band(v) for v in values.astype(float)] if column == "age_approx" else \
            ["(missing)" if pd.isna(v) else str(v) for v in values]
        result[title] = slice_table(keys, y_true, probabilities)
    return result


def load_champion(registry_root: str, model_name: str, version: int, digest: str = ""):
    """The Keras model of registry `version` (the champion the resolver named), or None when version is 0. Its
    model.keras must still have the digest the resolver read: a version is immutable once committed."""
    from dermpipe import registry, storage
    from dermpipe.models import load_classifier

    if not version or not registry_root.strip():
        return None
    source = f"{registry.version_dir(registry_root, model_name, version)}/model.keras"
    with tempfile.TemporaryDirectory() as tmp:
        local = storage.download(source, Path(tmp) / "champion.keras")
        found = storage.sha256_file(local)
        if digest and found != digest:
            raise RuntimeError(f"evaluate: {source} has digest {found[:12]}, but the champion resolved at the start "
                               f"of this run had {digest[:12]}; a committed version must never change. Check who "
                               f"wrote into {registry.version_dir(registry_root, model_name, version)}")
        return load_classifier(local)


def baseline_predictions(profile_dir: Path | None, train: pd.DataFrame, test: pd.DataFrame) -> tuple[
        np.ndarray | None, str]:
    """(predicted test labels or None, what was done): the gate's simple baseline, a logistic regression on the
    image statistics the profile stage computed for each train and test image."""
    from dermpipe.drift_features import PROFILE_FILE
    from dermpipe.gate import fit_image_stats_baseline
    from dermpipe.imagestats import STAT_COLUMNS

    if profile_dir is None or not (profile_dir / PROFILE_FILE).is_file():
        return None, "baseline not fitted: no profile artifact with image statistics was given"
    profile = pd.read_parquet(profile_dir / PROFILE_FILE).drop_duplicates("image").set_index("image")
    missing = {name: sorted(set(t["image"]) - set(profile.index)) for name, t in (("train", train), ("test", test))}
    if any(missing.values()):
        return None, "baseline not fitted: images missing from the profile: " + "; ".join(
            f"{name} {len(m)} (e.g. {', '.join(m[:3])})" for name, m in missing.items() if m)
    columns = list(STAT_COLUMNS)
    predicted = fit_image_stats_baseline(profile.loc[train["image"], columns].to_numpy(float),
                                         train["label_index"].to_numpy(),
                                         profile.loc[test["image"], columns].to_numpy(float))
    return predicted, f"baseline: logistic regression on {len(columns)} image statistics, {len(train)} train images"


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


def render_report(evaluation: Evaluation, decision: Decision, n_test: int, *, y_true: np.ndarray,
                  probabilities: np.ndarray, sliced: dict[str, list[dict[str, object]]],
                  tta: Evaluation | None = None) -> str:
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
    gate_html = "".join(f"<li>{r}</li>" for r in decision.reasons)
    pct = f"{decision.confidence * 100:g} %"
    gate_html += "</ul>" + table(["estimate", "point", f"{pct} lower bound", f"{pct} upper bound", "images"],
                                 [(k, iv.point, iv.lower, iv.upper, iv.n) for k, iv in decision.intervals.items()]) \
        + "<ul>"
    body = (f"<p>{n_test} test images. Classes absent from the test split (reported, not averaged in): {absent}.</p>"
            f"<p><b>Gate: {'blessed' if decision.blessed else 'not blessed'}</b></p><ul>{gate_html}</ul>"
            f"<h2>Headline</h2>{headline}<h2>Per class</h2>{per_class}<h2>Melanoma operating points</h2>{mel}"
            f"<h2>Confusion matrix, ROC curves, reliability (ECE {evaluation.expected_calibration_error:.4f})</h2>"
            f"{figures}<h2>Slices</h2>{sliced_html}")
    return page("Evaluation report (test split)", body)


@dataclass(frozen=True)
class EvaluateParams:
    gate: GateParams = GateParams()
    registry_root: str = ""
    model_name: str = config.MODEL_NAME
    tta: bool = True
    champion_version: int = 0
    champion_digest: str = ""


def _predict_challenger(model: Model, raw: Dataset, test_table: pd.DataFrame,
                        tta: bool) -> tuple[np.ndarray, Evaluation, Evaluation | None]:
    from dermpipe.metafeatures import image_size as model_image_size
    from dermpipe.metrics import evaluate_predictions
    from dermpipe.models import load_classifier

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


def judge(raw: Dataset, test_table: pd.DataFrame, train_table: pd.DataFrame, probabilities: np.ndarray,
          profile_dir: Path | None, params: EvaluateParams) -> tuple[Decision, float | None, str]:
    """The gate's decision, the champion's point BMA on the same images (None without one), the baseline note."""
    from dermpipe.metafeatures import image_size as model_image_size
    from dermpipe.metrics import evaluate_predictions

    y_true = test_table["label_index"].to_numpy()
    champion = load_champion(params.registry_root, params.model_name, params.champion_version,
                             params.champion_digest)
    champion_pred, champion_bma = None, None
    if champion is not None:
        champion_probs = predict_table(champion, test_table, Path(raw.path), model_image_size(champion))
        champion_pred = champion_probs.argmax(axis=1)
        champion_bma = evaluate_predictions(y_true, champion_probs, config.CLASSES).balanced_accuracy
    baseline_pred, baseline_note = baseline_predictions(profile_dir, train_table, test_table)
    decision = decide(y_true, probabilities.argmax(axis=1), params.gate, champion_pred=champion_pred,
                      champion_version=str(params.champion_version), baseline_pred=baseline_pred)
    decision.reasons.insert(0, baseline_note)
    return decision, champion_bma, baseline_note


def run(raw: Dataset, model: Model, test: Dataset, train: Dataset, profile_dir: Path | None, metrics: Metrics,
        confusion: ClassificationMetrics, report: HTML, decision_md: Markdown, predictions: Dataset,
        params: EvaluateParams) -> bool:
    from dermpipe.lineage import annotate, log_metrics, write_metadata_file

    test_table = pd.read_parquet(test.path)
    y_true = test_table["label_index"].to_numpy()
    probabilities, evaluation, tta = _predict_challenger(model, raw, test_table, params.tta)
    decision, champion_bma, _ = judge(raw, test_table, pd.read_parquet(train.path), probabilities, profile_dir,
                                      params)
    sliced = slices(test_table, probabilities)
    log_metrics(metrics, {**evaluation.headline(), "test_rows": len(test_table), "blessed": int(decision.blessed),
                          **({f"tta_{k}": v for k, v in tta.headline().items()} if tta else {}),
                          **({"champion_balanced_accuracy": champion_bma} if champion_bma is not None else {}),
                          "champion_version": params.champion_version,
                          **{f"gate_{k}": v for k, v in decision.metadata().items() if k != "blessed"},
                          **{f"mel_sensitivity_at_{k[:-1]}_specificity": v
                             for k, v in evaluation.mel_sensitivity_at_specificity.items() if v is not None}})
    for cls, values in evaluation.per_class.items():
        log_metrics(metrics, {f"{cls}_recall": values["recall"], f"{cls}_f1": values["f1"]})
    confusion.log_confusion_matrix(list(config.CLASSES), evaluation.confusion)
    write_metadata_file(confusion)
    Path(report.path).write_text(render_report(evaluation, decision, len(test_table), y_true=y_true,
                                               probabilities=probabilities, sliced=sliced, tta=tta))
    Path(decision_md.path).write_text(decision.markdown())
    predictions_frame(test_table, probabilities).to_parquet(predictions.path, index=False)
    annotate(predictions, {"rows": len(test_table), "model_uri": model.uri, "format": "parquet"})
    annotate(report, {"decision": "; ".join(decision.reasons), "blessed": decision.blessed,
                      "absent_classes": evaluation.absent_classes, "slices": sliced})
    annotate(decision_md, {**decision.metadata(), "reasons": decision.reasons,
                           "conditions": decision.conditions, "champion_version": params.champion_version})
    return decision.blessed


@stage_component()
def evaluate(
    raw: Input[Dataset], model: Input[Model], test_split: Input[Dataset], train_split: Input[Dataset],
    metrics: Output[Metrics], confusion: Output[ClassificationMetrics], report: Output[HTML],
    decision: Output[Markdown], predictions: Output[Dataset], profile: Input[Artifact] = None,
    min_balanced_accuracy: float = 0.5, max_bma_drop: float = 0.02, require_beat_baseline: bool = False,
    registry_root: str = "", model_name: str = "dermpipe-isic2019", tta: bool = True, champion_version: int = 0,
    champion_digest: str = "",
) -> bool:
    """Score the model on the test split; returns whether it is blessed for deployment (the pipeline's condition).

    A single unnamed output on purpose: kfp.local resolves conditions on `<task>-Output` channels only."""
    from pathlib import Path

    from dermpipe.components.evaluate import EvaluateParams, run
    from dermpipe.gate import GateParams

    params = EvaluateParams(GateParams(min_balanced_accuracy, max_bma_drop, require_beat_baseline), registry_root,
                            model_name, tta, champion_version, champion_digest)
    return run(raw, model, test_split, train_split, Path(profile.path) if profile is not None else None, metrics,
               confusion, report, decision, predictions, params)
