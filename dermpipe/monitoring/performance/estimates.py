"""Live performance of the served model from fed-back labels: the join, estimates with intervals, label delay.

Labels (dermpipe.serving.labels) are joined to the prediction log's lines by request_id. On the labelled lines of
one model version (and of one period of the window) each estimate carries its sample size n and a bootstrap interval,
resampling the labelled images with replacement through the same helpers that made the version's test-time figures,
so that a live figure and its test figure are computed alike:
- bma: balanced multiclass accuracy, bootstrap_bma as the gate and evaluate use it
  (dermpipe.model.evaluation.bootstrap; one-sided bounds: the 5 % and 95 % quantiles);
- melanoma_sensitivity / melanoma_specificity at the operating point each line was served with (melanoma probability,
  calibrated by the version's stored temperature, >= that point's threshold, as served and on test):
  operating_points.bootstrap_rates (two-sided 95 % interval);
- ece (top-label expected calibration error, the evaluate stage's reliability) and brier (multiclass Brier score),
  with one-sided bounds like BMA;
- the confusion matrix (rows: diagnosis, columns: predicted class, every class).
Beside them: predictions, labelled lines, the unlabelled share, and the label delay from the prediction's timestamp
to the label's date (when the result was obtained) and to its received_at (when it was fed back).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermpipe import config
from dermpipe.model.evaluation.bootstrap import Interval, Resampling, bootstrap_bma, bootstrap_indices, interval
from dermpipe.model.evaluation.calibration import Calibration
from dermpipe.model.evaluation.metrics import reliability
from dermpipe.model.evaluation.operating_points import POSITIVE_CLASS, bootstrap_rates, rates

LABEL_COLUMNS = ("diagnosis", "source", "date", "received_at")


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The predictions with their label columns (null where no label came yet) and what was not joined: repeated
    labels of one request id (the latest received is kept) and labels of request ids outside the window's
    predictions (counted and listed, never dropped silently)."""
    latest = labels.sort_values("received_at", kind="stable").drop_duplicates("request_id", keep="last")
    outside = latest[~latest["request_id"].isin(predictions["request_id"])]
    joined = predictions.drop(columns=[c for c in LABEL_COLUMNS if c in predictions], errors="ignore").merge(
        latest[["request_id", *LABEL_COLUMNS]], on="request_id", how="left")
    return joined, {"labels_read": len(labels), "repeated_labels": len(labels) - len(latest),
                    "labels_outside_window": len(outside),
                    "labels_outside_window_ids": outside["request_id"].head(50).tolist()}


def coverage(joined: pd.DataFrame) -> dict:
    """Predictions, labelled predictions and the share still without a label."""
    n, labelled = len(joined), int(joined["diagnosis"].notna().sum())
    return {"predictions": n, "labelled": labelled, "unlabelled": n - labelled,
            "unlabelled_share": (n - labelled) / n if n else float("nan")}


def label_delays(joined: pd.DataFrame) -> dict:
    """Days from the prediction to the label's date (the result) and to its received_at (the feedback): median, 90th
    percentile and maximum, and how many labels are dated before their prediction (a data error to look at)."""
    labelled = joined[joined["diagnosis"].notna()]
    if labelled.empty:
        return {"labelled": 0}
    stamp = pd.to_datetime(labelled["timestamp"], utc=True)
    result = pd.to_datetime(labelled["date"], utc=True, errors="coerce")
    received = pd.to_datetime(labelled["received_at"], utc=True, errors="coerce", format="ISO8601")
    to_result = (result - stamp.dt.normalize()).dt.days
    to_received = (received - stamp).dt.total_seconds() / 86400
    out: dict = {"labelled": len(labelled), "dated_before_prediction": int((to_result < 0).sum())}
    for name, days in (("result_days", to_result), ("received_days", to_received)):
        days = days.dropna()
        if len(days):
            out.update({f"{name}_median": float(days.median()), f"{name}_p90": float(days.quantile(0.9)),
                        f"{name}_max": float(days.max())})
    return out


