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


def test_metadata_normalised_the_archive_way_or_refused_to_missing():
    meta = pd.DataFrame(
        [
            {"image": "a", "age_approx": 55, "anatom_site_general": "head/neck", "lesion_id": "L1", "sex": "female"},
            {"image": "b", "age_approx": 57, "anatom_site_general": "torso", "lesion_id": None, "sex": "unknown"},
            {"image": "c", "age_approx": None, "anatom_site_general": None, "lesion_id": None, "sex": None},
            {"image": "d", "age_approx": 90, "anatom_site_general": " Anterior Torso", "lesion_id": None,
             "sex": "Female"},
            {"image": "e", "age_approx": -5, "anatom_site_general": "PALMS/SOLES", "lesion_id": None, "sex": "F"},
        ]
    )
    result = check_metadata(meta, "meta.csv")
    table = result.table.set_index("image")
    assert table.loc["a"].to_dict() == {"age_approx": 55.0, "anatom_site_general": "head/neck", "lesion_id": "L1",
                                        "sex": "female"}
    assert table.loc["b", "age_approx"] == 55  # the Archive's age_approx: rounded to 5
    assert pd.isna(table.loc["b", "sex"]) and pd.isna(table.loc["b", "anatom_site_general"])
    assert table.loc["d"].drop("lesion_id").to_dict() == {"age_approx": 85.0, "anatom_site_general": "anterior torso",
                                                          "sex": "female"}
    assert pd.isna(table.loc["e", "age_approx"]) and pd.isna(table.loc["e", "sex"])
    assert table.loc["e", "anatom_site_general"] == "palms/soles"
    assert table["age_approx"].dtype == "float64"
    found = sorted((p.image, p.field, p.value, p.action) for p in result.problems)
    assert found == [
        ("b", "age_approx", "57", "normalised"),
        ("b", "anatom_site_general", "torso", "set to missing"),
        ("b", "sex", "unknown", "set to missing"),
        ("d", "age_approx", "90", "normalised"),
        ("d", "anatom_site_general", " Anterior Torso", "normalised"),
        ("d", "sex", "Female", "normalised"),
        ("e", "age_approx", "-5", "set to missing"),
        ("e", "anatom_site_general", "PALMS/SOLES", "normalised"),
        ("e", "sex", "F", "set to missing"),
    ]
    reasons = {(p.image, p.field): p.reason for p in result.problems}
    assert "'Female' normalised the ISIC Archive's way (isic-metadata) to 'female'" in reasons[("d", "sex")]
    assert "Unsupported value for anatom_site_general: 'torso'" in reasons[("b", "anatom_site_general")]
    assert "expected one of ['anterior torso'" in reasons[("b", "anatom_site_general")]
    assert "greater than or equal to 0" in reasons[("e", "age_approx")]


def test_metadata_ages_as_text_use_the_archive_rules():
    """A column with "85+" is read as text: "55" and "45.0" are unchanged, "85+" is 85, "n/a" is refused."""
    meta = pd.DataFrame({"image": ["a", "b", "c", "d"], "age_approx": ["55", "85+", "n/a", "45.0"],
                         "anatom_site_general": [None] * 4, "lesion_id": [None] * 4, "sex": [None] * 4})
    result = check_metadata(meta, "meta.csv")
    ages = result.table["age_approx"].tolist()
    assert ages[:2] == [55.0, 85.0] and pd.isna(ages[2]) and ages[3] == 45.0
    assert sorted((p.image, p.action) for p in result.problems) == [("b", "normalised"), ("c", "set to missing")]


def test_vocabularies_are_isic_metadata_s():
    from isic_metadata.fields import AnatomSiteGeneralEnum

    from dermpipe.config import AGES, SEXES, SITES

    assert set(SITES) == {s.value for s in AnatomSiteGeneralEnum} and set(SEXES) == {"male", "female"}
    assert AGES[-1] == 85  # isic-metadata clamps ages above 85


@pytest.mark.parametrize("kit", ["isic2019-csv", "ham10000", "isic2019-sample"])
def test_real_isic_2019_metadata_is_already_the_archive_s(isic_sample, kit):
    path = isic_sample.parent / kit / "ISIC_2019_Training_Metadata.csv"
    meta = pd.read_csv(path, dtype={"image": str, "lesion_id": str, "sex": str, "anatom_site_general": str})
    result = check_metadata(meta, str(path))
    assert result.problems == [] and len(result.table) == len(meta)
    pd.testing.assert_series_equal(result.table["sex"], meta["sex"].astype(object), check_names=False)


def test_real_isic_2020_metadata_torso_is_refused_and_listed(isic_sample):
    """ISIC 2020 writes the site "torso", which the Archive's anatom_site_general vocabulary does not have."""
    raw = pd.read_csv(isic_sample.parent / "isic2020-sample" / "metadata.csv")
    meta = raw.rename(columns={"image_name": "image", "anatom_site_general_challenge": "anatom_site_general",
                               "patient_id": "lesion_id"})
    result = check_metadata(meta, "isic2020 metadata.csv")
    torso = int((raw["anatom_site_general_challenge"] == "torso").sum())
    assert torso == 138 and len(result.problems) == torso
    assert {(p.field, p.value, p.action) for p in result.problems} == {("anatom_site_general", "torso",
                                                                        "set to missing")}
    assert result.table["anatom_site_general"].isna().sum() == torso + raw["anatom_site_general_challenge"].isna().sum()


def test_title_cased_full_isic_2019_metadata_comes_back_unchanged(isic_csv):
    """Every sex and site of the full ISIC 2019 CSV title-cased ("Anterior Torso", "Female") is normalised back to
    the official value, and each change is listed."""
    from dermpipe.data.merge import read_isic_csv

    meta = read_isic_csv(isic_csv / "ISIC_2019_Training_Metadata.csv")
    shouted = meta.assign(sex=meta["sex"].str.title(), anatom_site_general=meta["anatom_site_general"].str.title())
    result = check_metadata(shouted, "title-cased.csv")
    for column in ("sex", "anatom_site_general"):
        assert result.table[column].fillna("").tolist() == meta[column].fillna("").tolist()
    assert len(result.problems) == int(meta["sex"].notna().sum() + meta["anatom_site_general"].notna().sum()) == 47647
    assert {p.action for p in result.problems} == {"normalised"}
