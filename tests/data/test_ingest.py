import json
import shutil
import zipfile

import pytest

from dermpipe.data.ingest import IngestError, build_manifest, find_layout, ingest_source, parse_source
from dermpipe.lineage.artifacts import sha256_file


def test_parse_source_kinds(tmp_path):
    archive = tmp_path / "isic.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x.txt", "x")
    assert parse_source("demo").kind == "demo"
    assert parse_source(str(tmp_path)).kind == "local"
    assert parse_source(str(archive)).kind == "zip"
    assert parse_source("kaggle:andrewmvd/isic-2019").location == "andrewmvd/isic-2019"
    assert parse_source("gs://bucket/isic").kind == "gs"
    assert parse_source("isic:249").location == "249"
    with pytest.raises(IngestError, match="missing': it does not exist; expected 'demo', an existing folder"):
        parse_source(str(tmp_path / "missing"))


def test_local_kaggle_layout_with_manifest(isic_sample, tmp_path):
    out = tmp_path / "raw"
    summary = ingest_source(str(isic_sample), out)
    assert summary["n_images"] == 475
    images = out / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input"
    assert len(list(images.glob("*.jpg"))) == 475
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest) == 478  # images, two CSVs, privacy.json
    entry = next(e for e in manifest if e["path"].endswith("ISIC_0000017_downsampled.jpg"))
    assert entry["sha256"] == sha256_file(images / "ISIC_0000017_downsampled.jpg")
    assert entry["size"] == (images / "ISIC_0000017_downsampled.jpg").stat().st_size


def test_zip_and_flat_layouts(isic_sample, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for csv in isic_sample.glob("*.csv"):
        shutil.copy(csv, flat / csv.name)
    for jpg in sorted((isic_sample / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input").glob("*.jpg"))[:5]:
        shutil.copy(jpg, flat / jpg.name)
    assert find_layout(flat).image_dir == flat
    archive = tmp_path / "isic.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in flat.iterdir():
            zf.write(path, f"isic-2019/{path.name}")
    summary = ingest_source(str(archive), tmp_path / "raw")
    assert summary["source_kind"] == "zip" and summary["n_images"] == 5


def test_zip_slip_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../escape.txt", "x")
    with pytest.raises(IngestError, match="outside the extraction folder"):
        ingest_source(str(archive), tmp_path / "raw")


def test_missing_csv_is_named(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(IngestError, match="ISIC_2019_Training_GroundTruth.csv not found"):
        ingest_source(str(tmp_path / "src"), tmp_path / "raw")


def test_kaggle_without_credentials_says_what_to_do(tmp_path, monkeypatch):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "nokaggle"))
    monkeypatch.setenv("DERMPIPE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    with pytest.raises(IngestError, match="no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY"):
        ingest_source("kaggle:andrewmvd/isic-2019", tmp_path / "raw")


def test_manifest_sorted_and_hashes_every_file(tmp_path):
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("a")
    manifest = build_manifest(tmp_path)
    assert [e["path"] for e in manifest] == ["b.txt", "sub/a.txt"]
    assert manifest[0]["sha256"] == "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"
