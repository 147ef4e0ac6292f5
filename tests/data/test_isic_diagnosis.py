"""The ISIC Archive diagnosis -> ISIC 2019 class table, against isic-metadata's own enums and the real HAM10000 kit."""

import logging

import pandas as pd
import pytest
from isic_metadata.diagnosis_hierarchical import DiagnosisEnum
from isic_metadata.fields import LegacyDxEnum

from dermpipe.config import CLASSES
from dermpipe.data.sources import isic_diagnosis
from dermpipe.data.sources.isic import isic2019_class
from dermpipe.data.sources.isic_diagnosis import classify, table

MELANOMA = "Malignant:Malignant melanocytic proliferations (Melanoma)"
NEVUS = "Benign:Benign melanocytic proliferations:Nevus"


def record(value: str) -> dict[str, str]:
    """An Archive record's clinical fields for a hierarchical value: diagnosis_1..5, as the API returns them."""
    return DiagnosisEnum.as_dict(value)


def test_every_diagnosis_enum_value_is_listed_once_and_nothing_else():
    hierarchical = {value for scheme, value in table() if scheme == "hierarchical"}
    legacy = {value for scheme, value in table() if scheme == "legacy"}
    assert hierarchical == {d.value for d in DiagnosisEnum}
    assert legacy == {d.value for d in LegacyDxEnum}
    assert len(table()) == len(DiagnosisEnum) + len(LegacyDxEnum) == 454


@pytest.mark.parametrize("diagnosis", list(DiagnosisEnum), ids=lambda d: d.value[-60:])
def test_every_archive_record_gets_its_listed_class(diagnosis):
    got = classify(record(diagnosis.value))
    assert got.diagnosis == diagnosis.value
    assert (got.isic2019_class, got.why) == table()[("hierarchical", diagnosis.value)]
    assert got.isic2019_class in (*CLASSES, "UNK") and got.why


@pytest.mark.parametrize("diagnosis", list(LegacyDxEnum), ids=lambda d: d.value)
def test_every_legacy_diagnosis_gets_its_listed_class(diagnosis):
    assert isic2019_class({"diagnosis": diagnosis.value}) == table()[("legacy", diagnosis.value)][0]


def test_classes_follow_the_archive_hierarchy():
    """NV is exactly the Nevus subtree, MEL exactly the melanoma subtree; no benign value is a cancer class and no
    malignant value a benign class."""
    by_class: dict[str, set[str]] = {}
    for (scheme, value), (cls, _) in table().items():
        if scheme == "hierarchical":
            by_class.setdefault(cls, set()).add(value)
    assert by_class["NV"] == {d.value for d in DiagnosisEnum if d.value == NEVUS or d.value.startswith(NEVUS + ":")}
    assert by_class["MEL"] == {d.value for d in DiagnosisEnum if d.value.startswith(MELANOMA)}
    for cls in ("MEL", "BCC", "SCC"):
        assert all(value.startswith("Malignant:") for value in by_class[cls]), cls
    for cls in ("NV", "BKL", "DF", "VASC"):
        assert all(value.startswith("Benign:") for value in by_class[cls]), cls
    assert all(value.startswith("Indeterminate:Indeterminate epidermal proliferations") for value in by_class["AK"])
    assert {c: len(v) for c, v in by_class.items()} == {
        "UNK": 251, "NV": 32, "MEL": 29, "BCC": 10, "SCC": 42, "AK": 8, "BKL": 7, "DF": 6, "VASC": 33}


@pytest.mark.parametrize(("value", "expected"), [
    # the cases: the substring rules got these wrong
    ("Benign:Flat melanotic pigmentations - not melanocytic nevus", "UNK"),
    ("Benign:Flat melanotic pigmentations - not melanocytic nevus:Ephelis", "UNK"),
    ("Benign:Flat melanotic pigmentations - not melanocytic nevus:Cafe au lait macule or patch", "UNK"),
    ("Benign:Benign adnexal epithelial proliferations - Sebaceous:Nevus sebaceus", "UNK"),
    ("Benign:Benign melanocytic proliferations:Dermal melanocytosis:Nevus of Ota", "UNK"),
    ("Malignant:Malignant soft tissue proliferations - Vascular:Kaposi sarcoma", "UNK"),
    ("Malignant:Lymphocytic proliferations - B-Cell:Intravascular large B-cell lymphoma", "UNK"),
    ("Benign:Hemorrhagic lesions:Hemorrhage", "VASC"),
    ("Benign:Hemorrhagic lesions:Hemorrhage:Subungual hemorrhage", "VASC"),
    # HAM10000's bkl: solar lentigo, seborrheic keratosis, lichen planus-like keratosis
    ("Benign:Benign epidermal proliferations:Solar lentigo", "BKL"),
    ("Benign:Benign epidermal proliferations:Seborrheic keratosis", "BKL"),
    ("Benign:Benign epidermal proliferations:Lichen planus like keratosis", "BKL"),
    (MELANOMA + ":Melanoma in situ:Melanoma in situ, Lentigo maligna type", "MEL"),
    ("Malignant:Malignant melanocytic proliferations (Melanoma):Melanoma Invasive:Melanoma Invasive, Nodular", "MEL"),
    ("Malignant:Malignant melanocytic proliferations (Melanoma):Melanoma Invasive:Melanoma Invasive, Associated with "
     "a nevus", "MEL"),
    ("Indeterminate:Indeterminate epidermal proliferations:Solar or actinic keratosis:Actinic keratosis, Bowenoid",
     "AK"),
    # ISIC 2019 labelled HAM10000's Bowen's disease (akiec's intraepithelial carcinoma) SCC: see the kit test below
    ("Malignant:Malignant epidermal proliferations:Squamous cell carcinoma in situ:Squamous cell carcinoma in situ, "
     "Bowens disease", "SCC"),
    ("Benign:Benign melanocytic proliferations:Nevus:Nevus, Spitz", "NV"),
    ("Indeterminate:Indeterminate melanocytic proliferations:Atypical Spitz tumor", "UNK"),
    ("Benign:Benign soft tissue proliferations - Vascular:Hemangioma:Hemangioma, Cherry", "VASC"),
    ("Benign:Benign soft tissue proliferations - Vascular:Pyogenic granuloma", "VASC"),
    ("Benign:Benign soft tissue proliferations - Fibro-histiocytic:Dermatofibroma:Dermatofibroma, Hemosiderotic", "DF"),
    ("Malignant:Malignant adnexal epithelial proliferations - Follicular:Basal cell carcinoma:Basal cell carcinoma, "
     "Superficial", "BCC"),
    ("Malignant:Collision - At least one malignant proliferation", "UNK"),
    ("Benign", "UNK"),
])
def test_clinical_cases(value, expected):
    assert DiagnosisEnum(value)  # a real Archive value, not a made-up one
    assert isic2019_class(record(value)) == expected


