"""A model's reference profile as the drift monitor reads it: a profile folder (local or gs://: a profile artifact,
a registry version or the registry model's current version) loaded with its embedding PCA.

The profile stage writes it (dermpipe.model.profile.stage); its file names and the PCA are dermpipe.model.profile's.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pandas as pd

from dermpipe import config
from dermpipe.model.profile.features import feature_columns, n_components_of
from dermpipe.model.profile.reference import PCA_FILE, PROFILE_FILE, PROFILE_JSON, EmbeddingPCA
from dermpipe.storage import exists, read_bytes, read_text


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
