"""profile: the reference profile of a trained model, what the drift monitor compares current traffic with.

The `profile` artifact is a folder:
    embedding_pca.npz          PCA of the "pool" embedding fitted on the training images (mean [D], components [k, D])
    reference_profile.parquet  one row per train/val/test image: image, split and the drift features
                               (dermpipe.model.profile.features); predicted_class/confidence only on val/test rows
                               (a model's
                               answers on its own training images are over-confident, not what traffic looks like)
    profile.json               counts, the PCA's explained variance and where the model is
    clinical.json              the temperature calibrating the probabilities, melanoma operating points chosen on
                               the val rows (valid or not, with the reason) and the OOD detector: candidate
                               scores fitted on the train rows, calibrated on the val rows, measured on a far
                               (non-dermoscopy) and a near (val images through a new device) set, the best on
                               near served (dermpipe.model.profile.clinical, ood_select)
Deploy copies the data files into the registry version folder, beside the SavedModel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dermpipe.componentkit import param

if TYPE_CHECKING:  # pandas, kfp and scikit-learn load inside the functions: pre-flight imports ProfileParams
    import pandas as pd
    from kfp.dsl import Artifact, Dataset, Metrics, Model

SPLITS = ("train", "val", "test")
NEAR_FOLDER_SET = "near_folder"  # the ood_near_folder parameter's images, as clinical.json names the set



@dataclass(frozen=True)
class ProfileParams:
    n_components: int = param(5, "components of the embedding PCA the drift monitor and the OOD score use")
    melanoma_target_sensitivity: float = param(0.95, "melanoma operating point: the threshold is chosen on the "
                                                     "validation split to refer at least this share of melanomas")
    melanoma_min_specificity: float = param(0.2, "melanoma operating point: valid only if its validation "
                                                  "specificity is at least this (below it, it refers nearly everyone) "
                                                  "and its net benefit beats referring all and none")
    ood_pass_rate: float = param(0.95, "OOD threshold: calibrated so this share of validation images pass as "
                                       "in-distribution")
    ood_near_folder: str = param("", "folder (local or gs://) of dermoscopy images from another device, clinic or "
                                     "population (no labels needed): the served OOD score is chosen on them instead "
                                     "of on the validation images through a simulated new device")

    def check(self) -> None:
        """Refuse a target or pass rate that no threshold can mean (pre-flight and the stage run the same check)."""
        for name in ("melanoma_target_sensitivity", "ood_pass_rate"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} = {value}: expected a share strictly between 0 and 1 (e.g. 0.95)")
        if not 0.0 <= self.melanoma_min_specificity < 1.0:
            raise ValueError(f"melanoma_min_specificity = {self.melanoma_min_specificity}: expected a share in "
                             "[0, 1) (e.g. 0.2)")
        if self.n_components < 1:
            raise ValueError(f"n_components = {self.n_components}: expected at least 1")


def build_profile(stats: pd.DataFrame, metadata: pd.DataFrame, probabilities: np.ndarray, embeddings: np.ndarray,
                  splits: Sequence[str], n_components: int = 5):
    """(profile table, EmbeddingPCA): PCA fitted on the train rows, predictions kept on val/test rows only."""
    from dermpipe.model.profile.features import assemble, embedding_frame, normalize_metadata, prediction_columns
    from dermpipe.model.profile.reference import fit_embedding_pca

    splits = np.asarray(splits)
    is_train = splits == "train"
    if not is_train.any():
        raise ValueError("profile: no training rows; the embedding PCA is fitted on the training split")
    pca = fit_embedding_pca(embeddings[is_train], n_components)
    predictions = prediction_columns(probabilities)
    predictions.loc[is_train, "predicted_class"] = None
    predictions.loc[is_train, "confidence"] = np.nan
    table = assemble(stats, normalize_metadata(metadata.reset_index(drop=True)), predictions,
                     embedding_frame(pca.project(embeddings)), pca.n_components)
    table.insert(1, "split", splits)
    return table, pca


def profile_model(model_file: Path, dataset_dir: Path, tables: dict[str, pd.DataFrame], out: Path,
                  n_components: int = 5, params: ProfileParams | None = None) -> dict[str, object]:
    """Compute the profile of a saved model on the split tables and write the profile folder; returns profile.json."""
    import pandas as pd

    from dermpipe.model.evaluation.clinical_section import CLINICAL_FILE
    from dermpipe.model.profile.features import decode_images, failed_message
    from dermpipe.model.profile.reference import PCA_FILE, PROFILE_FILE, PROFILE_JSON

    table = pd.concat([t.assign(split=name) for name, t in tables.items()], ignore_index=True)
    paths = [dataset_dir / rel for rel in table["path"]]
    from dermpipe.model import metadata_inputs
    from dermpipe.model.zoo import load_classifier

    model = load_classifier(model_file, compile=False)
    image_size = metadata_inputs.image_size(model)
    outputs = decode_images(paths, image_size, model, metadata=table)  # metadata: fusion models only
    if outputs.failed:
        raise ValueError(f"profile: {failed_message(outputs.failed, len(paths))}; the split images were readable "
                         "at merge, so the dataset folder changed since: re-run from ingest")
    stats, probabilities, embeddings = outputs.stats, outputs.probabilities, outputs.embeddings
    profile, pca = build_profile(stats, table, probabilities, embeddings, table["split"], n_components)
    out.mkdir(parents=True, exist_ok=True)
    profile.to_parquet(out / PROFILE_FILE, index=False)
    pca.save(out / PCA_FILE)
    explained = _explained_variance(pca, embeddings[table["split"].to_numpy() == "train"])
    info = {"rows": {name: int((table["split"] == name).sum()) for name in tables}, "n_components": pca.n_components,
            "embedding_dim": int(embeddings.shape[1]), "explained_variance": explained, "image_size": image_size,
            "model_file": str(model_file), "columns": list(profile.columns)}
    clinical = None
    if "label_index" in table.columns:  # split tables always have labels; an unlabelled folder gets drift only
        params = params or ProfileParams()
        evidence = ood_evidence(model, image_size, table, dataset_dir, embeddings.shape[1], params.ood_near_folder)
        clinical = _clinical(model_file.parent, table, probabilities, embeddings, pca, params, evidence)
        (out / CLINICAL_FILE).write_text(json.dumps(clinical.as_dict(), indent=1))
    (out / PROFILE_JSON).write_text(json.dumps(info, indent=1))
    return {**info, "clinical": None if clinical is None else clinical.as_dict()}


def _clinical(model_dir: Path, table: pd.DataFrame, probabilities: np.ndarray, embeddings: np.ndarray, pca,
              params: ProfileParams, evidence):
    """Operating points and the OOD detector chosen on `evidence` (dermpipe.model.profile.clinical); a cross-validated
    ensemble's thresholds come from its out-of-fold predictions."""
    from dermpipe.model.evaluation.oof import held_out_predictions
    from dermpipe.model.profile.clinical import calibrate_clinical

    return calibrate_clinical(table["label_index"].to_numpy(), probabilities, embeddings, table["split"].to_numpy(),
                              pca, target_sensitivity=params.melanoma_target_sensitivity,
                              ood_pass_rate=params.ood_pass_rate, ood=evidence,
                              held_out=held_out_predictions(model_dir),
                              min_specificity=params.melanoma_min_specificity)


