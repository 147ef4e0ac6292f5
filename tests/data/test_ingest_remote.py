"""kaggle: and isic: ingest sources at their client boundary: a fake KaggleApi, and a fake ISIC API on loopback."""

import io
import json
import os
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from isic_archive import FakeArchive, isolate_isic_login

from dermpipe.data.ingest import IngestError, ingest_source

SECRET = "kaggle-secret-key-0123456789abcdef"
N_IMAGES = 6


def _sample_images(isic_sample, n=N_IMAGES) -> list[Path]:
    return sorted((isic_sample / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input").glob("*.jpg"))[:n]


def _kaggle_zip(isic_sample, n=N_IMAGES) -> bytes:
    """The andrewmvd/isic-2019 archive layout with n real images."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for csv in isic_sample.glob("*.csv"):
            zf.write(csv, csv.name)
        for image in _sample_images(isic_sample, n):
            zf.write(image, f"ISIC_2019_Training_Input/ISIC_2019_Training_Input/{image.name}")
    return buffer.getvalue()


class FakeKaggleApi:
    """KaggleApi.dataset_download_files as the real client behaves: skips a current archive unless force."""

    def __init__(self, archive: bytes):
        self.archive, self.calls, self.transfers = archive, [], 0

    def dataset_download_files(self, dataset, path=None, force=False, quiet=True, unzip=False):
        self.calls.append({"dataset": dataset, "force": force, "unzip": unzip})
        out = Path(path) / f"{dataset.split('/')[1]}.zip"
        if out.exists() and out.read_bytes() == self.archive and not force:
            return
        self.transfers += 1
        out.write_bytes(self.archive)


@pytest.fixture()
def kaggle_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DERMPIPE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)
    return tmp_path


def test_kaggle_ingest_downloads_once_and_extracts_once(isic_sample, kaggle_env, monkeypatch):
    import dermpipe.data.sources.kaggle as source_kaggle

    api = FakeKaggleApi(_kaggle_zip(isic_sample))
    monkeypatch.setattr(source_kaggle, "make_api", lambda: api)
    first = ingest_source("kaggle:andrewmvd/isic-2019", kaggle_env / "run1")
    assert first["source_kind"] == "kaggle" and first["n_images"] == N_IMAGES
    assert first["download_downloaded"] == 1 and api.calls[0] == {"dataset": "andrewmvd/isic-2019", "force": False,
                                                                  "unzip": False}
    extracted = next((kaggle_env / "cache").glob("*/extracted"))
    inode = extracted.stat().st_ino
    second = ingest_source("kaggle:andrewmvd/isic-2019", kaggle_env / "run2")
    assert api.transfers == 1 and second["download_downloaded"] == 0 and second["download_skipped"] == 1
    assert extracted.stat().st_ino == inode  # not extracted again
    assert second["manifest_sha256"] == first["manifest_sha256"]
    api.archive = _kaggle_zip(isic_sample, n=N_IMAGES - 2)  # a new dataset version on Kaggle
    third = ingest_source("kaggle:andrewmvd/isic-2019", kaggle_env / "run3")
    assert third["download_downloaded"] == 1 and third["n_images"] == N_IMAGES - 2


def test_kaggle_credentials_never_leak(isic_sample, kaggle_env, monkeypatch, capfd):
    import dermpipe.data.sources.kaggle as source_kaggle

    class FailingApi(FakeKaggleApi):
        def dataset_download_files(self, *args, **kwargs):
            raise RuntimeError(f"403 Forbidden for user someone key={SECRET}")

    monkeypatch.setattr(source_kaggle, "make_api", lambda: FakeKaggleApi(_kaggle_zip(isic_sample)))
    summary = ingest_source("kaggle:andrewmvd/isic-2019", kaggle_env / "raw")
    monkeypatch.setattr(source_kaggle, "make_api", lambda: FailingApi(b""))
    with pytest.raises(IngestError, match="download failed") as failure:
        ingest_source("kaggle:andrewmvd/other", kaggle_env / "raw2")
    assert SECRET not in str(failure.value) and "key=***" in str(failure.value)
    out, err = capfd.readouterr()
    assert SECRET not in out + err + json.dumps(summary)
    for path in kaggle_env.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_kaggle_json_must_be_private(tmp_path):
    from dermpipe.data.sources.kaggle import KaggleSourceError, credentials_source

    home = tmp_path / "home"
    with pytest.raises(KaggleSourceError, match="no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY"):
        credentials_source({}, home)
    token = home / ".kaggle" / "kaggle.json"
    token.parent.mkdir(parents=True)
    token.write_text(json.dumps({"username": "someone", "key": SECRET}))
    os.chmod(token, 0o644)
    with pytest.raises(KaggleSourceError, match=r"readable by other users \(mode 644\).*chmod 600") as refused:
        credentials_source({}, home)
    assert SECRET not in str(refused.value)
    os.chmod(token, 0o600)
    assert credentials_source({}, home) == str(token)
    assert credentials_source({"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}, home).startswith("environment")
    config_dir = tmp_path / "elsewhere"
    config_dir.mkdir()
    (config_dir / "kaggle.json").write_text("{not json")
    os.chmod(config_dir / "kaggle.json", 0o600)
    with pytest.raises(KaggleSourceError, match="not valid JSON"):
        credentials_source({"KAGGLE_CONFIG_DIR": str(config_dir)}, home)


def test_kaggle_dataset_name_is_checked(tmp_path):
    from dermpipe.data.sources.kaggle import KaggleSourceError, download_dataset

    with pytest.raises(KaggleSourceError, match="expected kaggle:<owner>/<dataset>"):
        download_dataset("isic-2019", tmp_path, api=FakeKaggleApi(b""))


# --- ISIC Archive API v2, served on loopback -------------------------------------------------------------------------

@pytest.fixture()
def fake_isic(isic_sample, tmp_path, monkeypatch):
    images = {f"ISIC_{9000000 + i}": p.read_bytes() for i, p in enumerate(_sample_images(isic_sample, 7))}
    names = sorted(images)
    diagnoses = {names[0]: {"diagnosis_1": "Malignant", "diagnosis_3": "Melanoma Invasive"},
                 names[1]: {"diagnosis_1": "Benign", "diagnosis_3": "Nevus"},
                 names[2]: {"diagnosis": "seborrheic keratosis"},
                 names[3]: {"diagnosis_2": "Benign soft tissue proliferations - Vascular", "diagnosis_3": "Hemangioma"},
                 names[4]: {"diagnosis_3": "Solar or actinic keratosis"},
                 names[5]: {"diagnosis_3": "Squamous cell carcinoma in situ"},
                 names[6]: {"diagnosis_3": "Scar"}}
    fake = FakeArchive(images, diagnoses)
    isolate_isic_login(monkeypatch, tmp_path / "xdg-data")  # no stored login: public images
    monkeypatch.setenv("ISIC_API_URL", f"{fake.url}/api/v2")
    monkeypatch.setenv("DERMPIPE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    yield fake
    fake.close()


def test_isic_collection_to_kaggle_layout_then_nothing(fake_isic, tmp_path):
    from dermpipe.data.merge import merge_dataset

    first = ingest_source("isic:249", tmp_path / "run1")
    assert first["source_kind"] == "isic" and first["n_images"] == 7
    searches = fake_isic.requests_to("/api/v2/images/search/")
    assert searches[0].query["collections"] == ["249"] and searches[0].query["limit"] == ["1"]  # the count
    assert [s.path for s in searches[1:]] == ["/api/v2/images/search/size/"] + ["/api/v2/images/search/"] * 2
    assert first["download_downloaded"] == 7 and len(fake_isic.requests_to("/files/")) == 7
    assert first["download_archive_images"] == 7 and first["download_without_licence"] == 0
    truth = pd.read_csv(tmp_path / "run1" / "ISIC_2019_Training_GroundTruth.csv").set_index("image")
    labels = truth.idxmax(axis=1).tolist()
    assert labels == ["MEL", "NV", "BKL", "VASC", "AK", "SCC", "UNK"]
    merged = merge_dataset(tmp_path / "run1")
    assert len(merged.table) == 6 and merged.counts["rows_dropped_bad_label"] == 1  # the scar is UNK: dropped
    assert merged.table["lesion_id"].str.startswith("IL_").all()

    second = ingest_source("isic:249", tmp_path / "run2")
    assert second["download_downloaded"] == 0 and second["download_skipped"] == 7
    assert len(fake_isic.requests_to("/files/")) == 7  # nothing fetched again
    assert second["manifest_sha256"] == first["manifest_sha256"]


def test_isic_partial_image_resumes_with_range(fake_isic, tmp_path):
    from dermpipe.data.download import cache_dir_for
    from dermpipe.data.sources.isic import download_collection

    cache = cache_dir_for("isic:melanoma")
    download_collection("melanoma", cache)
    assert fake_isic.requests_to("/api/v2/images/search/")[0].query["query"] == ["melanoma"]
    name = sorted(fake_isic.images)[3]
    image = cache / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input" / f"{name}.jpg"
    state = json.loads((cache / ".sync-state.json").read_text())
    checksum = state.pop(f"ISIC_2019_Training_Input/ISIC_2019_Training_Input/{name}.jpg")["checksum"]
    (cache / ".sync-state.json").write_text(json.dumps(state))
    data = image.read_bytes()
    image.unlink()
    image.with_name(image.name + ".part").write_bytes(data[:1000])
    image.with_name(image.name + ".part.json").write_text(json.dumps({"checksum": checksum, "size": len(data)}))
    fake_isic.seen.clear()
    stats, _ = download_collection("melanoma", cache)
    assert [(s.path, s.headers.get("Range")) for s in fake_isic.requests_to("/files/")] == [
        (f"/files/{name}.jpg", "bytes=1000-")]
    assert stats.resumed == 1 and stats.bytes_downloaded == len(data) - 1000 and image.read_bytes() == data


def test_isic_errors_name_the_request(fake_isic, tmp_path, monkeypatch):
    from dermpipe.data.sources.isic import isic2019_class
    from dermpipe.data.sources.isic_client import search_arguments

    assert search_arguments("249, 251") == ("", "249,251")
    assert isic2019_class({"diagnosis_1": "Malignant", "diagnosis_2": "Malignant melanocytic proliferations (Melanoma)",
                           "diagnosis_3": "Melanoma in situ",
                           "diagnosis_4": "Melanoma in situ, associated with a nevus"}) == "MEL"
    monkeypatch.setenv("ISIC_API_URL", f"{fake_isic.url}/wrong")
    with pytest.raises(IngestError, match=r"isic:249: counting the images: GET .*/wrong/images/search/\?.* 404"):
        ingest_source("isic:249", tmp_path / "raw")


def test_merge_names_the_isic_archive_diagnosis_of_every_unk_image(isic_sample, tmp_path, monkeypatch):
    from dermpipe.data.merge import merge_dataset, render_report

    images = {f"ISIC_{9200000 + i}": p.read_bytes() for i, p in enumerate(_sample_images(isic_sample, 5))}
    names = sorted(images)
    diagnoses = {names[0]: {"diagnosis_1": "Benign", "diagnosis_3": "Nevus"},
                 names[1]: {"diagnosis_3": "Ephelis"},
                 names[2]: {"diagnosis_3": "Kaposi sarcoma"},
                 names[3]: {"diagnosis": "AIMP"},
                 names[4]: {}}
    fake = FakeArchive(images, diagnoses)
    isolate_isic_login(monkeypatch, tmp_path / "xdg-data")
    monkeypatch.setenv("ISIC_API_URL", f"{fake.url}/api/v2")
    monkeypatch.setenv("DERMPIPE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    try:
        ingest_source("isic:249", tmp_path / "raw")
    finally:
        fake.close()
    merged = merge_dataset(tmp_path / "raw")
    assert merged.table["image"].tolist() == [names[0]]
    assert merged.counts["rows_dropped_bad_label"] == merged.counts["rows_dropped_unk_archive_diagnosis"] == 4
    unk = {p.image: (p.field, p.value, p.reason) for p in merged.problems if p.field == "isic_diagnosis"}
    flat = "Benign:Flat melanotic pigmentations - not melanocytic nevus:Ephelis"
    kaposi = "Malignant:Malignant soft tissue proliferations - Vascular:Kaposi sarcoma"
    assert {image: value for image, (_, value, _) in unk.items()} == {
        names[1]: flat, names[2]: kaposi, names[3]: "AIMP", names[4]: "(none)"}
    assert "flat pigmentation, not a melanocytic nevus" in unk[names[1]][2]  # isic_diagnosis.csv's why
    assert "malignant vascular tumour: ISIC 2019 VASC is benign" in unk[names[2]][2]
    assert "the record has no diagnosis" in unk[names[4]][2]
    report = render_report(merged)
    assert "### Images dropped as UNK, by their ISIC Archive diagnosis (4)" in report
    assert f"| {names[2]} | isic_diagnosis | {kaposi} |" in report
