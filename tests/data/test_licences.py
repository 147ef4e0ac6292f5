"""Per-image licences (`copyright_license`, `attribution`, the ISIC Archive's field names) through ingest, merge and
split: the real kits (no licence columns: every image counted as unknown), Kaggle's ISIC 2019 (the data set's
CC-BY-NC 4.0), and a folder whose metadata CSV carries the Archive's values."""

import io
import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from dermpipe.data import licences
from dermpipe.data.ingest import ingest_source
from dermpipe.data.merge import merge_dataset, render_report
from dermpipe.data.split import split_table
from dermpipe.lineage.artifacts import sha256_file

META = "ISIC_2019_Training_Metadata.csv"
IMAGES = "ISIC_2019_Training_Input/ISIC_2019_Training_Input"


@pytest.mark.parametrize(("value", "commercial", "attribution"), [
    ("CC-0", True, False), ("CC-BY", True, True), ("CC-BY-NC", False, True),  # the Archive's three values
    ("CC-BY-NC-4.0", False, True), ("CC BY-NC 4.0", False, True), ("CC0-1.0", True, False),  # SPDX and prose
    ("cc-by-nc-sa", False, True), ("CC-BY-4.0", True, True),
])
def test_licence_terms(value, commercial, attribution):
    assert licences.terms(value) == licences.Terms(True, commercial, attribution)


@pytest.mark.parametrize("value", ["", "GPL-3.0", "all rights reserved", "CC"])
def test_an_empty_or_unrecognised_licence_allows_nothing(value):
    assert licences.terms(value) == licences.Terms(False, False, False)


def test_the_real_sample_has_no_licence_columns_so_every_image_is_unknown(isic_sample, tmp_path):
    summary = ingest_source(str(isic_sample), tmp_path / "raw")
    assert summary["licence_source"] == "metadata CSV" and summary["licence_unknown"] == 475
    assert summary["licence_rows_filled"] == 0
    assert (tmp_path / "raw" / META).read_bytes() == (isic_sample / META).read_bytes()  # not rewritten
    result = merge_dataset(tmp_path / "raw")
    assert (result.table["copyright_license"] == "").all() and (result.table["attribution"] == "").all()
    assert result.counts["licence_unknown"] == 475 and result.counts["licence_known"] == 0
    report = render_report(result)
    assert "licence unknown for 475 of 475 images" in report
    assert "Images whose licence is unknown (no copyright_license in the source's metadata CSV)" in report
    assert "and 455 more" in report  # 20 named, the rest counted


def test_the_full_isic_2019_metadata_gets_the_data_sets_licence_values_untouched(isic_csv):
    metadata = pd.read_csv(isic_csv / META, dtype=str, keep_default_na=False)
    filled, n = licences.fill(metadata, licences.ISIC_2019)
    assert n == len(metadata) == 25_331
    assert set(filled["copyright_license"]) == {"CC-BY-NC-4.0"}
    assert filled[list(metadata.columns)].equals(metadata)  # ages, sites, lesion ids as they were
    summary = licences.summarise(filled)
    assert summary["non_commercial"] == 25_331 and summary["commercial_use"] == "not allowed"


class FakeKaggleApi:
    """KaggleApi.dataset_download_files: writes the archive into the download folder."""

    def __init__(self, archive: bytes):
        self.archive = archive

    def dataset_download_files(self, dataset, path=None, force=False, quiet=True, unzip=False):
        (Path(path) / f"{dataset.split('/')[1]}.zip").write_bytes(self.archive)


