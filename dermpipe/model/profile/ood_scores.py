"""Candidate out-of-distribution scores, one function each, behind one interface: larger = further from training.

- msp: minus the maximum softmax probability (Hendrycks & Gimpel 2017).
- energy: -logsumexp(logits) (Liu et al. 2020). The logits are the softmax head's Dense applied to the "pool"
  embedding (its kernel and bias are stored), since log-probabilities always have logsumexp 0.
- mahalanobis: distance to the closest class mean under one covariance shared by the classes (Lee et al. 2018),
  Ledoit-Wolf shrinkage for small sets. It runs in the embedding's leading principal directions (at most
  MAX_DIMS) so clinical.json stays small whatever the backbone's width.
- knn: distance to the k-th nearest L2-normalised training embedding (Sun et al. 2022), in the same directions plus
  the residual's length, on a capped bank of training rows.
- pca_residual: the earlier score (dermpipe.model.profile.ood), the profile PCA's Mahalanobis plus the residual off it.

A Scorer is a name and the arrays it needs (its state); `score_with` dispatches on the name, so a stored detector
is rebuilt from JSON without code of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from dermpipe.model.profile.reference import EmbeddingPCA

MAX_DIMS = 128  # leading directions kept for mahalanobis/knn: all of simple_cnn's 128 (fewer lost real-image
# detections than 64 in benchmarks/ood.py); a clinical.json of a few MB for a 1280-wide backbone
KNN_BANK = 2000  # training rows kept for knn
KNN_K = 5


def msp_score(probabilities: np.ndarray) -> np.ndarray:
    """-max_c p_c per row: a confident answer is in distribution."""
    return -np.asarray(probabilities, np.float64).max(axis=1)


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Free energy -T logsumexp(logits / T) per row."""
    from scipy.special import logsumexp

    return -temperature * logsumexp(np.asarray(logits, np.float64) / temperature, axis=1)


