import numpy as np
import pandas as pd
import pytest

from dermpipe.components.deploy import push
from dermpipe.components.evaluate import gate, load_champion, predict_table, slices
from dermpipe.models import build_classifier


def test_first_deployment_uses_the_threshold_only():
    decision = gate(0.61, min_balanced_accuracy=0.6)
    assert decision.blessed
    assert "first deployment" in decision.reasons[1]
    assert not gate(0.59, min_balanced_accuracy=0.6).blessed


def test_challenger_must_not_be_worse_than_champion_by_more_than_delta():
    ok = gate(0.70, min_balanced_accuracy=0.5, champion_bma=0.71, champion_version="3", max_bma_drop=0.02)
    assert ok.blessed and "version 3" in ok.reasons[1]
    worse = gate(0.68, min_balanced_accuracy=0.5, champion_bma=0.71, champion_version="3", max_bma_drop=0.02)
    assert not worse.blessed
    assert "0.6800 < 0.6900" in worse.reasons[1]
    assert "**Not blessed**" in worse.markdown()
    below_threshold = gate(0.40, min_balanced_accuracy=0.5, champion_bma=0.30, champion_version="1")
    assert not below_threshold.blessed


def test_load_champion_reads_the_current_registry_version(tmp_path):
    assert load_champion(str(tmp_path / "registry"), "m") is None
    assert load_champion("", "m") is None
    model, _ = build_classifier("simple_cnn", 32, 8, seed=0)
    (tmp_path / "model").mkdir()
    model.save(tmp_path / "model" / "model.keras")
    push(tmp_path / "model", str(tmp_path / "registry"), "m", {})
    push(tmp_path / "model", str(tmp_path / "registry"), "m", {})
    version, champion = load_champion(str(tmp_path / "registry"), "m")
    assert version == "2"
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(champion.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_tta_averages_flips_and_slices_cover_every_row(demo_dataset):
    from dermpipe.components.merge import merge_dataset

    table = merge_dataset(demo_dataset).table.head(12)
    model, _ = build_classifier("simple_cnn", 32, 8, seed=0)
    plain = predict_table(model, table, demo_dataset, 32)
    tta = predict_table(model, table, demo_dataset, 32, tta=True)
    assert plain.shape == tta.shape == (12, 8)
    np.testing.assert_allclose(tta.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(plain, tta)
    sliced = slices(table, plain)
    assert set(sliced) == {"anatomic site", "sex", "age band"}
    for rows in sliced.values():
        assert sum(r["n"] for r in rows) == 12
    missing_sex = int(table["sex"].isna().sum())
    by_sex = {r["slice"]: r["n"] for r in sliced["sex"]}
    assert by_sex.get("(missing)", 0) == missing_sex
    assert pd.Series([r["slice"] for r in sliced["age band"]]).str.match(r"^(\d+-\d+|\(missing\))$").all()


@pytest.mark.parametrize("bma, expected", [(0.55, True), (0.45, False)])
def test_threshold_boundary(bma, expected):
    assert gate(bma, min_balanced_accuracy=0.5).blessed is expected
