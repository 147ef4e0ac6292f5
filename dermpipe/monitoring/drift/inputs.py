"""The drift stage's inputs: both sides of a comparison (the reference profile; a prediction log window or a folder
of images) as feature tables, and the stage's metrics. The stage (stage.py) and `dermpipe monitor` read and analyse
through the same read_inputs and DriftInputs."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dermpipe.monitoring.drift.analysis import DriftConfig, DriftResult, analyse
from dermpipe.monitoring.log_reader import looks_like_log, read_prediction_log
from dermpipe.monitoring.profile_reader import Reference, load_reference, reference_features


@dataclass
class DriftInputs:
    """Both sides of one drift analysis: the reference and the current data's features, counts and failed images."""

    reference: Reference
    current: str
    table: pd.DataFrame
    counts: dict[str, int]
    failed: list[tuple[str, str]]
    since: str = ""
    until: str = ""
    rates: dict = field(default_factory=dict)  # refer/OOD rates of the logged decisions (decision_rates)

    def compare(self, cfg: DriftConfig) -> DriftResult:
        return analyse(reference_features(self.reference), self.table, cfg)

    def summary(self, result: DriftResult) -> dict:
        """drift.json: the result, where both sides came from, the current data's counts and its failed images."""
        return {**result.summary(), "reference": self.reference.folder, "current": self.current,
                "since": self.since, "until": self.until, "counts": self.counts,
                "failed_images": [{"path": p, "error": e} for p, e in self.failed], "decisions": self.rates}


def read_inputs(reference: str, current: str, *, since: str = "", until: str = "", metadata_csv: str = "",
                model_file: str = "") -> DriftInputs:
    """The reference profile (load_reference) and the current data's features (current_features)."""
    ref = load_reference(reference)
    table, counts, failed, rates = current_side(ref, current, since=since, until=until, metadata_csv=metadata_csv,
                                                model_file=model_file)
    return DriftInputs(ref, current, table, counts, failed, since, until, rates)


def current_features(reference: Reference, current: str, **options: str) -> tuple[pd.DataFrame, dict, list]:
    """Features of the current data (a prediction log root or an image folder), counts and failed images."""
    return current_side(reference, current, **options)[:3]


def current_side(reference: Reference, current: str, *, since: str = "", until: str = "",
                 metadata_csv: str = "", model_file: str = "") -> tuple[pd.DataFrame, dict, list, dict]:
    """current_features and, for a prediction log, the refer/OOD rates of its decisions ({} for image folders)."""
    from dermpipe.model.profile.features import (
        image_features,
        list_images,
        log_features,
        read_metadata_csv,
    )
    from dermpipe.model.profile.reference import DEFAULT_COMPONENTS
    from dermpipe.monitoring.decision_rates import decision_rates

    n_components = profile_components(reference)
    if "://" not in current and Path(current).is_dir() and not looks_like_log(current, reference.model_name):
        from dermpipe.model import metadata_inputs
        from dermpipe.model.zoo import load_classifier

        paths = list_images(Path(current))
        model_path = model_file or reference.model_file
        model = load_classifier(model_path, compile=False) if model_path else None
        image_size = metadata_inputs.image_size(model) if model is not None else reference.image_size
        if image_size is None:
            raise ValueError(f"{reference.folder}: the reference profile does not record the model's input size "
                             "(profile.json image_size) and no model file was found beside it; pass --model-file "
                             "(the model.keras of this version) so the images' statistics are computed as the "
                             "model sees them")
        features, failed = image_features(paths, read_metadata_csv(metadata_csv or None), image_size=image_size,
                                          model=model, pca=reference.pca,
                                          n_components=n_components or DEFAULT_COMPONENTS)
        counts = {"images": len(paths), "failed_images": len(failed), "model_used": int(model is not None)}
        return features.drop(columns=["image"], errors="ignore"), counts, failed, {}
    records, counts = read_prediction_log(current, reference.model_name, since, until)
    return log_features(records, n_components), counts, [], decision_rates(records)


def profile_components(reference: Reference) -> int:
    """How many embedding PCA components the reference profiles: its fitted PCA's, else its pca_* columns'."""
    from dermpipe.model.profile.features import n_components_of

    return reference.pca.n_components if reference.pca is not None else n_components_of(reference.profile.columns)


def read_inputs_by_served_version(registry_root: str, model_name: str, current: str, *, since: str = "",
                                  until: str = "") -> list[DriftInputs]:
    """One DriftInputs per model version that served the log window, each against that version's own reference
    profile in the registry (<registry>/<model>/<version>): a window that spans a promotion is not compared with one
    model's profile, since the embedding columns of two versions do not share a space."""
    from dermpipe.model.profile.features import log_features
    from dermpipe.monitoring.decision_rates import decision_rates

    records, counts = read_prediction_log(current, model_name, since, until)
    if records.empty or "model_version" not in records:
        raise ValueError(f"{current}: no logged predictions of {model_name} in the window "
                         f"[{since or 'start'}, {until or 'end'}), so there is no served version to take the "
                         "reference from; widen --since/--until or pass --reference")
    versions = pd.to_numeric(records["model_version"], errors="coerce")
    unversioned = int(versions.isna().sum())
    inputs = []
    for version, rows in records[versions.notna()].groupby(versions[versions.notna()].astype(int)):
        ref = load_reference(f"{registry_root.rstrip('/')}/{model_name}/{version}")
        table = log_features(rows.reset_index(drop=True), profile_components(ref))
        inputs.append(DriftInputs(ref, current, table, {**counts, "model_version": int(version),
                                                        "version_lines": len(rows),
                                                        "unversioned_lines": unversioned}, [], since, until,
                                  decision_rates(rows)))
    return inputs


# ---------------------------------------------------------------- KFP stage


def metric_values(result: DriftResult, counts: dict[str, int]) -> dict[str, float]:
    values: dict[str, float] = {
        "drift_detected": int(result.drift_detected),
        "insufficient_data": int(result.decision == "insufficient data"),
        "drift_share": result.drift_share,
        "drift_share_rule": result.config.drift_share,
        "drifted_columns": len(result.drifted_columns),
        "tested_columns": len(result.tested_columns),
        "reference_rows": result.reference_rows,
        "current_rows": result.current_rows,
        **counts,
    }
    for column in result.columns:
        if column.score is not None and np.isfinite(column.score):
            values[f"score_{column.column}"] = column.score
        if not column.skipped:
            values[f"drifted_{column.column}"] = int(column.drifted)
    return values
