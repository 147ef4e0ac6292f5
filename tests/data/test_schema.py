import pandas as pd
import pytest

from dermpipe.data.schema import SchemaError, check_ground_truth, check_metadata

COLUMNS = ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def truth(rows):
    return pd.DataFrame(rows, columns=COLUMNS)


def test_one_label_per_row_kept_with_index():
    result = check_ground_truth(truth([["a", 0, 1, 0, 0, 0, 0, 0, 0, 0], ["b", 0, 0, 0, 0, 0, 0, 0, 1, 0]]), "gt.csv")
    assert result.table.to_dict("records") == [
        {"image": "a", "label": "NV", "label_index": 1},
        {"image": "b", "label": "SCC", "label_index": 7},
    ]
    assert result.problems == []


@pytest.mark.parametrize(
    "row, reason",
    [
        (["x", 1, 1, 0, 0, 0, 0, 0, 0, 0], "found 2"),
        (["x", 0, 0, 0, 0, 0, 0, 0, 0, 0], "found 0"),
        (["x", 0, 0, 0, 0, 0, 0, 0, 0, 1], "UNK is set"),
        (["x", 0.5, 0.5, 0, 0, 0, 0, 0, 0, 0], "0.0 or 1.0"),
    ],
)
def test_bad_label_rows_dropped_and_named(row, reason):
    result = check_ground_truth(truth([["ok", 1, 0, 0, 0, 0, 0, 0, 0, 0], row]), "gt.csv")
    assert list(result.table["image"]) == ["ok"]
    assert len(result.problems) == 1
    assert result.problems[0].image == "x" and reason in result.problems[0].reason
    assert result.problems[0].action == "dropped"


def test_duplicate_image_id_keeps_first():
    result = check_ground_truth(
        truth([["a", 1, 0, 0, 0, 0, 0, 0, 0, 0], ["a", 0, 1, 0, 0, 0, 0, 0, 0, 0]]), "gt.csv"
    )
    assert result.table["label"].tolist() == ["MEL"]
    assert "more than once" in result.problems[0].reason


def test_missing_column_names_file_and_columns():
    with pytest.raises(SchemaError, match=r"gt\.csv: missing column\(s\) \['UNK'\]"):
        check_ground_truth(truth([["a", 1, 0, 0, 0, 0, 0, 0, 0, 0]]).drop(columns="UNK"), "gt.csv")


def test_metadata_out_of_vocabulary_repaired_to_missing():
    meta = pd.DataFrame(
        [
            {"image": "a", "age_approx": 55, "anatom_site_general": "head/neck", "lesion_id": "L1", "sex": "female"},
            {"image": "b", "age_approx": 57, "anatom_site_general": "torso", "lesion_id": None, "sex": "unknown"},
            {"image": "c", "age_approx": None, "anatom_site_general": None, "lesion_id": None, "sex": None},
        ]
    )
    result = check_metadata(meta, "meta.csv")
    assert len(result.table) == 3
    b = result.table.set_index("image").loc["b"]
    assert pd.isna(b["age_approx"]) and pd.isna(b["sex"]) and pd.isna(b["anatom_site_general"])
    assert result.table.set_index("image").loc["a", "age_approx"] == 55
    assert sorted(p.field for p in result.problems) == ["age_approx", "anatom_site_general", "sex"]
    assert {p.action for p in result.problems} == {"repaired"}
