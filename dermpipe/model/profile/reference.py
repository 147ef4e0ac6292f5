"""The reference profile's files: their names and the embedding PCA fitted on the training images.

The drift monitor reads a profile folder through dermpipe.monitoring.profile_reader.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermpipe.storage import read_bytes, write_bytes

PCA_FILE = "embedding_pca.npz"
PROFILE_FILE = "reference_profile.parquet"
PROFILE_JSON = "profile.json"
DEFAULT_COMPONENTS = 5  # of the embedding PCA (ProfileParams.n_components's default)


@dataclass(frozen=True)
class EmbeddingPCA:
    """PCA of the "pool" embedding fitted on the training set: emb = (embedding - mean) @ components.T."""

    mean: np.ndarray  # [D]
    components: np.ndarray  # [k, D]

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def project(self, embedding: np.ndarray) -> np.ndarray:
        embedding = np.asarray(embedding, np.float32)
        if embedding.ndim != 2 or embedding.shape[1] != self.mean.shape[0]:
            raise ValueError(f"embedding of shape {embedding.shape} does not fit the PCA fitted on "
                             f"{self.mean.shape[0]}-dimensional embeddings; was the profile made for another model?")
        return (embedding - self.mean) @ self.components.T

    def save(self, path: Path | str) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean.astype(np.float32), components=self.components.astype(np.float32))
        write_bytes(str(path), buffer.getvalue())

    @classmethod
    def load(cls, path: Path | str) -> EmbeddingPCA:
        with np.load(io.BytesIO(read_bytes(str(path)))) as data:
            missing = {"mean", "components"} - set(data.files)
            if missing:
                raise ValueError(f"{path}: missing arrays {sorted(missing)}; expected 'mean' [D] and 'components' "
                                 "[k, D] (embedding_pca.npz as written by the profile stage)")
            return cls(mean=data["mean"].astype(np.float32), components=data["components"].astype(np.float32))


def fit_embedding_pca(embeddings: np.ndarray, n_components: int = DEFAULT_COMPONENTS, seed: int = 0) -> EmbeddingPCA:
    """sklearn PCA on the training embeddings; k is capped by the number of rows and dimensions."""
    from sklearn.decomposition import PCA

    embeddings = np.asarray(embeddings, np.float64)
    k = max(1, min(n_components, embeddings.shape[0] - 1, embeddings.shape[1]))
    # covariance_eigh: exact, and cheap for the few hundred dimensions of a pooled embedding
    pca = PCA(n_components=k, svd_solver="covariance_eigh", random_state=seed).fit(embeddings)
    return EmbeddingPCA(mean=pca.mean_.astype(np.float32), components=pca.components_.astype(np.float32))
