"""Drift on real images: two halves of ISIC 2019 do not drift, ISIC 2020 traffic does.

The embedding and predictions come from an untrained simple_cnn with fixed weights (seed 0, 64 px): a fixed random
feature extractor, enough to show a population change, and fast. Features of every image are computed once per
session; each halving only refits the PCA on its reference half and runs the analysis.
"""

import numpy as np
import pandas as pd
import pytest

from dermpipe.model.profile.features import (
    assemble,
    embedding_frame,
    image_key,
    list_images,
    model_outputs,
    normalize_metadata,
    prediction_columns,
    statistics_table,
)
from dermpipe.model.profile.reference import fit_embedding_pca
from dermpipe.monitoring.drift.analysis import DriftConfig, analyse, evidently_report, report_column_results

ISIC2020 = "isic2020-sample"
HALVINGS = 20


def _raw_features(model, folder, metadata_csv):
    paths = list_images(folder)
    stats, failed = statistics_table(paths, 64)
    assert not failed
    keys = pd.DataFrame({"image": [image_key(str(p)) for p in paths]})
    metadata = keys.merge(normalize_metadata(pd.read_csv(metadata_csv)).drop_duplicates("image"), on="image",
                          how="left")
    probabilities, embeddings = model_outputs(model, paths)
    return stats, metadata, probabilities, embeddings


@pytest.fixture(scope="session")
def raw(isic_sample):
    import keras

    from dermpipe.model.zoo import build_classifier

    keras.utils.set_random_seed(0)
    model, _ = build_classifier("simple_cnn", 64, 8, seed=0)
    isic2020 = isic_sample.parent / ISIC2020
    return {
        "2019": _raw_features(model, isic_sample / "ISIC_2019_Training_Input", isic_sample /
                              "ISIC_2019_Training_Metadata.csv"),
        "2020": _raw_features(model, isic2020 / "images", isic2020 / "metadata.csv"),
    }


def _table(part, rows, pca):
    stats, metadata, probabilities, embeddings = part
    return assemble(stats.iloc[rows], metadata.iloc[rows], prediction_columns(probabilities[rows]),
                    embedding_frame(pca.project(embeddings[rows])), pca.n_components)


def test_features_cover_every_real_image_and_column(raw):
    stats, metadata, probabilities, embeddings = raw["2019"]
    assert len(stats) == len(metadata) == len(probabilities) == len(embeddings) == 475
    assert metadata["anatom_site_general"].notna().sum() > 300  # joined on the image name
    assert (stats["width"] == 250).mean() > 0.9
    assert set(normalize_metadata(metadata)["sex"].dropna()) <= {"male", "female"}
    assert "torso" in set(raw["2020"][1]["anatom_site_general"].dropna())  # ISIC 2020's own vocabulary, kept


