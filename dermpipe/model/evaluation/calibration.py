"""Calibration of the probabilities a melanoma threshold is chosen on: temperature scaling fitted by NLL.

A threshold is a probability a clinician can read ("refer at a melanoma risk of 8 %") and the decision curve's
threshold probability only when the probabilities are calibrated; a model that is right but under-confident (the
demo's ECE was 0.42) puts its melanomas at 0.4-0.6 where a threshold chosen on a few validation images does not
transfer. Temperature scaling (Guo et al. 2017: softmax(log p / T), one parameter, fitted by NLL against targets
smoothed by Platt's prior correction, on the same validation or out-of-fold predictions the thresholds are chosen
on) keeps every image's predicted class.
The fitted temperature is stored in clinical.json and applied wherever a decision is made (serving, predict,
the evaluation report), with the expected calibration error before and after.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from dermpipe import config
from dermpipe.model.evaluation.metrics import reliability
from dermpipe.model.evaluation.oof import scale

# wider than the ensemble's grid (0.25-4): a few-epoch model can be far under-confident (ECE 0.42 on the demo)
TEMPERATURE_GRID = tuple(float(t) for t in np.geomspace(0.02, 10.0, 121))
MEL = config.CLASSES.index("MEL")


def melanoma_ece(positive: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the melanoma probability itself (equal-width bins): the weighted mean gap
    between the mean score and the share of melanomas in each bin."""
    positive, scores = np.asarray(positive, bool).ravel(), np.asarray(scores, np.float64).ravel()
    index = np.clip(np.digitize(scores, np.linspace(0.0, 1.0, bins + 1)[1:-1], right=True), 0, bins - 1)
    gaps = [abs(positive[index == b].mean() - scores[index == b].mean()) * (index == b).sum()
            for b in range(bins) if (index == b).any()]
    return float(sum(gaps) / len(scores))


def smoothed_targets(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Soft targets: the true class (n + 1) / (n + 2) for n rows, the rest spread evenly (Platt's 1999 prior
    correction, over all rows). With hard 0/1 targets a perfectly separated set (make demo's validation split) has
    its NLL fall for ever as T -> 0 and its "calibrated" probabilities become exactly 0 and 1; n rows cannot support
    more confidence than about (n + 1) / (n + 2). Per-class counts would smooth a class of 2 rows to 3/4 and
    under-state every small class."""
    labels = np.asarray(labels, int)
    own = (len(labels) + 1.0) / (len(labels) + 2.0)
    targets = np.full((len(labels), n_classes), (1.0 - own) / (n_classes - 1))
    targets[np.arange(len(labels)), labels] = own
    return targets


def fit_temperature(labels: np.ndarray, probabilities: np.ndarray,
                    grid: tuple[float, ...] = TEMPERATURE_GRID) -> float:
    """The grid temperature with the lowest cross-entropy against the smoothed targets."""
    targets = smoothed_targets(labels, probabilities.shape[1])
    loss = [-(targets * np.log(np.maximum(scale(probabilities, t), 1e-300))).sum(axis=1).mean() for t in grid]
    return float(grid[int(np.argmin(loss))])


@dataclass(frozen=True)
class Calibration:
    """softmax(log p / temperature), and how well calibrated the probabilities were before and after it."""

    temperature: float = 1.0
    method: str = "temperature"
    fitted_on: str = "val"
    ece: dict[str, float] = field(default_factory=dict)  # {split}_{top_label|melanoma}_{before|after}

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(probabilities, np.float64)
        return probabilities if self.temperature == 1.0 else scale(probabilities, self.temperature)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Calibration:
        """None (a clinical.json written before calibration): the identity."""
        if not data:
            return cls(fitted_on="none")
        if data.get("method", "temperature") != "temperature" or not float(data.get("temperature", 0)) > 0:
            raise ValueError(f"calibration {data!r}: expected method 'temperature' and a temperature > 0")
        return cls(float(data["temperature"]), "temperature", str(data.get("fitted_on", "val")),
                   dict(data.get("ece", {})))


def ece_figures(labels: np.ndarray, probabilities: np.ndarray, calibrated: np.ndarray, split: str) -> dict:
    """Top-label and melanoma ECE of one split, before and after calibration."""
    labels = np.asarray(labels)
    out = {}
    for when, p in (("before", probabilities), ("after", calibrated)):
        out[f"{split}_top_label_{when}"] = reliability(labels, p)[0]
        out[f"{split}_melanoma_{when}"] = melanoma_ece(labels == MEL, p[:, MEL])
    return out


def fit_calibration(labels: np.ndarray, probabilities: np.ndarray, fitted_on: str = "val",
                    test: tuple[np.ndarray, np.ndarray] | None = None) -> Calibration:
    """The temperature with the lowest NLL on (labels, probabilities) (smoothed targets), with ECE before/after there
    and, given (labels, probabilities) of the test split, on test (the honest figure: test took no part in it)."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    if len(labels) != len(probabilities) or not len(labels):
        raise ValueError(f"calibration: {len(labels)} labels for {len(probabilities)} probability rows; expected "
                         "one label per row, at least one row")
    temperature = fit_temperature(labels, probabilities, TEMPERATURE_GRID)
    found = Calibration(temperature, fitted_on=fitted_on)
    ece = ece_figures(labels, probabilities, found.apply(probabilities), "fit")
    if test is not None and len(test[0]):
        ece.update(ece_figures(test[0], np.asarray(test[1], np.float64), found.apply(test[1]), "test"))
    return Calibration(temperature, fitted_on=fitted_on, ece=ece)
