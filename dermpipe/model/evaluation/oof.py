"""Out-of-fold (OOF) predictions: combined, scored per fold and as a whole, and used to choose the ensemble.

Every train and val image is predicted exactly once, by the fold model that did not train on it, so the OOF score
has the sample size of the whole train+val pool (the test split, often a few dozen images on small data, is left to
the final evaluation, which reads it once). The ensemble's member weights and temperatures are chosen here, on OOF
predictions only, never on the test split:

- weights: `uniform`, or `fold_bma`: member i weighted by the BMA its model reached on its own held-out fold;
- temperatures (optional): per member, the T minimising the negative log-likelihood of softmax(log p / T) on its own
  held-out fold (temperature scaling, Guo et al. 2017), on a log-spaced grid.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dermpipe import config

if TYPE_CHECKING:  # pandas where it is used: cross-validate's parameters check WEIGHTINGS in pre-flight
    import pandas as pd

# The ensemble weightings this module implements (cross_validate's ensemble_weighting): equal weights | each fold
# model's held-out-fold BMA.
WEIGHTINGS = ("uniform", "fold_bma")
VALIDATION_FOLD = -1  # a sweep without folds: each configuration fitted on train, its held-out predictions on val
OOF_FILE = "oof_predictions.parquet"  # in a cross-validated ensemble's Model folder: its best configuration's OOF

FOLD_COLUMN = "fold"
TEMPERATURE_GRID = tuple(float(t) for t in np.geomspace(0.25, 4.0, 49))


def probability_columns() -> list[str]:
    return [f"p_{cls}" for cls in config.CLASSES]


def combine(frames: Sequence[pd.DataFrame], pool: pd.DataFrame | None = None) -> pd.DataFrame:
    """The folds' OOF frames as one table, checked: folds 0..k-1 once each, every image once, and (given the
    train+val `pool`) exactly the pool's images."""
    import pandas as pd

    if not frames:
        raise ValueError("out-of-fold predictions: no fold frames given; expected one per fold")
    oof = pd.concat(frames, ignore_index=True)
    folds = sorted(int(f) for f in oof[FOLD_COLUMN].unique())
    per_frame = [sorted(frame[FOLD_COLUMN].unique()) for frame in frames]
    validation = folds == [VALIDATION_FOLD] and len(frames) == 1  # a sweep without folds: val predictions
    if (folds != list(range(len(frames))) and not validation) or any(len(f) != 1 for f in per_frame):
        raise ValueError(f"out-of-fold predictions: frames hold folds {per_frame}; expected one frame per fold "
                         f"0..{len(frames) - 1}")
    repeated = sorted(oof.loc[oof["image"].duplicated(), "image"])
    if repeated:
        raise ValueError(f"out-of-fold predictions: {len(repeated)} images predicted more than once, e.g. "
                         f"{repeated[:3]}; expected each train/val image in exactly one fold")
    if pool is not None:
        missing, extra = set(pool["image"]) - set(oof["image"]), set(oof["image"]) - set(pool["image"])
        if missing or extra:
            raise ValueError(f"out-of-fold predictions: {len(missing)} train/val images never predicted (e.g. "
                             f"{sorted(missing)[:3]}), {len(extra)} not in train/val (e.g. {sorted(extra)[:3]})")
    return oof.sort_values([FOLD_COLUMN, "image"]).reset_index(drop=True)


@dataclass(frozen=True)
class CVSummary:
    per_fold: dict[int, float]  # fold -> BMA on its held-out fold
    mean: float
    std: float  # sample standard deviation over the folds (ddof=1; 0 with one fold)
    oof_balanced_accuracy: float
    oof_rows: int
    evaluation: object  # dermpipe.model.evaluation.metrics.Evaluation of all OOF predictions


def summarise(oof: pd.DataFrame) -> CVSummary:
    """Per-fold BMA, their mean ± std, and the BMA and confusion matrix of all OOF predictions together."""
    from dermpipe.model.evaluation.metrics import evaluate_predictions

    per_fold = {}
    for fold, rows in oof.groupby(FOLD_COLUMN, sort=True):
        per_fold[int(fold)] = evaluate_predictions(rows["label_index"].to_numpy(),
                                                   rows[probability_columns()].to_numpy(),
                                                   config.CLASSES).balanced_accuracy
    scores = np.asarray(list(per_fold.values()))
    whole = evaluate_predictions(oof["label_index"].to_numpy(), oof[probability_columns()].to_numpy(),
                                 config.CLASSES)
    return CVSummary(per_fold, float(scores.mean()), float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
                     whole.balanced_accuracy, len(oof), whole)


def scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): temperature scaling of probabilities (the same as dividing the logits by T)."""
    logits = np.log(np.maximum(probabilities.astype(np.float64), 1e-7)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def held_out_predictions(model_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, probabilities) that a cross-validated ensemble's fold models gave the train+val images they did not
    train on, each scaled by its member's temperature; None for a model without folds (trained once, or a sweep
    without folds, whose members never saw val).

    The ensemble itself trained on every train and val image (each through k-1 of its k members), so its own val
    predictions are in-sample; a threshold chosen on them would be chosen on images the model has learnt. These are
    the best configuration's predictions (ensemble.json's first k temperatures are its members', in fold order).
    """
    import json

    import pandas as pd

    path = Path(model_dir) / OOF_FILE
    if not path.exists():
        return None
    oof = pd.read_parquet(path)
    folds = sorted(int(f) for f in oof[FOLD_COLUMN].unique())
    if folds == [VALIDATION_FOLD]:
        return None
    description = Path(model_dir) / "ensemble.json"
    temperatures = json.loads(description.read_text()).get("temperatures", []) if description.exists() else []
    probabilities = oof[probability_columns()].to_numpy(np.float64)
    for fold, temperature in zip(folds, temperatures[:len(folds)], strict=False):
        if temperature != 1.0:
            rows = (oof[FOLD_COLUMN] == fold).to_numpy()
            probabilities[rows] = scale(probabilities[rows], temperature)
    return oof["label_index"].to_numpy(), probabilities