def _probabilities(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """[n, classes] logged probabilities of the rows that carry a vector of every class, and their label indices."""
    if "probabilities" not in rows:
        return np.empty((0, len(config.CLASSES))), np.empty(0, int)
    keep = rows["probabilities"].map(lambda p: p is not None and len(p) == len(config.CLASSES)).to_numpy(bool)
    kept = rows[keep]
    matrix = np.array([np.asarray(p, float) for p in kept["probabilities"]]).reshape(-1, len(config.CLASSES))
    return matrix, kept["diagnosis"].map(config.CLASSES.index).to_numpy(int)


def ece_resampled(confidence: np.ndarray, correct: np.ndarray, indices: np.ndarray, bins: int = 10) -> np.ndarray:
    """[B] top-label ECE of each resample, binned as metrics.reliability does (equal-width bins; a bin's gap times its
    share is |hits - summed confidence| / n), in blocks of resamples with bincount instead of a Python loop."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for block in np.array_split(np.atleast_2d(indices), max(1, len(indices) // 100)):
        keys = (np.arange(len(block))[:, None] * bins + index[block]).ravel()
        size = len(block) * bins
        conf = np.bincount(keys, weights=confidence[block].ravel(), minlength=size)
        hits = np.bincount(keys, weights=correct[block].ravel().astype(float), minlength=size)
        out.append(np.abs(hits - conf).reshape(len(block), bins).sum(axis=1) / block.shape[1])
    return np.concatenate(out)


def calibration(rows: pd.DataFrame, params: Resampling) -> dict[str, Interval]:
    """ECE and Brier score of the labelled rows' logged probabilities, with bootstrap bounds ({} without any)."""
    probs, y = _probabilities(rows)
    if not len(y):
        return {}
    onehot = np.eye(len(config.CLASSES))[y]
    losses = ((probs - onehot) ** 2).sum(axis=1)
    indices = bootstrap_indices(len(y), params.n_bootstrap, params.seed)
    eces = ece_resampled(probs.max(axis=1), probs.argmax(axis=1) == y, indices)
    return {"ece": interval(reliability(y, probs)[0], eces, len(y), params),
            "brier": interval(losses.mean(), losses[indices].mean(axis=1), len(y), params)}


def melanoma_rates(rows: pd.DataFrame, threshold: float, params: Resampling,
                   calibrated_by: Calibration | None = None) -> dict[str, Interval]:
    """Sensitivity (n: labelled melanomas) and specificity (n: the others) of the melanoma probability (calibrated as
    the server calibrated it) >= threshold."""
    probs, y = _probabilities(rows)
    probs = probs if calibrated_by is None else calibrated_by.apply(probs)
    if not len(y):
        return {}
    positive = y == config.CLASSES.index(POSITIVE_CLASS)
    scores = probs[:, config.CLASSES.index(POSITIVE_CLASS)]
    sens, spec = rates(positive, scores, threshold)
    bounds = bootstrap_rates(positive, scores, threshold, params.n_bootstrap, params.seed, params.confidence)
    return {"melanoma_sensitivity": Interval(sens, bounds["sensitivity_lower"], bounds["sensitivity_upper"],
                                             int(positive.sum()), params.n_bootstrap),
            "melanoma_specificity": Interval(spec, bounds["specificity_lower"], bounds["specificity_upper"],
                                             int((~positive).sum()), params.n_bootstrap)}


def estimates(joined: pd.DataFrame, thresholds: dict[str, float], params: Resampling,
              calibrated_by: Calibration | None = None) -> list[dict]:
    """One row per estimate of the labelled lines: metric, operating_point ('' where none applies), point, lower,
    upper, n. Melanoma rates per operating point the lines were served with (unknown points: counted in n_unknown)."""
    rows = joined[joined["diagnosis"].notna()]
    if rows.empty:
        return []
    found = {"bma": bootstrap_bma(rows["diagnosis"].to_numpy(str), rows["predicted_class"].to_numpy(str),
                                  params), **calibration(rows, params)}
    out = [{"metric": k, "operating_point": "", **v.as_dict()} for k, v in found.items()]
    points = rows["operating_point"].fillna("") if "operating_point" in rows else pd.Series("", index=rows.index)
    for name, group in rows.groupby(points, sort=True):
        if name in thresholds:
            out += [{"metric": k, "operating_point": name, **v.as_dict()}
                    for k, v in melanoma_rates(group, thresholds[name], params, calibrated_by).items()]
        elif name:
            out.append({"metric": "melanoma_sensitivity", "operating_point": name, "point": float("nan"),
                        "lower": float("nan"), "upper": float("nan"), "n": 0, "n_unknown": len(group)})
    return out


def confusion(joined: pd.DataFrame) -> list[list[int]]:
    """Counts of (diagnosis, predicted class) over every class, in config.CLASSES order."""
    from sklearn.metrics import confusion_matrix

    rows = joined[joined["diagnosis"].notna()]
    if rows.empty:
        return [[0] * len(config.CLASSES) for _ in config.CLASSES]
    return confusion_matrix(rows["diagnosis"].astype(str), rows["predicted_class"].astype(str),
                            labels=list(config.CLASSES)).tolist()


def periods(joined: pd.DataFrame, period: str) -> list[tuple[str, pd.DataFrame]]:
    """The window cut into periods of the prediction timestamps (pandas periods: D, W, M); [] for ''."""
    if not period or joined.empty:
        return []
    try:
        keys = pd.to_datetime(joined["timestamp"], utc=True).dt.tz_localize(None).dt.to_period(period)
    except ValueError as err:
        raise ValueError(f"period {period!r} is not a pandas period (D for days, W for weeks, M for months)") from err
    return [(str(key), group) for key, group in joined.groupby(keys, sort=True)]