def test_isic_entry_point_delegates_to_the_table():
    from dermpipe.data.sources import isic

    assert not hasattr(isic, "DIAGNOSIS_RULES")
    value = "Benign:Benign adnexal epithelial proliferations - Sebaceous:Nevus sebaceus"
    assert isic.isic2019_class(record(value)) == "UNK"  # the substring rules made it NV


@pytest.mark.parametrize(("clinical", "expected", "diagnosis"), [
    # records that give some levels only: the deepest names its value, the Archive's terminal-value rule
    ({"diagnosis_1": "Malignant", "diagnosis_3": "Melanoma Invasive"}, "MEL",
     "Malignant:Malignant melanocytic proliferations (Melanoma):Melanoma Invasive"),
    ({"diagnosis_3": "Squamous cell carcinoma in situ"}, "SCC",
     "Malignant:Malignant epidermal proliferations:Squamous cell carcinoma in situ"),
    ({"diagnosis_3": "Scar"}, "UNK", "Benign:Benign soft tissue proliferations - Fibro-histiocytic:Scar"),
    # levels that disagree with the value their deepest level names: not guessed
    ({"diagnosis_1": "Benign", "diagnosis_3": "Melanoma Invasive"}, "UNK", "Benign::Melanoma Invasive"),
    ({"diagnosis_2": "Melanoma Invasive"}, "UNK", ":Melanoma Invasive"),
    # the colon-joined value in the flat field, and the legacy flat values
    ({"diagnosis": "Benign:Hemorrhagic lesions:Hemorrhage"}, "VASC", "Benign:Hemorrhagic lesions:Hemorrhage"),
    ({"diagnosis": "seborrheic keratosis"}, "BKL", "seborrheic keratosis"),
    ({"diagnosis": "AIMP"}, "UNK", "AIMP"),
    ({"diagnosis_1": "", "diagnosis": None}, "UNK", ""),
])
def test_partial_and_legacy_records(clinical, expected, diagnosis):
    got = classify(clinical)
    assert (got.isic2019_class, got.diagnosis) == (expected, diagnosis)


def test_a_value_not_in_the_table_is_unk_and_named(caplog):
    isic_diagnosis._warn_unknown.cache_clear()
    clinical = {"diagnosis_1": "Benign", "diagnosis_2": "Benign melanocytic proliferations", "diagnosis_3": "New nevus"}
    with caplog.at_level(logging.WARNING, logger="dermpipe.data.sources.isic_diagnosis"):
        got = classify(clinical)
        classify(clinical)  # warned once per value
    assert got.isic2019_class == "UNK" and "not in isic_diagnosis.csv" in got.why
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "Benign:Benign melanocytic proliferations:New nevus" in warnings[0]


def test_a_malformed_table_row_is_named(tmp_path, monkeypatch):
    bad = tmp_path / "isic_diagnosis.csv"
    bad.write_text("scheme,diagnosis,isic2019_class,why\nhierarchical,Benign,NEVUS,typo\n")
    monkeypatch.setattr(isic_diagnosis, "TABLE", bad)
    table.cache_clear()
    try:
        with pytest.raises(isic_diagnosis.DiagnosisTableError, match=r"isic_diagnosis.csv:2: .*NEVUS"):
            table()
    finally:
        table.cache_clear()


def test_ham10000_akiec_is_ak_or_scc_in_isic_2019(isic_sample):
    """HAM10000's akiec is actinic keratosis plus intraepithelial carcinoma (Bowen's disease); ISIC 2019 split it
    into AK and SCC, so the table sends Bowen's disease (SCC in situ) to SCC and actinic keratosis to AK."""
    kit = isic_sample.parent / "ham10000"  # the real kits (tests/conftest)
    truth = pd.read_csv(kit / "ISIC_2019_Training_GroundTruth.csv").set_index("image")
    dx = pd.read_csv(kit / "dermamnist_split.csv").set_index("image")["dx"]
    isic2019 = truth[list(CLASSES)].idxmax(axis=1).reindex(dx.index)
    assert isic2019[dx == "akiec"].value_counts().to_dict() == {"SCC": 148, "AK": 106}
    assert set(isic2019[dx == "vasc"]) == {"VASC"} and set(isic2019[dx == "bkl"]) == {"BKL"}
    bowen = "Malignant:Malignant epidermal proliferations:Squamous cell carcinoma in situ"
    assert isic2019_class(record(bowen + ":Squamous cell carcinoma in situ, Bowens disease")) == "SCC"
    assert isic2019_class(record(
        "Indeterminate:Indeterminate epidermal proliferations:Solar or actinic keratosis")) == "AK"
