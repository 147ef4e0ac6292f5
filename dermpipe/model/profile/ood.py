"""The served out-of-distribution detector: one score (dermpipe.model.profile.ood_scores, chosen by
dermpipe.model.profile.ood_select) and its threshold, and the earlier score, "pca_residual", one of the candidates.

The model already yields a "pool" embedding, and the reference profile already stores the training set's PCA of it
(embedding_pca.npz). pca_residual is a Mahalanobis distance in that PCA space plus the part the PCA leaves out:

    score^2 = z^T S^-1 z  +  |r|^2 / mean_train(|r|^2)

with z the projection (covariance S fitted on the training rows with Ledoit-Wolf shrinkage, stable on a few hundred
images) and r the residual off the PCA's subspace. An image unlike the training images either projects far away or
does not lie in that subspace at all (a holiday photo, a screenshot); the second term catches what five components
alone would miss. Whatever the score, the threshold is the `pass_rate` quantile of the validation images' scores,
so about that share of in-distribution images pass; a larger score is further from what the model was made for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dermpipe.model.profile.ood_scores import Scorer, residual_squared
from dermpipe.model.profile.reference import EmbeddingPCA

DEFAULT_PASS_RATE = 0.95


@dataclass(frozen=True)
class OODDetector:
    """The served OOD score (dermpipe.model.profile.ood_scores.Scorer) with its validation-calibrated threshold."""

    scorer: Scorer
    threshold: float = float("inf")
    pass_rate: float = DEFAULT_PASS_RATE

    @property
    def method(self) -> str:
        return self.scorer.name

    @property
    def needs_pca(self) -> bool:
        return self.scorer.needs_pca

    def score(self, pca: EmbeddingPCA | None, embeddings: np.ndarray,
              probabilities: np.ndarray | None = None) -> np.ndarray:
        """Score per image [N] from the full embeddings [N, D] (and the probabilities [N, C], for msp)."""
        return self.scorer.score(probabilities, embeddings, pca)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        """True where an image is out of distribution (its score above the threshold)."""
        return np.asarray(scores) > self.threshold

    def as_dict(self) -> dict:
        return {"method": self.method, **self.scorer.as_dict(), "threshold": self.threshold,
                "pass_rate": self.pass_rate}

    @classmethod
    def from_dict(cls, data: dict) -> OODDetector:
        if "state" not in data and "center" in data:  # a version calibrated before the score was chosen
            data = {**data, "score": "pca_residual",
                    "state": {k: data[k] for k in ("center", "precision", "residual_scale") if k in data}}
        missing = {"score", "state", "threshold"} - set(data)
        if missing:
            raise ValueError(f"OOD detector: missing {sorted(missing)}; expected score (its name), state (what it "
                             "needs) and threshold (clinical.json's 'ood', written by the profile stage)")
        return cls(Scorer.from_dict(data), float(data["threshold"]), float(data.get("pass_rate", DEFAULT_PASS_RATE)))


def fit_detector(pca: EmbeddingPCA, train_embeddings: np.ndarray) -> OODDetector:
    """Fit the pca_residual distance on the training embeddings (no threshold yet: see calibrate)."""
    from sklearn.covariance import LedoitWolf

    train_embeddings = np.asarray(train_embeddings, np.float64)
    if len(train_embeddings) < 2:
        raise ValueError(f"OOD detector: {len(train_embeddings)} training embeddings; at least 2 are needed")
    z = pca.project(train_embeddings).astype(np.float64)
    covariance = LedoitWolf().fit(z)
    scale = float(residual_squared(pca, train_embeddings).mean())
    return OODDetector(Scorer("pca_residual", {"center": covariance.location_, "precision": covariance.precision_,
                                               "residual_scale": scale if scale > 1e-12 else 1.0}))


def calibrate(detector: OODDetector, scores: np.ndarray, pass_rate: float = DEFAULT_PASS_RATE) -> OODDetector:
    """The detector with its threshold at the `pass_rate` quantile of in-distribution (validation) scores."""
    if not 0.0 < pass_rate < 1.0:
        raise ValueError(f"ood_pass_rate = {pass_rate}: expected the share of in-distribution images that should "
                         "pass, strictly between 0 and 1 (e.g. 0.95)")
    scores = np.asarray(scores, np.float64)
    if not len(scores):
        raise ValueError("OOD calibration: no validation scores to calibrate the threshold on")
    threshold = float(np.quantile(scores, pass_rate, method="higher"))
    return OODDetector(detector.scorer, threshold, float(pass_rate))


def flagged_rate(detector: OODDetector, scores: np.ndarray) -> float:
    """Share of images flagged out of distribution (false-refer rate on in-distribution images, detection rate on
    out-of-distribution ones)."""
    scores = np.asarray(scores)
    return float(detector.flags(scores).mean()) if len(scores) else float("nan")
