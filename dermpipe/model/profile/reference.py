"""The reference profile's files: their names, the embedding PCA, and loading a profile folder (local or gs://, a
profile artifact, a registry version or the registry model's current version) for the drift monitor."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermpipe import config
from dermpipe.model.profile.features import DEFAULT_COMPONENTS, feature_columns, n_components_of
from dermpipe.storage import exists, read_bytes, read_text, write_bytes

PCA_FILE = "embedding_pca.npz"
PROFILE_FILE = "reference_profile.parquet"
PROFILE_JSON = "profile.json"


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


# ---------------------------------------------------------------- a profile folder, as the drift monitor reads it


@dataclass
class Reference:
    folder: str
    profile: pd.DataFrame
    pca: EmbeddingPCA | None
    model_file: str | None
    model_name: str
    image_size: int | None = None  # the model's input size: image statistics are computed at it


def resolve_reference(path: str) -> str:
    """A profile folder or registry version folder (holding reference_profile.parquet) or a registry model folder
    (holding current.json: the served version is used)."""
    path = path.rstrip("/")
    if exists(f"{path}/{PROFILE_FILE}"):
        return path
    if exists(f"{path}/current.json"):
        pointer = json.loads(read_text(f"{path}/current.json"))
        return resolve_reference(str(pointer["uri"]))
    raise FileNotFoundError(
        f"{path}: no {PROFILE_FILE} here (nor a current.json naming a registry version that has one). --reference "
        "takes the training run's `profile` artifact folder, a registry version folder <registry>/<model>/<N> "
        "deployed with its profile, or the registry model folder <registry>/<model>")


def registry_root_of(reference: str, model_name: str) -> str:
    """The registry root a reference lies in when it is a registry model folder <root>/<model_name> (holding
    current.json) or a version folder <root>/<model_name>/<N> (holding dermpipe.json); "" for anything else (a
    profile artifact folder says nothing about where the served versions' test figures are)."""
    path = reference.rstrip("/")
    model_folder, _, last = path.rpartition("/")
    if last.isdigit() and exists(f"{path}/dermpipe.json"):
        path = model_folder
    elif not exists(f"{path}/current.json"):
        return ""
    root, _, name = path.rpartition("/")
    return root if name == model_name and root else ""


def load_reference(path: str) -> Reference:
    folder = resolve_reference(path)
    profile = pd.read_parquet(io.BytesIO(read_bytes(f"{folder}/{PROFILE_FILE}")))
    pca = EmbeddingPCA.load(f"{folder}/{PCA_FILE}") if exists(f"{folder}/{PCA_FILE}") else None
    info = json.loads(read_text(f"{folder}/{PROFILE_JSON}")) if exists(f"{folder}/{PROFILE_JSON}") else {}
    record = json.loads(read_text(f"{folder}/dermpipe.json")) if exists(f"{folder}/dermpipe.json") else {}
    model_file = next((m for m in (f"{folder}/model.keras", info.get("model_file")) if m and exists(m)), None)
    name = record.get("model_name") or info.get("model_name") or config.MODEL_NAME
    size = info.get("image_size")
    return Reference(folder, profile, pca, model_file, name, int(size) if size else None)


def reference_features(reference: Reference) -> pd.DataFrame:
    return reference.profile[[c for c in feature_columns(n_components_of(reference.profile.columns))
                              if c in reference.profile.columns]]
