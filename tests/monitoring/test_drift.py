"""Drift analysis on synthetic features and logs: decisions, methods, insufficient data, log windows, the profile."""

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from synthetic_traffic import log_records, synthetic_features, write_prediction_log

from dermpipe.model.profile.features import feature_columns, log_features, normalize_metadata
from dermpipe.model.profile.reference import (
    PCA_FILE,
    PROFILE_FILE,
    EmbeddingPCA,
    fit_embedding_pca,
)
from dermpipe.model.profile.stage import build_profile
from dermpipe.monitoring.drift.analysis import DriftConfig, analyse, config_from_params
from dermpipe.monitoring.drift.inputs import current_features, metric_values
from dermpipe.monitoring.log_reader import read_prediction_log
from dermpipe.monitoring.profile_reader import load_reference, reference_features

DAY = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)


def test_same_distribution_does_not_drift_and_a_shift_does():
    reference = synthetic_features(400, seed=1)
    same = analyse(reference, synthetic_features(300, seed=2), html=False)
    assert same.decision == "no drift" and not same.drift_detected
    assert same.drift_share < 0.5
    current = synthetic_features(300, seed=3, shift=1.0)
    reference["aspect"] = current["aspect"] = 1.0  # one value on both sides: tested, never drifted
    shifted = analyse(reference, current, html=False)
    assert shifted.decision == "drift" and shifted.drift_detected
    assert {"brightness", "emb_0", "age_approx", "confidence", "width"} <= set(shifted.drifted_columns)
    assert "aspect" in shifted.tested_columns and "aspect" not in shifted.drifted_columns


def test_auto_methods_follow_sample_size_and_overrides_win():
    small = analyse(synthetic_features(200, 1), synthetic_features(200, 2), html=False)
    assert {c.method for c in small.columns if c.kind == "num"} == {"ks"}
    assert {c.method for c in small.columns if c.kind == "cat"} == {"chisquare"}
    assert all(c.threshold == 0.05 for c in small.columns)
    big = analyse(synthetic_features(1500, 1), synthetic_features(1500, 2), html=False)
    assert {c.method for c in big.columns if c.kind == "num"} == {"wasserstein"}
    assert {c.method for c in big.columns if c.kind == "cat"} == {"jensenshannon"}
    assert not big.drift_detected
    cfg = DriftConfig(per_column_method={"brightness": "psi"}, per_column_threshold={"brightness": 0.3},
                      num_method="wasserstein", num_threshold=0.2)
    custom = {c.column: c for c in analyse(synthetic_features(200, 1), synthetic_features(200, 2), cfg,
                                           html=False).columns}
    assert (custom["brightness"].method, custom["brightness"].threshold) == ("psi", 0.3)
    assert (custom["contrast"].method, custom["contrast"].threshold) == ("wasserstein", 0.2)
    assert config_from_params(30, 0.5, "ks", 0.0, "auto", 0.2, ).num_threshold is None


def test_too_few_current_rows_is_insufficient_data_never_an_alarm():
    reference = synthetic_features(300, seed=1)
    wildly_different = synthetic_features(3, seed=2, shift=5.0)
    result = analyse(reference, wildly_different)
    assert result.decision == "insufficient data" and not result.drift_detected
    assert "3 current rows, at least 30 needed" in result.message
    assert "insufficient data" in result.html
    values = metric_values(result, {"log_lines": 3})
    assert values["insufficient_data"] == 1 and values["drift_detected"] == 0 and values["log_lines"] == 3


def test_a_column_without_current_values_is_skipped_and_named():
    reference = synthetic_features(300, seed=1)
    current = synthetic_features(100, seed=2)
    current["sex"] = None  # clients that send no metadata
    result = analyse(reference, current, html=False)
    sex = next(c for c in result.columns if c.column == "sex")
    assert sex.skipped == "current data has 0 values (< 15)" and "sex" not in result.tested_columns
    values = metric_values(result, {})
    assert "drifted_sex" not in values and values["drifted_brightness"] in (0, 1)
    assert values["tested_columns"] == len(feature_columns(5)) - 1


