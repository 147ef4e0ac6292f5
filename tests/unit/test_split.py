import numpy as np
import pandas as pd
import pytest

from dermpipe.components.split import leakage_groups, split_summary, split_table


def _table(n_lesions=60, per_lesion=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for lesion in range(n_lesions):
        label = ["NV", "MEL", "BCC"][lesion % 3]
        for k in range(per_lesion):
            rows.append({"image": f"I{lesion}_{k}", "label": label, "lesion_id": f"L{lesion}",
                         "sha256": f"h{lesion}_{k}"})
    return pd.DataFrame(rows).sample(frac=1, random_state=int(rng.integers(100))).reset_index(drop=True)


def test_groups_union_lesions_and_duplicates():
    table = pd.DataFrame({
        "lesion_id": ["A", "A", None, None, "B"],
        "sha256": ["h1", "h2", "h2", "h3", "h3"],
    })
    groups = leakage_groups(table)
    assert groups[0] == groups[1] == groups[2]  # A, and the lesion-less duplicate of an A image
    assert groups[3] == groups[4]  # lesion-less image duplicating a B image
    assert groups[0] != groups[3]


def test_no_lesion_crosses_splits_and_ratios_hold():
    table = _table()
    splits = split_table(table, test_size=0.1, val_size=0.1, seed=42)
    sets = [set(getattr(splits, n)["lesion_id"]) for n in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(len(getattr(splits, n)) for n in ("train", "val", "test")) == len(table)
    summary = split_summary(splits)
    assert summary["test_fraction"] == pytest.approx(0.1, abs=0.03)
    assert summary["val_fraction"] == pytest.approx(0.09, abs=0.03)
    for name in ("train", "val", "test"):
        assert set(getattr(splits, name)["label"]) == {"NV", "MEL", "BCC"}  # stratified


def test_split_is_deterministic_and_seeded():
    table = _table()
    a = split_table(table, seed=1).test["image"].tolist()
    assert a == split_table(table, seed=1).test["image"].tolist()
    assert a != split_table(table, seed=2).test["image"].tolist()


def test_too_few_groups_is_a_clear_error():
    with pytest.raises(ValueError, match="too few to hold out"):
        split_table(_table(n_lesions=5), test_size=0.1)
    with pytest.raises(ValueError, match="out of range"):
        split_table(_table(), test_size=0.7)