def test_random_halves_of_isic2019_do_not_drift(raw):
    part = raw["2019"]
    n = len(part[0])
    rng = np.random.default_rng(2019)
    alarms, shares = 0, []
    for _ in range(HALVINGS):
        order = rng.permutation(n)
        reference_rows, current_rows = order[: n // 2], order[n // 2:]
        pca = fit_embedding_pca(part[3][reference_rows])
        result = analyse(_table(part, reference_rows, pca), _table(part, current_rows, pca), html=False)
        assert result.decision in ("drift", "no drift")
        assert len(result.tested_columns) >= 15
        alarms += result.drift_detected
        shares.append(result.drift_share)
    print(f"\nfalse alarms over {HALVINGS} random halvings of isic2019-sample: {alarms} "
          f"(largest drifted-column share {max(shares):.2f}, rule >= 0.50)")
    assert alarms <= 1


def test_isic2020_traffic_drifts_and_names_the_columns(raw):
    reference, current = raw["2019"], raw["2020"]
    pca = fit_embedding_pca(reference[3])
    result = analyse(_table(reference, np.arange(475), pca), _table(current, np.arange(300), pca), html=False)
    print(f"\n{result.message}")
    assert result.decision == "drift" and result.drift_detected
    drifted = set(result.drifted_columns)
    # 512x512 JPEGs vs 250x250, another site vocabulary, other cameras: size, colour, metadata and embedding move
    assert {"width", "height", "anatom_site_general", "brightness", "saturation"} <= drifted
    assert any(c.startswith("emb_") for c in drifted)
    assert "aspect" not in drifted  # both square
    assert all(c.method in ("ks", "chisquare") for c in result.columns)  # samples under 1000 rows: tests


def test_html_report_is_evidentlys_with_the_same_verdicts(raw):
    reference, current = raw["2019"], raw["2020"]
    pca = fit_embedding_pca(reference[3])
    ref, cur = _table(reference, np.arange(475), pca), _table(current, np.arange(300), pca)
    result = analyse(ref, cur, DriftConfig(), html=False)
    snapshot = evidently_report(ref, cur, result.columns, DriftConfig())
    from_report = report_column_results(snapshot)
    tested = {c.column: c for c in result.columns if not c.skipped}
    constant = {c for c in tested if pd.concat([ref[c], cur[c]]).dropna().nunique() <= 1}
    assert constant == {"predicted_class", "aspect"}  # the untrained net answers one class; all images square
    assert set(from_report) == set(tested) - constant  # one value on both sides: tested, not plotted
    for column, (score, drifted) in from_report.items():
        assert drifted == tested[column].drifted, column
        if score is not None and np.isfinite(score):
            assert score == pytest.approx(tested[column].score, rel=1e-6, abs=1e-9), column
    html = snapshot.get_html_str(as_iframe=False)
    assert html.lstrip().startswith("<!DOCTYPE html>") and "brightness" in html and "emb_0" in html


@pytest.mark.slow
def test_profile_stage_and_monitor_cli_on_an_image_folder(isic_sample, tmp_path):
    """profile_model writes the profile of a saved model; `dermpipe monitor` on ISIC 2020 images finds drift."""
    import json

    import keras
    from typer.testing import CliRunner

    from dermpipe.cli.main import app
    from dermpipe.model.profile.stage import profile_model
    from dermpipe.model.zoo import build_classifier

    keras.utils.set_random_seed(0)
    model, _ = build_classifier("simple_cnn", 64, 8, seed=0)
    model.save(tmp_path / "model.keras")
    images = list_images(isic_sample / "ISIC_2019_Training_Input")[:160]
    meta = pd.read_csv(isic_sample / "ISIC_2019_Training_Metadata.csv")
    table = pd.DataFrame({"image": [image_key(str(p)) for p in images],
                          "path": [p.relative_to(isic_sample).as_posix() for p in images]}).merge(
        meta, on="image", how="left")
    tables = {"train": table.iloc[:100], "val": table.iloc[100:130], "test": table.iloc[130:]}
    info = profile_model(tmp_path / "model.keras", isic_sample, tables, tmp_path / "profile", n_components=5)
    assert info["rows"] == {"train": 100, "val": 30, "test": 30} and info["n_components"] == 5
    assert 0.5 < info["explained_variance"] <= 1.0
    isic2020 = isic_sample.parent / ISIC2020
    result = CliRunner().invoke(app, ["monitor", "--reference", str(tmp_path / "profile"), "--current",
                                      str(isic2020 / "images"), "--metadata", str(isic2020 / "metadata.csv"),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out/drift.json").read_text())
    assert summary["decision"] == "drift" and summary["counts"] == {"images": 300, "failed_images": 0,
                                                                    "model_used": 1}
    assert {"width", "anatom_site_general", "emb_0"} <= set(summary["drifted_columns"])
    confidence = next(c for c in summary["columns"] if c["column"] == "confidence")
    assert confidence["reference_values"] == 60 and not confidence["skipped"]  # val + test rows only