def test_prediction_log_window_and_malformed_lines(tmp_path):
    records = log_records(synthetic_features(90, seed=4), start=DAY - dt.timedelta(hours=1), seconds_apart=120)
    files = write_prediction_log(records, tmp_path / "logs", per_file=40)
    assert sorted({f.parent.name for f in files}) == ["date=2026-11-23", "date=2026-11-24"]
    with files[-1].open("a") as handle:
        handle.write("{not json\n")
    table, counts = read_prediction_log(str(tmp_path / "logs"), "dermpipe-isic2019")
    assert len(table) == 90 and counts["malformed_lines"] == 1 and counts["log_lines"] == 91
    window, counts = read_prediction_log(str(tmp_path / "logs"), "dermpipe-isic2019", since="2026-11-24",
                                         until="2026-11-24T01:00:00Z")
    assert len(window) == 30 and counts["outside_window"] == 30 and counts["log_files"] == 2  # day 24: 2 files
    assert pd.to_datetime(window["timestamp"]).min() >= pd.Timestamp(DAY)
    # the model folder itself works as the log root too
    direct, _ = read_prediction_log(str(tmp_path / "logs/dermpipe-isic2019"), "other-name")
    assert len(direct) == 90
    with pytest.raises(FileNotFoundError, match="no prediction log for model 'nope'"):
        read_prediction_log(str(tmp_path / "logs"), "nope")


def test_log_features_normalise_metadata_and_keep_every_column():
    records = pd.DataFrame(log_records(synthetic_features(5, seed=0)))
    records.loc[0, "sex"] = " Female "
    records.loc[1, "anatom_site_general"] = ""
    records = records.drop(columns=["emb_4"])
    features = log_features(records, 5)
    assert list(features.columns) == feature_columns(5)
    assert features.loc[0, "sex"] == "female" and features.loc[1, "anatom_site_general"] is None
    assert features["emb_4"].isna().all()


def test_metadata_aliases_of_isic2020():
    meta = normalize_metadata(pd.DataFrame({"image_name": ["ISIC_1.jpg"], "anatom_site_general_challenge": ["Torso"],
                                            "sex": [np.nan], "age_approx": ["45.0"]}))
    assert meta.iloc[0].to_dict() == {"image": "ISIC_1", "age_approx": 45.0, "sex": None,
                                      "anatom_site_general": "torso"}


def test_embedding_pca_round_trip_and_projection(tmp_path):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(50, 16)) @ rng.normal(size=(16, 16))
    pca = fit_embedding_pca(embeddings, 5)
    pca.save(tmp_path / PCA_FILE)
    loaded = EmbeddingPCA.load(tmp_path / PCA_FILE)
    assert loaded.n_components == 5 and loaded.components.shape == (5, 16)
    from sklearn.decomposition import PCA

    expected = PCA(5).fit(embeddings).transform(embeddings)
    np.testing.assert_allclose(np.abs(loaded.project(embeddings)), np.abs(expected), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="16-dimensional"):
        loaded.project(np.zeros((2, 8)))


def _profile_folder(tmp_path, n=120):
    rng = np.random.default_rng(0)
    features = synthetic_features(n, seed=5)
    splits = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    probabilities = rng.dirichlet(np.ones(8), n)
    embeddings = rng.normal(size=(n, 12))
    metadata = features[["age_approx", "sex", "anatom_site_general"]].assign(image=[f"ISIC_{i}" for i in range(n)])
    from dermpipe.data.image_stats import STAT_COLUMNS

    profile, pca = build_profile(features[list(STAT_COLUMNS)], metadata, probabilities, embeddings, splits, 4)
    folder = tmp_path / "profile"
    folder.mkdir()
    profile.to_parquet(folder / PROFILE_FILE, index=False)
    pca.save(folder / PCA_FILE)
    return folder, profile, probabilities, splits