def fit_temperature(labels: np.ndarray, probabilities: np.ndarray,
                    grid: Sequence[float] = TEMPERATURE_GRID) -> float:
    """The grid temperature with the lowest negative log-likelihood of the true labels."""
    rows = np.arange(len(labels))
    nll = [-np.log(np.maximum(scale(probabilities, t)[rows, labels], 1e-12)).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def choose_combination(oof: pd.DataFrame, weighting: str, temperature: bool) -> tuple[list[float], list[float]]:
    """(member weights, member temperatures) in fold order, chosen on each member's own held-out fold."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"ensemble_weighting={weighting!r}: expected one of {list(WEIGHTINGS)}")
    summary = summarise(oof)
    folds = sorted(summary.per_fold)
    weights = [1.0] * len(folds) if weighting == "uniform" else [max(summary.per_fold[f], 1e-3) for f in folds]
    temperatures = [1.0] * len(folds)
    if temperature:
        temperatures = [fit_temperature(rows["label_index"].to_numpy(), rows[probability_columns()].to_numpy())
                        for _, rows in oof.groupby(FOLD_COLUMN, sort=True)]
    return weights, temperatures


def is_validation(summary: CVSummary) -> bool:
    """Whether `summary` scores val predictions of a sweep without folds, not out-of-fold predictions."""
    return list(summary.per_fold) == [VALIDATION_FOLD]


def cv_metrics(summary: CVSummary) -> dict[str, float]:
    """The Metrics of cross-validation: per-fold BMA, mean, std, OOF BMA and the OOF headline (without folds: the
    validation BMA and headline)."""
    if is_validation(summary):
        return {"val_balanced_accuracy": summary.oof_balanced_accuracy, "val_rows": summary.oof_rows,
                **{f"val_{k}": v for k, v in summary.evaluation.headline().items()}}
    return {**{f"fold_{fold}_balanced_accuracy": v for fold, v in summary.per_fold.items()},
            "cv_balanced_accuracy_mean": summary.mean, "cv_balanced_accuracy_std": summary.std,
            "oof_balanced_accuracy": summary.oof_balanced_accuracy, "oof_rows": summary.oof_rows,
            "folds": len(summary.per_fold), **{f"oof_{k}": v for k, v in summary.evaluation.headline().items()}}


def cv_report_html(summary: CVSummary, weights: Sequence[float], temperatures: Sequence[float], weighting: str, *,
                   leaderboard: str = "", chosen: Sequence[str] = ()) -> str:
    """The cross-validation report: folds, mean ± std, OOF BMA and confusion matrix, the ensemble's combination, and
    where the test split is used (only by the final evaluation); with a sweep, its Markdown `leaderboard` and the
    `chosen` configurations (the first is the one whose folds are shown)."""
    from dermpipe.reports import confusion_figure, img_tag, page, png_bytes, table

    folds = table(["fold", "held-out BMA", "ensemble weight", "temperature"],
                  [(f, summary.per_fold[f], w, t) for f, w, t in
                   zip(sorted(summary.per_fold), weights, temperatures, strict=True)])
    total = sum(weights)
    if is_validation(summary):
        return _validation_report(summary, leaderboard, chosen)
    body = (f"<p><b>{len(summary.per_fold)}-fold cross-validation</b> over the {summary.oof_rows} train and val "
            f"images: BMA {summary.mean:.4f} ± {summary.std:.4f} (mean ± sample std over folds); out-of-fold BMA "
            f"<b>{summary.oof_balanced_accuracy:.4f}</b>, every train/val image predicted once by the model that did "
            "not train on it.</p>"
            "<p>Each fold's held-out images drove its early stopping; the OOF predictions chose the ensemble's "
            f"weights ({weighting}, normalised: {', '.join(f'{w / total:.3f}' for w in weights)}) and temperatures. "
            "<b>The test split was not used here</b>: it is read once, by the final evaluation of the ensemble.</p>"
            f"<h2>Folds</h2>{folds}<h2>Out-of-fold confusion matrix</h2>"
            + img_tag(png_bytes(confusion_figure(summary.evaluation.confusion, config.CLASSES)), "OOF confusion"))
    if leaderboard:
        body += (f"<h2>Sweep leaderboard</h2><p>Folds above: {html.escape(chosen[0])}. Ensembled: "
                 f"{html.escape(', '.join(chosen))}.</p><pre>{html.escape(leaderboard)}</pre>")
    return page("Cross-validation report (out-of-fold)", body)


def _validation_report(summary: CVSummary, leaderboard: str, chosen: Sequence[str]) -> str:
    """The report of a sweep without folds: validation BMA per configuration, and where each split is used."""
    from dermpipe.reports import confusion_figure, img_tag, page, png_bytes

    body = (f"<p><b>No folds</b>: every configuration trained on train and early-stopped on val; the leaderboard ranks "
            f"them by validation BMA on the {summary.oof_rows} val images (best: <b>{summary.oof_balanced_accuracy:.4f}"
            "</b>). <b>The test split was not used here</b>: it is read once, by the final evaluation of the "
            f"ensemble of {html.escape(', '.join(chosen))}.</p><h2>Sweep leaderboard</h2>"
            f"<pre>{html.escape(leaderboard)}</pre><h2>Validation confusion matrix (best configuration)</h2>"
            + img_tag(png_bytes(confusion_figure(summary.evaluation.confusion, config.CLASSES)), "val confusion"))
    return page("Sweep report (validation split)", body)