def ood_evidence(model, image_size: int, table: pd.DataFrame, dataset_dir: Path, embedding_dim: int,
                 near_folder: str = ""):
    """The far set (dermpipe.model.profile.ood_set), the near set new_device (the val images through a simulated new
    device, dermpipe.model.profile.ood_near) and, when given, the near_folder images, through the model; the served
    score is chosen on near_folder when there is one, else on new_device."""
    import tempfile

    from dermpipe.model.profile.features import decode_images
    from dermpipe.model.profile.ood_near import NEAR_SET_NAME, write_near_set
    from dermpipe.model.profile.ood_select import OODEvidence
    from dermpipe.model.profile.ood_set import write_ood_set

    val = table[table["split"] == "val"]
    with tempfile.TemporaryDirectory() as folder:
        sets = {"far": decode_images(write_ood_set(Path(folder) / "far"), image_size, model),
                NEAR_SET_NAME: decode_images(write_near_set([dataset_dir / rel for rel in val["path"]],
                                                            Path(folder) / "near"), image_size, model,
                                             metadata=val.reset_index(drop=True))}
    if near_folder:
        sets[NEAR_FOLDER_SET] = decode_images(near_folder_images(near_folder), image_size, model)
    return OODEvidence(_outputs_of(sets.pop("far"), "far"), {n: _outputs_of(o, n) for n, o in sets.items()},
                       NEAR_FOLDER_SET if near_folder else NEAR_SET_NAME, head_weights(model, embedding_dim))