def test_build_profile_keeps_predictions_of_held_out_rows_only(tmp_path):
    _, profile, probabilities, splits = _profile_folder(tmp_path)
    assert list(profile.columns[:2]) == ["image", "split"] and list(profile.columns[2:]) == feature_columns(4)
    train = profile["split"] == "train"
    assert profile.loc[train, "predicted_class"].isna().all() and profile.loc[train, "confidence"].isna().all()
    held = ~train.to_numpy()
    assert profile.loc[held, "confidence"].to_numpy() == pytest.approx(probabilities[held].max(axis=1))
    assert abs(profile.loc[train, "emb_0"].mean()) < 1e-5  # PCA centred on the training rows


def test_reference_resolves_profile_folder_and_registry_pointer(tmp_path):
    folder, profile, _, _ = _profile_folder(tmp_path)
    registry_version = tmp_path / "registry/m/3"
    registry_version.mkdir(parents=True)
    for name in (PROFILE_FILE, PCA_FILE):
        (registry_version / name).write_bytes((folder / name).read_bytes())
    (registry_version / "dermpipe.json").write_text(json.dumps({"model_name": "m"}))
    (tmp_path / "registry/m/current.json").write_text(json.dumps({"version": 3, "uri": str(registry_version)}))
    for given in (folder, registry_version, tmp_path / "registry/m"):
        ref = load_reference(str(given))
        assert ref.pca.n_components == 4 and len(ref.profile) == len(profile)
    assert load_reference(str(tmp_path / "registry/m")).model_name == "m"
    assert list(reference_features(ref).columns) == feature_columns(4)
    with pytest.raises(FileNotFoundError, match="no reference_profile.parquet"):
        load_reference(str(tmp_path))


def test_log_against_profile_end_to_end(tmp_path):
    folder, _, _, _ = _profile_folder(tmp_path)
    ref = load_reference(str(folder))
    write_prediction_log(log_records(synthetic_features(200, seed=9, n_components=4)), tmp_path / "logs")
    table, counts, failed = current_features(ref, str(tmp_path / "logs"))
    assert len(table) == 200 and counts["log_files"] == 1 and failed == []
    result = analyse(reference_features(ref), table, html=False)
    assert result.decision in ("drift", "no drift") and len(result.tested_columns) == len(feature_columns(4))


def test_html_report_survives_a_column_with_one_value_and_says_when_it_samples():
    """Evidently's histogram binning fails on a zero range; such a column is tested but not plotted."""
    reference, current = synthetic_features(120, seed=1), synthetic_features(80, seed=2)
    reference["width"] = current["width"] = 250.0
    result = analyse(reference, current, DriftConfig(report_rows=100))
    assert result.html.lstrip().startswith("<!DOCTYPE html>") and "brightness" in result.html
    assert "<strong>dermpipe decision</strong>: no drift" in result.html
    assert "uniform sample of 100 of 120 reference rows and 80 of 80 current rows" in result.html
    assert "width" in result.tested_columns and not next(c for c in result.columns if c.column == "width").drifted


def test_relative_window_for_daily_schedules(tmp_path):
    from dermpipe.serving.prediction_log import parse_day

    now = dt.datetime(2026, 11, 25, 6, tzinfo=dt.UTC)
    assert parse_day("24h", "since", now) == dt.datetime(2026, 11, 24, 6, tzinfo=dt.UTC)
    assert parse_day("7d", "since", now) == dt.datetime(2026, 11, 18, 6, tzinfo=dt.UTC)
    assert parse_day("2026-11-24", "since") == DAY
    with pytest.raises(ValueError, match="--until 'yesterday' is not an ISO date"):
        parse_day("yesterday", "until")
    stamp = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    write_prediction_log(log_records(synthetic_features(10, seed=1), start=stamp, seconds_apart=3600), tmp_path)
    recent, counts = read_prediction_log(str(tmp_path), "dermpipe-isic2019", since="2h")
    # hourly from 3 h ago: the ones 3 h and 2 h ago are outside (the 2 h one by the seconds the test took); the
    # first may sit in yesterday's partition, which is not even read
    assert len(recent) == 8 and counts["outside_window"] in (1, 2)
