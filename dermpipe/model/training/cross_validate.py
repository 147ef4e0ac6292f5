"""The cross-validate stage: the fold models and their OOF predictions in, the CV report, the sweep's leaderboard and
ONE ensemble model out; CrossValParams, its parameters.

After the ParallelFor of train-fold tasks (dermpipe.model.training.train_fold: one per configuration x fold, as
dermpipe.model.training.fold_plan numbers them), this stage
- combines each configuration's OOF predictions (every train/val image exactly once) and scores them: per-fold BMA,
  mean ± std, OOF BMA and confusion matrix, as Metrics, ClassificationMetrics and an HTML report
  (dermpipe.model.evaluation.oof), of the best configuration;
- ranks the configurations by OOF BMA (dermpipe.model.evaluation.leaderboard) into a Markdown leaderboard;
- chooses the members' weights and temperatures on the OOF predictions, for the best `ensemble_top` configurations;
- writes their fold models as one ensemble (dermpipe.model.ensemble), a Model artifact laid out like train's:
  model.keras and the SavedModel at the folder's root, with the same signatures, outputs and "pool" embedding as a
  single model, so profile, evaluate, explain, the gate and deploy take it unchanged. The test split is not read.
Pre-flight checks CrossValParams, so pandas, kfp and TensorFlow are imported inside the functions that use them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dermpipe import config
from dermpipe.componentkit import check_choice, param
from dermpipe.model.evaluation.oof import OOF_FILE, VALIDATION_FOLD, WEIGHTINGS
from dermpipe.model.training.fold_plan import DEFAULT_CONFIG, parse_sweep, sweep_configs

if TYPE_CHECKING:
    import pandas as pd
    from kfp.dsl import HTML, ClassificationMetrics, Dataset, Markdown, Metrics, Model


@dataclass(frozen=True)
class CrossValParams:
    ensemble_weighting: str = param("uniform", "fold models' weights in the ensemble, chosen on the out-of-fold "
                                               "predictions: uniform | fold_bma (each model's held-out-fold BMA)")
    ensemble_temperature: bool = param(False, "temperature-scale each fold model on its own held-out fold before "
                                              "averaging (fitted on the out-of-fold predictions)")
    sweep: str = param("", "configurations to cross-validate, a JSON/YAML list of train-parameter overrides, e.g. "
                           "'[{backbone: simple_cnn}, {loss: focal}]' (empty: train's parameters only)")
    ensemble_top: int = param(1, "ensemble the fold models of the best N sweep configurations (by OOF BMA)")

    def check(self) -> None:
        check_choice("cross_validate", "ensemble_weighting", self.ensemble_weighting, WEIGHTINGS)
        configurations = len(parse_sweep(self.sweep)) or 1
        if not 1 <= self.ensemble_top <= configurations:
            raise ValueError(f"cross_validate parameter ensemble_top={self.ensemble_top}: expected 1..{configurations} "
                             "(the number of sweep configurations)")


def member_key(model_dir: Path) -> tuple[str, int]:
    """(configuration name, fold) of a train-fold Model artifact (its training.json), so members are grouped and
    ordered whatever order the ParallelFor collected them in."""
    report = json.loads((model_dir / "training.json").read_text())
    if "fold" not in report:
        raise ValueError(f"{model_dir}: training.json has no `fold`; expected a train-fold task's model")
    return str(report.get("config", {}).get("name", DEFAULT_CONFIG)), int(report["fold"])


def oof_by_config(frames: list[pd.DataFrame], pool: pd.DataFrame, expected: list[str]) -> dict[str, pd.DataFrame]:
    """Each configuration's OOF predictions, combined and checked (every train/val image once per configuration)."""
    from dermpipe.model.evaluation.oof import combine
    from dermpipe.model.training.train_fold import CONFIG_COLUMN

    names = sorted({str(frame[CONFIG_COLUMN].iloc[0]) for frame in frames})
    if names != sorted(expected):
        raise ValueError(f"cross_validate: OOF predictions for configurations {names}; expected {sorted(expected)}")
    return {name: combine([f for f in frames if f[CONFIG_COLUMN].iloc[0] == name], pool) for name in names}


def build_cv_ensemble(model_dirs: list[Path], oofs: dict[str, pd.DataFrame], chosen: list[str],
                      params: CrossValParams):
    """(ensemble, weights, temperatures): the fold models of the `chosen` configurations, each configuration's in fold
    order, combined as chosen on its own OOF predictions."""
    from dermpipe.model.ensemble import build_ensemble
    from dermpipe.model.evaluation.oof import choose_combination
    from dermpipe.model.zoo import load_classifier

    keys = {d: member_key(d) for d in model_dirs}
    members, weights, temperatures = [], [], []
    for name in chosen:
        dirs = sorted((d for d in model_dirs if keys[d][0] == name), key=lambda d: keys[d][1])
        folds = [keys[d][1] for d in dirs]
        if (folds != list(range(len(dirs))) and folds != [VALIDATION_FOLD]) or not dirs:
            raise ValueError(f"cross_validate: configuration {name!r} has fold models for folds {folds}; expected "
                             f"one per fold 0..{max(len(dirs), 1) - 1}")
        members += [load_classifier(d / "model.keras", compile=False) for d in dirs]
        w, t = choose_combination(oofs[name], params.ensemble_weighting, params.ensemble_temperature)
        weights, temperatures = weights + w, temperatures + t
    ensemble = build_ensemble(members, weights=weights, temperatures=temperatures,
                              name=f"dermpipe_cv{len(members)}_ensemble")
    return ensemble, weights, temperatures