def near_folder_images(folder: str) -> list[str]:
    """The images under the ood_near_folder parameter (local or gs://, any depth); none is an error."""
    from dermpipe.data.schema import IMAGE_SUFFIXES
    from dermpipe.storage import join, list_files

    names = [n for n in list_files(folder) if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    if not names:
        raise FileNotFoundError(f"ood_near_folder = {folder!r}: no .jpg/.jpeg/.png images found (searched all "
                                "sub-folders); expected dermoscopy images from another device, clinic or population")
    return [join(folder, n) for n in names]


def _outputs_of(decoded, name: str):
    """The model's outputs on one OOD set; an unreadable image is named, never skipped silently."""
    from dermpipe.model.profile.features import failed_message
    from dermpipe.model.profile.ood_select import Outputs

    if decoded.failed:
        total = len(decoded.failed) + len(decoded.stats)
        raise ValueError(f"profile: OOD set {name}: {failed_message(decoded.failed, total)}")
    return Outputs(decoded.probabilities, decoded.embeddings)


def head_weights(model, embedding_dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(kernel [D, C], bias [C]) of the softmax Dense "probabilities" when its input is the pool embedding; None for
    a metadata-fusion head (it also reads the metadata branch) or an ensemble (it averages its members'
    temperature-scaled probabilities): no logits from the embedding alone, so no energy candidate."""
    try:
        weights = model.get_layer("probabilities").get_weights()
    except ValueError:  # no such layer at the top: an ensemble
        return None
    if len(weights) != 2 or np.shape(weights[0])[0] != embedding_dim:
        return None
    return np.asarray(weights[0], np.float64), np.asarray(weights[1], np.float64)


def _explained_variance(pca, embeddings: np.ndarray) -> float:
    """Share of the training embeddings' variance the k components keep."""
    centred = embeddings - pca.mean
    total = float((centred**2).sum())
    return float((pca.project(embeddings) ** 2).sum() / total) if total > 0 else 0.0


def run(raw: Dataset, model: Model, splits: dict[str, Dataset], profile: Artifact, stats: Metrics,
        params: ProfileParams) -> None:
    import pandas as pd

    from dermpipe.data import licences
    from dermpipe.lineage.artifacts import annotate, log_metrics
    from dermpipe.model.evaluation.clinical_section import CLINICAL_FILE

    params.check()
    tables = {name: pd.read_parquet(artifact.path) for name, artifact in splits.items()}
    info = profile_model(Path(model.path) / "model.keras", Path(raw.path), tables, Path(profile.path),
                         params.n_components, params)
    _log_clinical(stats, info["clinical"])
    trained_on = licences.write_training(tables, Path(profile.path))["trained_on"]  # shipped with the model
    annotate(profile, {"files": ["embedding_pca.npz", "reference_profile.parquet", "profile.json", CLINICAL_FILE,
                                 licences.LICENCES_FILE], "commercial_use": trained_on["commercial_use"],
                       "model_uri": model.uri, "n_components": info["n_components"],
                       "explained_variance": round(info["explained_variance"], 4), "rows": info["rows"]})
    log_metrics(stats, {"profile_rows": sum(info["rows"].values()), "n_components": info["n_components"],
                        "explained_variance": info["explained_variance"],
                        **{f"{name}_rows": n for name, n in info["rows"].items()}})


def _log_clinical(stats: Metrics, clinical: dict) -> None:
    """The default operating point's threshold, figures and validity, the calibration's temperature and ECE before
    and after, and the OOD rates, as the profile task's metrics."""
    from dermpipe.lineage.artifacts import log_metrics

    point = clinical["operating_points"][0]
    chosen_on = "oof" if point.get("chosen_on") == "out-of-fold" else "val"
    log_metrics(stats, {"melanoma_threshold": point["threshold"],
                        f"melanoma_{chosen_on}_sensitivity": point["chosen"]["sensitivity"],
                        **{f"melanoma_test_{k}": v for k, v in point["test"].items()
                           if isinstance(v, float) and np.isfinite(v)},
                        "melanoma_point_valid": float(point.get("valid", True)),
                        "calibration_temperature": clinical["calibration"]["temperature"],
                        **{f"ece_{k}": v for k, v in clinical["calibration"]["ece"].items()},
                        **ood_metrics(clinical["report"]["ood"])})


def ood_metrics(report: dict) -> dict[str, float]:
    """The served detector's rates, and each candidate's AUROC and FPR@95TPR per OOD set (ood_energy_far_auroc...)."""
    scalars = {f"ood_{k}": float(v) for k, v in report.items() if isinstance(v, int | float)}  # a bool as 0/1
    for name, sets in report.get("candidates", {}).items():
        for set_name, figures in sets.items():
            scalars |= {f"ood_{name}_{set_name}_{k}": figures[k] for k in ("auroc", "fpr_at_95_tpr")}
    return {k: v for k, v in scalars.items() if np.isfinite(v)}
