"""Synthetic drift features and prediction logs in the `dermpipe serve` log format, for tests, benchmarks and demos.

Not real traffic: independent draws per column (with `shift` moving every numeric column by that many standard
deviations and tilting the categorical mixes), enough to exercise reading, Evidently and the decision at scale.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from dermpipe import config
from dermpipe.data.image_stats import STAT_COLUMNS
from dermpipe.model.profile.features import embedding_columns

# (mean, std) of each statistic, roughly those of ISIC 2019 dermoscopy at 250 px
_STAT_MOMENTS = {"brightness": (0.6, 0.1), "contrast": (0.15, 0.04), "saturation": (0.3, 0.08),
                 "hue_x": (0.8, 0.1), "hue_y": (0.1, 0.1), "sharpness": (2.0, 0.8), "width": (1024.0, 64.0),
                 "height": (768.0, 48.0), "aspect": (4 / 3, 0.0)}


def synthetic_features(n: int, seed: int = 0, shift: float = 0.0, n_components: int = 5) -> pd.DataFrame:
    """n rows of drift features (dermpipe.model.profile.features.feature_columns)."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(index=range(n))
    weights = np.linspace(1.0, 0.2, len(config.CLASSES)) + shift * np.linspace(0, 1, len(config.CLASSES))
    table["predicted_class"] = rng.choice(config.CLASSES, n, p=weights / weights.sum())
    table["confidence"] = np.clip(rng.beta(5, 2, n) - 0.1 * shift, 0.125, 1.0)
    for column in STAT_COLUMNS:
        mean, std = _STAT_MOMENTS[column]
        table[column] = mean + std * (rng.normal(size=n) + shift)
    table["width"], table["height"] = table["width"].round(), table["height"].round()
    table["aspect"] = table["width"] / table["height"]
    table["age_approx"] = np.round(rng.normal(55 + 10 * shift, 15, n) / 5) * 5
    table["sex"] = rng.choice(["male", "female"], n, p=[0.52 - 0.1 * min(shift, 2), 0.48 + 0.1 * min(shift, 2)])
    sites = list(config.SITES)
    site_weights = np.linspace(1.0, 0.1, len(sites)) + shift * np.linspace(0, 1, len(sites))
    table["anatom_site_general"] = rng.choice(sites, n, p=site_weights / site_weights.sum())
    for column in embedding_columns(n_components):
        table[column] = rng.normal(shift, 1.0, n)
    return table


def log_records(features: pd.DataFrame, *, model_name: str = config.MODEL_NAME, model_version: int = 1,
                start: dt.datetime | None = None, seconds_apart: float = 1.0) -> list[dict]:
    """Prediction-log objects (the serve contract) for feature rows, timestamps `seconds_apart` from `start`."""
    start = start or dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    records = []
    classes = list(config.CLASSES)
    for i, row in enumerate(features.to_dict("records")):
        probabilities = [(1 - row["confidence"]) / (len(classes) - 1)] * len(classes)
        probabilities[classes.index(row["predicted_class"])] = row["confidence"]
        stamp = start + dt.timedelta(seconds=i * seconds_apart)
        records.append({"timestamp": stamp.isoformat().replace("+00:00", "Z"), "request_id": uuid.UUID(int=i).hex,
                        "model_name": model_name, "model_version": model_version, **row,
                        "probabilities": probabilities})
    return records