def mahalanobis_score(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """min over classes of (x - mu_c)^T P (x - mu_c) per row."""
    d = np.asarray(features, np.float64)[:, None, :] - np.asarray(means, np.float64)[None, :, :]
    return np.einsum("ncj,jk,nck->nc", d, np.asarray(precision, np.float64), d).min(axis=1)


def knn_score(features: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance to the k-th nearest bank row per row (rows and bank already normalised)."""
    from sklearn.neighbors import NearestNeighbors

    k = int(min(k, len(bank)))
    distances, _ = NearestNeighbors(n_neighbors=k).fit(bank).kneighbors(np.asarray(features, np.float64))
    return distances[:, -1]


def normalise(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, np.float64)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def _project(state: dict, embeddings: np.ndarray) -> np.ndarray:
    return (np.asarray(embeddings, np.float64) - state["basis_mean"]) @ state["basis"].T


def _with_residual(state: dict, rows: np.ndarray) -> np.ndarray:
    """Projection plus the residual's length as one more coordinate: a row off the directions is not mistaken for
    its projection (distances are exact up to the residuals' directions)."""
    centred = np.asarray(rows, np.float64) - state["basis_mean"]
    z = centred @ state["basis"].T
    residual = np.sqrt(np.maximum((centred**2).sum(axis=1) - (z**2).sum(axis=1), 0.0))
    return np.column_stack([z, residual])


@dataclass(frozen=True)
class Scorer:
    """A named score and the arrays it needs (floats or numpy arrays), JSON-serialisable by as_dict."""

    name: str
    state: dict = field(default_factory=dict)

    @property
    def needs_pca(self) -> bool:
        return self.name == "pca_residual"

    def score(self, probabilities: np.ndarray | None, embeddings: np.ndarray, pca=None) -> np.ndarray:
        return score_with(self, probabilities, embeddings, pca)

    def as_dict(self) -> dict:
        return {"score": self.name,
                "state": {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in self.state.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> Scorer:
        if data.get("score") not in SCORE_NAMES:
            raise ValueError(f"OOD detector: score {data.get('score')!r}; expected one of {list(SCORE_NAMES)}")
        state = {k: np.asarray(v, np.float64) if isinstance(v, list) else v for k, v in data.get("state", {}).items()}
        return cls(data["score"], state)


SCORE_NAMES = ("msp", "energy", "mahalanobis", "knn", "pca_residual")


def score_with(scorer: Scorer, probabilities: np.ndarray | None, embeddings: np.ndarray, pca=None) -> np.ndarray:
    """The scorer's score per image from the model's outputs (probabilities [N, C], embeddings [N, D])."""
    s = scorer.state
    if scorer.name == "msp":
        if probabilities is None:
            raise ValueError("OOD score msp needs the model's probabilities")
        return msp_score(probabilities)
    if scorer.name == "energy":
        return energy_score(np.asarray(embeddings, np.float64) @ s["kernel"] + s["bias"])
    if scorer.name == "mahalanobis":
        return mahalanobis_score(_project(s, embeddings), s["means"], s["precision"])
    if scorer.name == "knn":
        return knn_score(_with_residual(s, normalise(embeddings)), s["bank"], int(s["k"]))
    if scorer.name == "pca_residual":
        if pca is None:
            raise ValueError("OOD score pca_residual needs the profile's embedding PCA (embedding_pca.npz)")
        return pca_residual_score(s, pca, embeddings)
    raise ValueError(f"OOD score {scorer.name!r}: expected one of {list(SCORE_NAMES)}")


def pca_residual_score(state: dict, pca: EmbeddingPCA, embeddings: np.ndarray) -> np.ndarray:
    """sqrt(z^T S^-1 z + |r|^2 / mean_train |r|^2) per image (dermpipe.model.profile.ood's docstring)."""
    embeddings = np.asarray(embeddings, np.float64)
    d = pca.project(embeddings).astype(np.float64) - np.asarray(state["center"], np.float64)
    mahalanobis = np.einsum("ij,jk,ik->i", d, np.asarray(state["precision"], np.float64), d)
    return np.sqrt(np.maximum(mahalanobis, 0.0) + residual_squared(pca, embeddings) / float(state["residual_scale"]))


def residual_squared(pca: EmbeddingPCA, embeddings: np.ndarray) -> np.ndarray:
    """|e - mean - proj(e)|^2 per row: what the PCA's components do not explain."""
    embeddings = np.asarray(embeddings, np.float64)
    centred = embeddings - pca.mean.astype(np.float64)
    components = pca.components.astype(np.float64)
    z = centred @ components.T
    return np.maximum((centred**2).sum(axis=1) - (z**2).sum(axis=1), 0.0)


def _basis(rows: np.ndarray, max_dims: int) -> dict:
    """Mean and leading principal directions [k, D] of the rows (k <= min(max_dims, N - 1, D))."""
    from sklearn.decomposition import PCA

    k = int(max(1, min(max_dims, len(rows) - 1, rows.shape[1])))
    pca = PCA(k, svd_solver="full").fit(rows)
    return {"basis_mean": pca.mean_, "basis": pca.components_}


def fit_mahalanobis(embeddings: np.ndarray, labels: np.ndarray, max_dims: int = MAX_DIMS) -> Scorer:
    """Class means and the shared (shrunk) precision of the class-centred training rows, in the leading directions."""
    from sklearn.covariance import LedoitWolf

    embeddings, labels = np.asarray(embeddings, np.float64), np.asarray(labels)
    state = _basis(embeddings, max_dims)
    z = _project(state, embeddings)
    classes = np.unique(labels)
    means = np.stack([z[labels == c].mean(axis=0) for c in classes])
    centred = z - means[np.searchsorted(classes, labels)]
    state |= {"means": means, "precision": LedoitWolf(assume_centered=True).fit(centred).precision_}
    return Scorer("mahalanobis", state)


def fit_knn(embeddings: np.ndarray, max_dims: int = MAX_DIMS, bank_size: int = KNN_BANK, k: int = KNN_K,
            seed: int = 0) -> Scorer:
    """A bank of at most bank_size normalised training rows in their leading directions."""
    rows = normalise(embeddings)
    if len(rows) > bank_size:
        rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), bank_size, replace=False))]
    state = _basis(rows, max_dims)
    return Scorer("knn", state | {"bank": _with_residual(state, rows), "k": float(min(k, len(rows)))})


def fit_energy(kernel: np.ndarray, bias: np.ndarray) -> Scorer:
    """The softmax head's Dense weights (kernel [D, C], bias [C]) that turn a pool embedding into logits."""
    return Scorer("energy", {"kernel": np.asarray(kernel, np.float64), "bias": np.asarray(bias, np.float64)})