def _ranked(oofs: dict[str, pd.DataFrame], configs: dict[str, dict]):
    """(summaries by configuration, the leaderboard)."""
    from dermpipe.model.evaluation.leaderboard import leaderboard
    from dermpipe.model.evaluation.oof import is_validation, summarise

    summaries = {name: summarise(oof) for name, oof in oofs.items()}
    table = leaderboard([{"name": n, "config": {k: v for k, v in configs[n].items() if k != "name"},
                          **({"val_balanced_accuracy": s.oof_balanced_accuracy} if is_validation(s) else
                             {"oof_balanced_accuracy": s.oof_balanced_accuracy, "cv_balanced_accuracy_mean": s.mean,
                              "cv_balanced_accuracy_std": s.std})} for n, s in summaries.items()])
    return summaries, table


def run(models: list[Model], predictions: list[Dataset], train: Dataset, val: Dataset, ensemble: Model,
        metrics: Metrics, confusion: ClassificationMetrics, report: HTML, leaderboard_md: Markdown | None,
        params: CrossValParams) -> None:
    import pandas as pd

    from dermpipe.lineage.artifacts import annotate, log_metrics, write_metadata_file
    from dermpipe.model.evaluation.leaderboard import leaderboard_markdown, leaderboard_metrics, top
    from dermpipe.model.evaluation.oof import cv_metrics, cv_report_html
    from dermpipe.model.training.train_fold import scored_rows

    params.check()
    configs = {c["name"]: c for c in sweep_configs(params.sweep)}
    pool = scored_rows(pd.read_parquet(train.path), pd.read_parquet(val.path))
    oofs = oof_by_config([pd.read_parquet(p.path) for p in predictions], pool, list(configs))
    summaries, table = _ranked(oofs, configs)
    chosen = top(table, params.ensemble_top)
    model, weights, temperatures = build_cv_ensemble([Path(m.path) for m in models], oofs, chosen, params)
    best, k = summaries[chosen[0]], len(summaries[chosen[0]].per_fold)
    values = {**cv_metrics(best), **leaderboard_metrics(table)}
    serving = _write_ensemble(Path(ensemble.path), model, oofs[chosen[0]], {
        "params": asdict(params), "chosen": chosen, "weights": weights, "temperatures": temperatures, "cv": values,
        "leaderboard": json.loads(table.to_json(orient="records"))})
    log_metrics(metrics, values)
    confusion.log_confusion_matrix(list(config.CLASSES), best.evaluation.confusion)
    write_metadata_file(confusion)
    board = leaderboard_markdown(table)
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(cv_report_html(best, weights[:k], temperatures[:k], params.ensemble_weighting,
                                                leaderboard=board, chosen=chosen))
    if leaderboard_md is not None:
        Path(leaderboard_md.path).parent.mkdir(parents=True, exist_ok=True)
        Path(leaderboard_md.path).write_text("# Sweep leaderboard\n\n" + board + f"\nEnsembled: {', '.join(chosen)}\n")
    annotate(ensemble, _annotations(models, chosen, serving, weights, temperatures, params, best))


def _annotations(models: list[Model], chosen: list[str], serving: dict, weights: list[float],
                 temperatures: list[float], params: CrossValParams, best) -> dict:
    """The ensemble Model's metadata: a single model's keys plus its members, configurations and CV scores."""
    members = [m.uri for m in models if member_key(Path(m.path))[0] in chosen]
    return {
        "framework": "keras", "format": "keras-v3+saved_model", "file": "model.keras", "saved_model": ".",
        "serving_signatures": list(serving["signatures"]), "classes": list(config.CLASSES), "ensemble": True,
        "members": members, "configurations": chosen, "member_weights": weights,
        "member_temperatures": temperatures, "params": asdict(params), "oof_predictions": OOF_FILE,
        "cv_balanced_accuracy_mean": round(best.mean, 4), "cv_balanced_accuracy_std": round(best.std, 4),
        "oof_balanced_accuracy": round(best.oof_balanced_accuracy, 4)}


def _write_ensemble(out: Path, model, oof: pd.DataFrame, description: dict) -> dict:
    """model.keras, the SavedModel (checked), the best configuration's OOF predictions and ensemble.json."""
    from dermpipe.model.export import check_serving_model, export_serving_model

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    serving = {**export_serving_model(model, out), "check": check_serving_model(out, len(config.CLASSES))}
    oof.to_parquet(out / OOF_FILE, index=False)
    (out / "ensemble.json").write_text(json.dumps({**description, "serving": serving}, indent=1, default=str))
    return serving