def labelled_traffic(n: int, *, seed: int = 0, accuracy: float = 0.8, melanoma_share: float = 0.3,
                     sensitivity: float = 0.95, specificity: float = 0.8, threshold: float = 0.2,
                     operating_point: str = "melanoma_sens95", model_version: int = 1,
                     start: dt.datetime | None = None) -> tuple[list[dict], list[dict]]:
    """(log records, labels) of n served predictions whose truth is known: the predicted class is right with
    probability `accuracy`, the melanoma probability reaches `threshold` for a `sensitivity` share of melanomas and
    stays under it for a `specificity` share of the others (predicted_class stays the probabilities' argmax)."""
    rng = np.random.default_rng(seed)
    classes, mel = list(config.CLASSES), config.CLASSES.index("MEL")
    others = [i for i in range(len(classes)) if i != mel]
    truth = np.where(rng.random(n) < melanoma_share, mel, rng.choice(others, n))
    predicted = np.where(rng.random(n) < accuracy, truth, rng.integers(0, len(classes), n))
    referred = np.where(truth == mel, rng.random(n) < sensitivity, rng.random(n) >= specificity)
    predicted = np.where(~referred & (predicted == mel), rng.choice(others, n), predicted)
    features = synthetic_features(n, seed=seed).assign(predicted_class=[classes[i] for i in predicted])
    records = log_records(features, model_version=model_version, start=start, seconds_apart=600)
    labels = []
    for i, record in enumerate(records):
        probs = np.full(len(classes), 0.1 / (len(classes) - 2))
        probs[mel] = 0.3 if referred[i] else threshold / 4
        probs[predicted[i]] = 0.6
        probs = probs / probs.sum()
        record.update({"request_id": f"req-{model_version}-{seed}-{i}", "probabilities": probs.tolist(),
                       "confidence": float(probs.max()), "operating_point": operating_point, "ood_score": 0.0,
                       "decision": "refer_melanoma" if probs[mel] >= threshold else "routine"})
        day = dt.date.fromisoformat(record["timestamp"][:10]) + dt.timedelta(days=int(rng.integers(3, 15)))
        labels.append({"request_id": record["request_id"], "diagnosis": classes[truth[i]], "source": "biopsy",
                       "date": day.isoformat()})
    return records, labels


def write_version_figures(folder: Path, *, bma: tuple[float, float, float] = (0.8, 0.75, 0.85),
                          sensitivity: tuple[float, float, float] = (0.95, 0.9, 0.99),
                          specificity: tuple[float, float, float] = (0.8, 0.75, 0.85), threshold: float = 0.2,
                          test_rows: int = 400, positives: int = 100) -> None:
    """A registry version's test-time figures as deploy leaves them: dermpipe.json's evaluation (BMA point, lower,
    upper) and clinical.json's melanoma_sens95 operating point with its test sensitivity/specificity intervals."""
    from dermpipe.model.evaluation.operating_points import OperatingPoint
    from dermpipe.model.profile.clinical import Clinical

    folder.mkdir(parents=True, exist_ok=True)
    evaluation = {"balanced_accuracy": bma[0], "balanced_accuracy_lower": bma[1], "balanced_accuracy_upper": bma[2],
                  "test_rows": test_rows, "expected_calibration_error": 0.05}
    (folder / "dermpipe.json").write_text(json.dumps({"evaluation": evaluation}))
    test = {"sensitivity": sensitivity[0], "sensitivity_lower": sensitivity[1], "sensitivity_upper": sensitivity[2],
            "specificity": specificity[0], "specificity_lower": specificity[1], "specificity_upper": specificity[2],
            "n": test_rows, "positives": positives}
    point = OperatingPoint("melanoma_sens95", threshold, 0.95, test=test)
    (folder / "clinical.json").write_text(json.dumps(Clinical((point,), None, {}).as_dict()))


def write_prediction_log(records: list[dict], log_root: Path, model_name: str = config.MODEL_NAME,
                         per_file: int = 10_000) -> list[Path]:
    """Write records as JSON Lines under <log_root>/<model_name>/date=YYYY-MM-DD/part-NNNNN.jsonl."""
    written: list[Path] = []
    by_day: dict[str, list[dict]] = {}
    for record in records:
        by_day.setdefault(record["timestamp"][:10], []).append(record)
    for day, rows in sorted(by_day.items()):
        folder = Path(log_root) / model_name / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        for part, first in enumerate(range(0, len(rows), per_file)):
            path = folder / f"part-{part:05d}.jsonl"
            path.write_text("".join(json.dumps(r, default=_json_default) + "\n" for r in rows[first:first + per_file]))
            written.append(path)
    return written


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to the log")
