"""The cross-validate stage: the fold models and their OOF predictions in, the CV report and ONE ensemble model out.

After the ParallelFor of train-fold tasks (dermpipe.model.training.folds), this stage
- combines the OOF predictions (every train/val image exactly once) and scores them: per-fold BMA, mean ± std, OOF
  BMA and confusion matrix, as Metrics, ClassificationMetrics and an HTML report (dermpipe.model.evaluation.oof);
- chooses the members' weights and temperatures on the OOF predictions;
- writes the ensemble (dermpipe.model.ensemble) as a Model artifact laid out like train's: model.keras and the
  SavedModel at the folder's root, with the same signatures, outputs and "pool" embedding as a single model, so
  profile, evaluate, explain, the gate and deploy take it unchanged. The test split is not read here.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Metrics, Model

from dermpipe import config
from dermpipe.model.training.cv_params import CrossValParams


def fold_of(model_dir: Path) -> int:
    """The fold a train-fold Model artifact was trained for (its training.json), so members are in fold order
    whatever order the ParallelFor collected them in."""
    report = json.loads((model_dir / "training.json").read_text())
    if "fold" not in report:
        raise ValueError(f"{model_dir}: training.json has no `fold`; expected a train-fold task's model")
    return int(report["fold"])


def build_cv_ensemble(model_dirs: list[Path], oof: pd.DataFrame, params: CrossValParams):
    """(ensemble, weights, temperatures): the fold models in fold order, combined as chosen on `oof`."""
    from dermpipe.model.ensemble import build_ensemble
    from dermpipe.model.evaluation.oof import choose_combination
    from dermpipe.model.zoo import load_classifier

    by_fold = sorted(model_dirs, key=fold_of)
    folds = [fold_of(d) for d in by_fold]
    if folds != list(range(len(by_fold))):
        raise ValueError(f"cross_validate: fold models for folds {folds}; expected one per fold 0..{len(folds) - 1}")
    members = [load_classifier(d / "model.keras", compile=False) for d in by_fold]
    weights, temperatures = choose_combination(oof, params.ensemble_weighting, params.ensemble_temperature)
    ensemble = build_ensemble(members, weights=weights, temperatures=temperatures,
                              name=f"dermpipe_cv{len(members)}_ensemble")
    return ensemble, weights, temperatures


def run(models: list[Model], predictions: list[Dataset], train: Dataset, val: Dataset, ensemble: Model,
        metrics: Metrics, confusion: ClassificationMetrics, report: HTML, params: CrossValParams) -> None:
    from dermpipe.lineage.artifacts import annotate, log_metrics, write_metadata_file
    from dermpipe.model.evaluation.oof import combine, cv_metrics, cv_report_html, summarise
    from dermpipe.model.export import check_serving_model, export_serving_model
    from dermpipe.model.training.folds import fold_pool

    params.check()
    pool = fold_pool(pd.read_parquet(train.path), pd.read_parquet(val.path))
    oof = combine([pd.read_parquet(p.path) for p in predictions], pool)
    summary = summarise(oof)
    model, weights, temperatures = build_cv_ensemble([Path(m.path) for m in models], oof, params)
    out = Path(ensemble.path)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    serving = {**export_serving_model(model, out), "check": check_serving_model(out, len(config.CLASSES))}
    oof.to_parquet(out / "oof_predictions.parquet", index=False)
    values = cv_metrics(summary)
    (out / "ensemble.json").write_text(json.dumps(
        {"params": asdict(params), "weights": weights, "temperatures": temperatures, "cv": values,
         "serving": serving}, indent=1))
    log_metrics(metrics, values)
    confusion.log_confusion_matrix(list(config.CLASSES), summary.evaluation.confusion)
    write_metadata_file(confusion)
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(cv_report_html(summary, weights, temperatures, params.ensemble_weighting))
    annotate(ensemble, {
        "framework": "keras", "format": "keras-v3+saved_model", "file": "model.keras", "saved_model": ".",
        "serving_signatures": list(serving["signatures"]), "classes": list(config.CLASSES), "ensemble": True,
        "members": [m.uri for m in models], "member_weights": weights, "member_temperatures": temperatures,
        "params": asdict(params), "oof_predictions": "oof_predictions.parquet",
        "cv_balanced_accuracy_mean": round(summary.mean, 4), "cv_balanced_accuracy_std": round(summary.std, 4),
        "oof_balanced_accuracy": round(summary.oof_balanced_accuracy, 4)})
