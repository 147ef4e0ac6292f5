import numpy as np
import pandas as pd
import pytest

from dermpipe.deploy.deploy import push
from dermpipe.deploy.gate.challenge import load_champion
from dermpipe.model.evaluation.evaluate import predict_table, slices
from dermpipe.model.zoo import build_classifier


def test_load_champion_reads_the_resolved_version_and_checks_its_digest(tmp_path):
    from dermpipe.deploy import registry
    root = str(tmp_path / "registry")
    assert load_champion(root, "m", 0) is None
    assert load_champion("", "m", 3) is None
    model, _ = build_classifier("simple_cnn", 32, 8, seed=0)
    other, _ = build_classifier("simple_cnn", 32, 8, seed=1)
    for folder, keras_model in (("model", model), ("other", other)):
        (tmp_path / folder).mkdir()
        keras_model.save(tmp_path / folder / "model.keras")
    push(tmp_path / "model", root, "m", {})
    push(tmp_path / "other", root, "m", {})
    champion = load_champion(root, "m", 1, registry.version_digest(root, "m", 1))
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(champion.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(RuntimeError, match="a committed version must never change"):
        load_champion(root, "m", 1, registry.version_digest(root, "m", 2))


def test_tta_averages_flips_and_slices_cover_every_row(demo_dataset):
    from dermpipe.data.merge import merge_dataset

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