def _kaggle_zip(isic_sample: Path, n: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for csv in isic_sample.glob("*.csv"):
            zf.write(csv, csv.name)
        for image in sorted((isic_sample / IMAGES).glob("*.jpg"))[:n]:
            zf.write(image, f"{IMAGES}/{image.name}")
    return buffer.getvalue()


def test_kaggle_isic_2019_images_carry_the_data_sets_licence(isic_sample, tmp_path, monkeypatch):
    import dermpipe.data.sources.kaggle as source_kaggle

    monkeypatch.setenv("DERMPIPE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    monkeypatch.setattr(source_kaggle, "make_api", lambda: FakeKaggleApi(_kaggle_zip(isic_sample, 8)))
    summary = ingest_source("kaggle:andrewmvd/isic-2019/versions/1", tmp_path / "raw")
    assert summary["licence_source"] == "CC-BY-NC-4.0 (the data set's licence)"
    assert summary["licence_rows_filled"] == 475 and summary["licence_non_commercial"] == 475  # every CSV row
    cached = next((tmp_path / "cache").rglob(META))
    assert "copyright_license" not in cached.read_text()  # the download cache is never written through a link
    manifest = {e["path"]: e for e in json.loads((tmp_path / "raw" / "manifest.json").read_text())}
    assert manifest[META]["sha256"] == sha256_file(tmp_path / "raw" / META)
    table = merge_dataset(tmp_path / "raw").table
    assert len(table) == 8 and set(table["copyright_license"]) == {"CC-BY-NC-4.0"}
    assert set(table["attribution"]) == {licences.ISIC_2019.attribution}


def _archive_folder(isic_sample: Path, tmp_path: Path) -> Path:
    """The sample's first 40 images, with the metadata CSV carrying the Archive's licence fields (as an `isic:`
    download or a folder copied from one writes them), some empty, one unrecognised, one CC-BY without credit."""
    folder = tmp_path / "archive"
    shutil.copytree(isic_sample, folder, ignore=shutil.ignore_patterns("*.jpg"))
    images = sorted((isic_sample / IMAGES).glob("*.jpg"))[:40]
    for image in images:
        shutil.copy(image, folder / IMAGES / image.name)
    metadata = pd.read_csv(isic_sample / META, dtype=str, keep_default_na=False)
    values = ["CC-0", "CC-BY", "CC-BY-NC", ""] * 10
    ids = [p.stem for p in images]
    metadata["copyright_license"] = metadata["image"].map(dict(zip(ids, values, strict=True))).fillna("")
    metadata["attribution"] = metadata["copyright_license"].map(
        {"CC-0": "Anonymous", "CC-BY": "Hospital Clínic de Barcelona", "CC-BY-NC": "ViDIR Group, Medical University "
         "of Vienna", "": ""})
    metadata.loc[metadata["image"] == ids[0], "copyright_license"] = "proprietary"
    metadata.loc[metadata["image"] == ids[1], "attribution"] = ""  # CC-BY with no one to credit
    metadata.to_csv(folder / META, index=False)
    return folder


def test_archive_licences_are_kept_counted_and_listed(isic_sample, tmp_path):
    folder = _archive_folder(isic_sample, tmp_path)
    summary = ingest_source(str(folder), tmp_path / "raw")
    assert summary["licence_source"] == "metadata CSV" and summary["licence_rows_filled"] == 0
    result = merge_dataset(tmp_path / "raw")
    table = result.table.set_index("image")
    assert len(table) == 40
    assert result.counts["licence_unknown"] == 10 and result.counts["licence_unrecognised"] == 1
    assert result.counts["licence_non_commercial"] == 10 and result.counts["licence_attribution_missing"] == 1
    assert result.counts["licence_known"] == 29
    report = render_report(result)
    assert "NON-COMMERCIAL: 10 of 40 images" in report and "licence unknown for 11 of 40 images" in report
    assert "| proprietary (unrecognised) | 1 | unknown | unknown |" in report
    assert "| CC-BY-NC | 10 | no | yes |" in report and "| CC-0 | 9 | yes | no |" in report
    unnamed = sorted(table.index)[1]
    assert f"Images whose licence requires an attribution but have none (1): {unnamed}." in report


def test_split_keeps_each_images_licence_and_counts_them_per_split(isic_sample, tmp_path):
    ingest_source(str(_archive_folder(isic_sample, tmp_path)), tmp_path / "raw")
    merged = merge_dataset(tmp_path / "raw").table
    splits = split_table(merged, test_size=0.2, val_size=0.2, method="stratified")
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    rejoined = pd.concat(parts.values()).set_index("image").sort_index()
    expected = merged.set_index("image").sort_index()
    assert rejoined[list(licences.LICENCE_COLUMNS)].equals(expected[list(licences.LICENCE_COLUMNS)])
    for part in parts.values():
        note = licences.annotation(part)
        assert sum(note["licences"].values()) == len(part)
        assert note["licence_non_commercial"] == int((part["copyright_license"] == "CC-BY-NC").sum())
    report = licences.split_report(parts)
    assert "| copyright_license | train | val | test |" in report and "- test: " in report


def test_the_training_licences_file_covers_train_and_val(isic_sample, tmp_path):
    ingest_source(str(_archive_folder(isic_sample, tmp_path)), tmp_path / "raw")
    merged = merge_dataset(tmp_path / "raw").table
    splits = split_table(merged, test_size=0.2, val_size=0.2, method="stratified")
    tables = {"train": splits.train, "val": splits.val, "test": splits.test}
    record = licences.write_training(tables, tmp_path / "profile")
    assert json.loads((tmp_path / "profile" / licences.LICENCES_FILE).read_text()) == record
    learnt = pd.concat([splits.train, splits.val])
    assert record["trained_on"]["images"] == len(learnt) and record["trained_on_splits"] == ["train", "val"]
    credited = {(c["attribution"], c["copyright_license"]): c["images"] for c in record["trained_on"]["attributions"]}
    named = learnt[learnt["attribution"] != ""]
    assert credited == named.groupby(["attribution", "copyright_license"]).size().to_dict()
    assert record["trained_on"]["commercial_use"] == "not allowed"


def test_attributions_are_in_isic_clis_order():
    """attribution.txt lists attributions the way `isic image download` writes its attribution.txt."""
    utils = pytest.importorskip("isic_cli.cli.utils")
    rows = [("Anonymous", "CC-0")] * 9 + [("B clinic", "CC-BY")] * 3 + [("A clinic", "CC-BY")] * 3 \
        + [("Z hospital", "CC-BY-NC")] * 5 + [("", "")] * 2
    table = pd.DataFrame({"image": [f"ISIC_{i:07d}" for i in range(len(rows))],
                          "attribution": [a for a, _ in rows], "copyright_license": [lic for _, lic in rows]})
    summary = licences.summarise(table)
    records = [{"attribution": a} for a, _ in rows if a]
    assert [c["attribution"] for c in summary["attributions"]] == utils.get_attributions(records)
    text = licences.attribution_text(summary)
    assert text.index("Z hospital (5, CC-BY-NC)") < text.index("A clinic (3, CC-BY)") < text.index("Anonymous (9")
    assert summary["unknown"] == 2 and summary["licences"] == {"CC-0": 9, "CC-BY": 6, "CC-BY-NC": 5, "unknown": 2}


def test_a_metadata_csv_that_does_not_parse_is_left_to_merge_to_name(isic_sample, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(isic_sample, folder, ignore=shutil.ignore_patterns("*.jpg"))
    shutil.copy(next((isic_sample / IMAGES).glob("*.jpg")), folder / IMAGES)
    (folder / META).write_bytes(b"image,age_approx\n\xff\xfe\x00bad")
    summary = ingest_source(str(folder), tmp_path / "raw")
    assert summary["licence_source"].startswith("unread: the metadata CSV does not parse")
    with pytest.raises(ValueError, match="cannot be parsed as CSV"):
        merge_dataset(tmp_path / "raw")
