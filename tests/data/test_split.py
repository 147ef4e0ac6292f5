import numpy as np
import pandas as pd
import pytest

from dermpipe.data.split import leakage_groups, split_summary, split_table


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
        split_table(_table(n_lesions=5), test_size=0.1, method="stratified")
    with pytest.raises(ValueError, match="left .*empty: only 5 groups, too few to hold out"):
        split_table(_table(n_lesions=5), test_size=0.1)
    with pytest.raises(ValueError, match="out of range"):
        split_table(_table(), test_size=0.7)


def test_folds_are_grouped_stratified_and_leave_test_out():
    table = _table(n_lesions=90)
    splits = split_table(table, seed=42, folds=5)
    trainval = pd.concat([splits.train, splits.val])
    assert set(trainval["fold"]) == {0, 1, 2, 3, 4} and set(splits.test["fold"]) == {-1}
    assert trainval.groupby("lesion_id")["fold"].nunique().max() == 1  # a lesion never spans folds
    for _, fold in trainval.groupby("fold"):
        assert set(fold["label"]) == {"NV", "MEL", "BCC"}
    plain = split_table(table, seed=42)
    assert plain.test["image"].tolist() == splits.test["image"].tolist()  # folds do not change the split
    assert "fold" not in plain.train
    summary = split_summary(splits)
    assert summary["folds"] == 5 and sum(summary[f"fold_{k}_rows"] for k in range(5)) == len(trainval)
    with pytest.raises(ValueError, match="at least 2"):
        split_table(table, folds=1)


def test_summary_and_report_have_per_split_class_counts():
    from dermpipe.data.split import render_report

    splits = split_table(_table(), seed=3)
    summary = split_summary(splits)
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        assert summary[f"{name}_NV"] == int((part["label"] == "NV").sum())
        assert summary[f"{name}_DF"] == 0
        assert summary[f"{name}_max_class_share_deviation_pt"] >= 0
    report = render_report(splits, {"seed": 3})
    n_nv = int((splits.test["label"] == "NV").sum())
    assert "| NV | 60 (33.3%) |" in report and f"| {n_nv} (" in report and "seed=3" in report


def test_vectorised_folds_match_sklearn_quality():
    """Same greedy algorithm as StratifiedGroupKFold: groups intact, class shares at least as even."""
    from sklearn.model_selection import StratifiedGroupKFold

    from dermpipe.data.split import stratified_group_folds

    rng = np.random.default_rng(7)
    groups = rng.integers(0, 400, 1500)
    labels = np.array(["NV", "MEL", "BCC", "AK", "DF"])[np.minimum(rng.geometric(0.45, 1500) - 1, 4)]
    ours = stratified_group_folds(labels, groups, 5, seed=1)
    assert pd.Series(ours).groupby(groups).nunique().max() == 1

    def worst_deviation(folds):
        overall = pd.Series(labels).value_counts(normalize=True)
        return max((pd.Series(labels[folds == k]).value_counts(normalize=True) - overall).abs().max()
                   for k in range(5))

    theirs = np.empty(len(labels), int)
    for k, (_, test) in enumerate(StratifiedGroupKFold(5, shuffle=True, random_state=1).split(labels, labels, groups)):
        theirs[test] = k
    assert worst_deviation(ours) <= worst_deviation(theirs) + 0.005
    assert np.bincount(ours).min() > 0.8 * len(labels) / 5


def _new_lesions(n_lesions: int, seed: int) -> pd.DataFrame:
    """New lesions with new images (no name, lesion or content hash shared with _table's)."""
    fresh = _table(n_lesions=n_lesions, seed=seed)
    return fresh.assign(**{c: "N" + fresh[c] for c in ("image", "lesion_id", "sha256")})


def test_group_keys_prefer_lesion_then_patient_then_content_hash():
    from dermpipe.data.stable_split import group_keys

    table = pd.DataFrame({
        "image": ["a", "b", "c", "d", "e", "f"],
        "lesion_id": ["L2", "L1", None, None, None, None],
        "patient_id": ["P1", "P1", "P1", "P9", None, None],
        "sha256": ["h1", "h2", "h1", "h4", "h5", ""],
    })
    keys = group_keys(table, leakage_groups(table))
    # c duplicates a (h1): one group, named by its lesion; d has only a patient; e only a hash; f only its name
    assert keys.tolist() == ["lesion:L2", "lesion:L1", "lesion:L2", "patient:P9", "sha256:h5", "image:f"]


def test_hash_split_keeps_every_group_when_rows_are_added_or_reordered():
    table = _table(n_lesions=120)
    before = split_table(table, seed=5)
    grown = pd.concat([table, _new_lesions(40, seed=1)])
    after = split_table(grown.sample(frac=1, random_state=3), seed=5)
    for name in ("train", "val", "test"):
        old = set(getattr(before, name)["lesion_id"])
        assert old <= set(getattr(after, name)["lesion_id"]), name
    assert split_table(table, seed=6).test["lesion_id"].tolist() != before.test["lesion_id"].tolist()


def test_hash_folds_are_stable_and_grouped():
    table = _table(n_lesions=150)
    splits = split_table(table, seed=42, folds=4)
    trainval = pd.concat([splits.train, splits.val])
    assert set(trainval["fold"]) == {0, 1, 2, 3} and set(splits.test["fold"]) == {-1}
    assert trainval.groupby("lesion_id")["fold"].nunique().max() == 1
    grown = split_table(pd.concat([table, _new_lesions(20, seed=2)]), seed=42, folds=4)
    folds_before = trainval.set_index("image")["fold"]
    folds_after = pd.concat([grown.train, grown.val]).set_index("image")["fold"]
    assert (folds_after.loc[folds_before.index] == folds_before).all()
    with pytest.raises(ValueError, match=r"left fold\(s\) \[.*\] empty: only \d+ groups outside the test split"):
        split_table(_table(n_lesions=30), seed=42, folds=20)


@pytest.mark.parametrize("method", ["hash", "stratified"])
def test_benchmark_groups_always_go_to_test(method):
    table = _table(n_lesions=90)
    plain = split_table(table, seed=42, method=method)
    chosen = {"lesion:" + lesion for lesion in plain.train["lesion_id"].unique()[:5]} | {"sha256:h80_1"}
    splits = split_table(table, seed=42, method=method, benchmark=frozenset(chosen))
    marked = splits.test[splits.test["in_benchmark"]]
    assert set("lesion:" + marked["lesion_id"]) == chosen - {"sha256:h80_1"} | {"lesion:L80"}  # h80_1 is L80's
    assert len(marked) == 6 * 3 and not splits.train["in_benchmark"].any() and not splits.val["in_benchmark"].any()
    assert set(splits.test["group_key"]) >= set(plain.test["group_key"]) or method == "stratified"


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match=r"split parameter method='random' is not supported"):
        split_table(_table(), method="random")
